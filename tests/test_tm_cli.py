"""``--tm`` takes a TM database (SQLite, or a ``postgresql://`` URL), a TMX, or ``$TOWER_CAT_TM_URL``, in every
command that uses a TM: translate, tm import|lookup|export|stats, serve, refine, finetune data.

Each command is run on a database made by ``tower-cat tm import`` from the sample TMX (the ``team_tm``
fixture: a SQLite file, and the same on a real PostgreSQL when the server binaries are on the machine).
"""

from __future__ import annotations

import json
from pathlib import Path

import httpx
import pytest
from click.testing import CliRunner

from tower_cat.cli import cli
from tower_cat.tm import TM_URL_ENV, TMError, open_translation_memory

ROOT = Path(__file__).resolve().parents[1]
SAMPLES = ROOT / "samples"
TMX = SAMPLES / "tower-notes.tmx"
NEW_TOKENS = 6
EXACT = "Sync over mobile data"


def _invoke(args: list[str], **kwargs):
    return CliRunner().invoke(cli, args, catch_exceptions=False, **kwargs)


@pytest.fixture(params=["sqlite", "postgres"])
def empty_tm(request, tmp_path) -> str:
    """A TM that does not exist yet: a SQLite path, or a fresh PostgreSQL database URL."""
    if request.param == "sqlite":
        return str(tmp_path / "memory.sqlite")
    return request.getfixturevalue("pg_tm_url")


@pytest.fixture
def team_tm(empty_tm) -> str:
    """The sample TMX imported with ``tower-cat tm import`` (every language pair of the file)."""
    result = _invoke(["tm", "import", str(TMX), "--db", empty_tm, "--no-progress"])
    assert result.exit_code == 0, result.output
    return empty_tm


def _units_in_tmx() -> int:
    return TMX.read_text(encoding="utf-8").count("<tu ")


# ----------------------------------------------------------------------------------------------- the opener


def test_opener_tells_the_kinds_apart_by_content(tmp_path):
    db = tmp_path / "memory.tmx.bak"  # a SQLite TM whatever its name
    _invoke(["tm", "import", str(TMX), "--db", str(db), "--no-progress"])
    with open_translation_memory(db, readonly=True) as memory:
        assert memory.lookup(EXACT, "en", "de")[0].score >= 100
    imported = []
    renamed_tmx = tmp_path / "memory.sqlite"  # a TMX named like a database
    renamed_tmx.write_bytes(TMX.read_bytes())
    with open_translation_memory(renamed_tmx, readonly=True, on_import=imported.append) as memory:
        assert memory.lookup(EXACT, "en", "de")[0].score >= 100
    assert imported and imported[0].units == _units_in_tmx()
    po = SAMPLES / "tower-notes.de.po"
    with pytest.raises(TMError, match="tower-notes.de.po: neither a tower-cat TM database"):
        open_translation_memory(po, readonly=True)
    with pytest.raises(TMError, match="TMX file cannot be written to"):
        open_translation_memory(TMX)  # a command that writes (serve, refine, tm import) refuses a TMX
    with pytest.raises(TMError, match="no such translation memory"):
        open_translation_memory(tmp_path / "missing.sqlite", readonly=True)


def test_opener_falls_back_to_the_environment(tmp_path, monkeypatch):
    monkeypatch.delenv(TM_URL_ENV, raising=False)
    assert open_translation_memory(None) is None
    monkeypatch.setenv(TM_URL_ENV, str(tmp_path / "env.sqlite"))
    with open_translation_memory(None) as memory:
        memory.add("Hello", "Hallo", "en", "de")
    assert (tmp_path / "env.sqlite").is_file()


# ----------------------------------------------------------------------------------------------- tm commands


def test_tm_import_lookup_export_stats(team_tm, tmp_path):
    lookup = _invoke(["tm", "lookup", EXACT, "--db", team_tm, "--source", "en", "--target", "de", "--json"])
    assert lookup.exit_code == 0, lookup.output
    best = json.loads(lookup.stdout)[0]
    assert best["source"] == EXACT and best["score"] >= 100 and best["target"]
    stats = _invoke(["tm", "stats", "--tm", team_tm, "--json"])
    assert stats.exit_code == 0, stats.output
    data = json.loads(stats.stdout)
    assert data["pairs"]["en-US>de-DE"] == data["pairs"]["en-US>pt-PT"] > 300
    out = tmp_path / "export.tmx"
    export = _invoke(["tm", "export", "--db", team_tm, "-o", str(out), "--target", "de"])
    assert export.exit_code == 0, export.output
    assert out.read_text(encoding="utf-8").count("<tu ") == data["pairs"]["en-US>de-DE"]
    again = _invoke(["tm", "import", str(TMX), "--db", team_tm, "--no-progress"])  # duplicates merged
    assert again.exit_code == 0 and "0 new" in again.output
    assert json.loads(_invoke(["tm", "stats", "--db", team_tm, "--json"]).stdout)["entries"] == data["entries"]


def test_tm_commands_use_the_environment_variable(team_tm, monkeypatch):
    monkeypatch.setenv(TM_URL_ENV, team_tm)
    lookup = _invoke(["tm", "lookup", EXACT, "--source", "en", "--target", "de", "--json"])
    assert lookup.exit_code == 0, lookup.output
    assert json.loads(lookup.stdout)[0]["score"] >= 100
    monkeypatch.delenv(TM_URL_ENV)
    missing = CliRunner().invoke(cli, ["tm", "stats"])
    assert missing.exit_code == 2 and TM_URL_ENV in missing.output


def test_tm_lookup_and_export_read_a_tmx(tmp_path):
    lookup = _invoke(["tm", "lookup", EXACT, "--tm", str(TMX), "--source", "en", "--target", "pt", "--json"])
    assert lookup.exit_code == 0, lookup.output
    assert json.loads(lookup.stdout)[0]["tgt_lang"] == "pt-PT"
    out = tmp_path / "pt.tmx"
    assert _invoke(["tm", "export", "--tm", str(TMX), "-o", str(out), "--target", "pt"]).exit_code == 0
    assert out.read_text(encoding="utf-8").count("<tu ") > 300


def test_tm_import_refuses_a_tmx_as_database_and_names_bad_files(tmp_path):
    from tower_cat.cli import main

    with pytest.raises(SystemExit) as exit_info:
        main(["tm", "import", str(SAMPLES / "tower-notes.de.po"), "--db", str(TMX), "--no-progress"])
    assert exit_info.value.code == 2
    with pytest.raises(TMError, match="neither a tower-cat TM database"):
        _invoke(["tm", "lookup", "x", "--db", str(SAMPLES / "glossary.tbx"), "--source", "en", "--target", "de"])


# ----------------------------------------------------------------------------------------------- translate


def test_translate_with_a_tm_database(team_tm, tiny_llama, tmp_path, capsys, monkeypatch):
    from tower_cat.cli import main

    def leveraged(args: list[str]) -> int:
        main(["translate", str(SAMPLES / "tower-notes.en-de.xlf"), "-o", str(tmp_path / "out.xlf"),
              "--model", str(tiny_llama.ct2_path), "--cache", str(tmp_path / "c.sqlite"), "--max-new-tokens",
              str(NEW_TOKENS), "--device", "cpu", "--threads", "1", "--json", *args])
        report = json.loads(capsys.readouterr().out)
        assert report["totals"]["files_failed"] == 0
        return report["totals"]["tm_leveraged"]

    with_tmx = leveraged(["--tm", str(TMX)])
    assert with_tmx > 10
    assert leveraged(["--tm", team_tm]) == with_tmx  # the database gives what the TMX gives
    monkeypatch.setenv(TM_URL_ENV, team_tm)
    assert leveraged([]) == with_tmx


# ----------------------------------------------------------------------------------------------- serve


def test_serve_with_a_tm_database(team_tm, tiny_llama):
    from tower_cat.adapters.app import create_app
    from tower_cat.adapters.cli import BackgroundServer
    from tower_cat.adapters.service import ServerConfig, Service

    service = Service.from_config(ServerConfig(model=str(tiny_llama.ct2_path), tm=team_tm, device="cpu",
                                               threads=1, max_new_tokens=NEW_TOKENS))
    try:
        with BackgroundServer(create_app(service)) as srv, httpx.Client(base_url=srv.url, timeout=60) as http:
            found = http.post("/v1/tm/lookup", json={"text": EXACT, "source_lang": "en", "target_lang": "de"})
            assert found.status_code == 200, found.text
            assert found.json()["matches"][0]["score"] >= 100
            added = http.post("/v1/tm", json={"source": "A brand-new sentence about printers.", "target": "Ein neuer Satz.",
                                              "source_lang": "en", "target_lang": "de"})
            assert added.status_code == 201, added.text
    finally:
        service.close()
    with open_translation_memory(team_tm, readonly=True) as memory:  # written to the database itself
        assert memory.lookup("A brand-new sentence about printers.", "en", "de")[0].target.text == "Ein neuer Satz."


def test_serve_refuses_a_tmx_tm(tiny_llama):
    from tower_cat.adapters.service import ServerConfig, Service

    with pytest.raises(TMError, match="cannot be written to"):
        Service.from_config(ServerConfig(model=str(tiny_llama.ct2_path), tm=str(TMX), device="cpu", threads=1))


# ----------------------------------------------------------------------------------------------- refine


def test_refine_accepts_into_a_tm_database(team_tm, tiny_llama, tmp_path, monkeypatch):
    monkeypatch.setenv("TOWER_CAT_CACHE", str(tmp_path / "cache.sqlite"))
    with open_translation_memory(team_tm, readonly=True) as memory:
        before = len(memory)
    result = CliRunner().invoke(cli, ["refine", "--model", str(tiny_llama.ct2_path), "-s", "en", "-t", "de",
                                      "--threads", "1", "--max-new-tokens", str(NEW_TOKENS), "--tm", team_tm,
                                      "A sentence nobody has translated yet.", "-i", "more formal", "--accept",
                                      "--force"], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    assert "accepted revision 1 (entry" in result.output
    with open_translation_memory(team_tm, readonly=True) as memory:
        assert len(memory) == before + 1
        match = memory.lookup("A sentence nobody has translated yet.", "en", "de")[0]
        assert match.score == 100 and match.origin == "interactive"


# ----------------------------------------------------------------------------------------------- finetune data


def test_finetune_data_reads_a_tm_database(team_tm):
    def read(spec: str) -> dict:
        result = _invoke(["finetune", "data", "--tm", spec, "--source", "en", "--target", "de", "--json"])
        assert result.exit_code == 0, result.output
        return json.loads(result.output)["stats"]

    from_db, from_tmx = read(team_tm), read(str(TMX))
    assert from_db["read"] == from_tmx["read"] == {"en-de": 377}
    assert sum(from_db["train"].values()) == sum(from_tmx["train"].values())


def test_translate_a_trados_file_with_a_database_made_from_its_own_translations(corpus, tiny_llama, tmp_path,
                                                                                 capsys):
    """Third-party files: a TM database imported from a Trados SDLXLIFF serves `translate --tm DB` on that file."""
    from tower_cat.cli import main

    src = corpus / "sdlxliff/disfr/Configuring_Spelling_Checker.doc.sdlxliff"
    db = tmp_path / "trados.sqlite"
    assert _invoke(["tm", "import", str(src), "--db", str(db), "--no-progress"]).exit_code == 0
    main(["translate", str(src), "-o", str(tmp_path / "out.sdlxliff"), "--model", str(tiny_llama.ct2_path),
          "--tm", str(db), "--overwrite", "--no-cache", "--max-new-tokens", str(NEW_TOKENS), "--device", "cpu",
          "--threads", "1", "--json"])
    report = json.loads(capsys.readouterr().out)
    assert report["totals"]["files_failed"] == 0
    # the 14 segments Trados had translated come back from the TM, not the model
    assert report["totals"]["tm_leveraged"] >= 14
