"""`tower-cat evaluate` / tower_cat.metrics: the same BLEU, chrF and TER as the sacrebleu command, COMET when given."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest_comet import tiny_comet  # noqa: F401
from tower_cat import metrics
from tower_cat.errors import TowerCatError

SACREBLEU = Path(sys.executable).with_name("sacrebleu")

FALLBACK = [  # (source, hypothesis, reference) when ../shared/corpus is absent
    ("The printer is out of paper.", "Der Drucker hat kein Papier mehr.", "Der Drucker hat kein Papier."),
    ("Click Save to keep your changes.", "Klicken Sie auf Speichern.", "Klicken Sie auf Speichern, um Ihre Änderungen zu behalten."),
    ("Your session has expired.", "Ihre Sitzung ist abgelaufen. ", "Ihre Sitzung ist abgelaufen."),
    ("Open the settings menu.", "Öffnen Sie das Menü Einstellungen.", "Öffnen Sie das Einstellungsmenü."),
]


@pytest.fixture(scope="module")
def triples():
    from tests.conftest import CORPUS

    tsv = CORPUS / "wmt" / "en-de.tsv"
    if not tsv.is_file():
        return FALLBACK
    rows = [line.split("\t") for line in tsv.read_text(encoding="utf-8").splitlines()[1:121]]
    return [(r[2], r[3], r[4]) for r in rows]


def _write(path: Path, lines) -> Path:
    path.write_text("".join(line + "\n" for line in lines), encoding="utf-8")
    return path


def _sacrebleu_cli(ref: Path, hyp: Path) -> list[float]:
    out = subprocess.run([str(SACREBLEU), str(ref), "-i", str(hyp), "-m", "bleu", "chrf", "ter", "-b", "-w", "4"],
                         capture_output=True, text=True, check=True).stdout
    return [float(x) for x in json.loads(out)]


def test_scores_equal_sacrebleu_command(triples, tmp_path):
    if not SACREBLEU.exists():
        pytest.skip("sacrebleu command not installed next to this python")
    hyp = _write(tmp_path / "hyp.txt", [t[1] for t in triples])
    ref = _write(tmp_path / "ref.txt", [t[2] for t in triples])
    want = _sacrebleu_cli(ref, hyp)
    s = metrics.evaluate(metrics.read_plain(hyp), metrics.read_plain(ref))
    assert [round(s.bleu, 4), round(s.chrf, 4), round(s.ter, 4)] == want
    assert s.signatures["bleu"].startswith("nrefs:1|case:mixed|eff:no|tok:13a|smooth:exp")
    assert "nc:6|nw:0" in s.signatures["chrf"] and "tok:tercom" in s.signatures["ter"]

    from click.testing import CliRunner

    from tower_cat.cli import cli

    r = CliRunner().invoke(cli, ["evaluate", "--hyp", str(hyp), "--ref", str(ref), "--json"], catch_exceptions=False)
    assert r.exit_code == 0, r.output
    data = json.loads(r.output)
    assert [round(data[k], 4) for k in ("bleu", "chrf", "ter")] == want
    assert data["n"] == len(triples)
    r = CliRunner().invoke(cli, ["evaluate", "--hyp", str(hyp), "--ref", str(ref)], catch_exceptions=False)
    assert "BLEU" in r.output and "nrefs:1" in r.output


def _xliff(path: Path, triples, side: int) -> Path:
    esc = lambda t: t.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")  # noqa: E731
    units = "".join(f'<trans-unit id="t{i}"><source>{esc(t[0])}</source><target>{esc(t[side])}</target></trans-unit>\n'
                    for i, t in enumerate(triples))
    path.write_text('<?xml version="1.0" encoding="UTF-8"?>\n<xliff version="1.2" '
                    'xmlns="urn:oasis:names:tc:xliff:document:1.2"><file original="x" source-language="en" '
                    f'target-language="de" datatype="plaintext"><body>\n{units}</body></file></xliff>\n',
                    encoding="utf-8")
    return path


def test_bilingual_inputs_match_plain_text(triples, tmp_path):
    pytest.importorskip("tower_cat.formats.xliff12")
    triples = triples[:30]
    hyps, refs, srcs = metrics.align(_xliff(tmp_path / "hyp.xlf", triples, 1), _xliff(tmp_path / "ref.xlf", triples, 2))
    assert hyps == [t[1] for t in triples]
    assert refs == [t[2] for t in triples] and srcs == [t[0] for t in triples]
    plain = metrics.evaluate([t[1] for t in triples], [t[2] for t in triples])
    via_xliff = metrics.evaluate(hyps, refs)
    assert (plain.bleu, plain.chrf, plain.ter) == (via_xliff.bleu, via_xliff.chrf, via_xliff.ter)


def test_pairs_by_unit_id(tmp_path):
    pytest.importorskip("tower_cat.formats.xliff12")
    triples = FALLBACK
    hyp = _xliff(tmp_path / "hyp.xlf", triples, 1)
    esc = lambda t: t.replace("&", "&amp;").replace("<", "&lt;")  # noqa: E731
    units = "".join(f'<trans-unit id="t{i}"><source>{esc(t[0])}</source><target>{esc(t[2])}</target></trans-unit>\n'
                    for i, t in reversed(list(enumerate(triples))))
    ref = tmp_path / "ref.xlf"
    ref.write_text('<?xml version="1.0" encoding="UTF-8"?>\n<xliff version="1.2" '
                   'xmlns="urn:oasis:names:tc:xliff:document:1.2"><file original="x" source-language="en" '
                   f'target-language="de" datatype="plaintext"><body>\n{units}</body></file></xliff>\n',
                   encoding="utf-8")
    hyps, refs, srcs = metrics.align(hyp, ref)
    assert refs == [t[2] for t in triples] and hyps == [t[1] for t in triples]


def test_tmx_input(tmp_path):
    pytest.importorskip("tower_cat.formats.tmx")
    tus = "".join(f'<tu><tuv xml:lang="en"><seg>{s}</seg></tuv><tuv xml:lang="de"><seg>{h}</seg></tuv></tu>\n'
                  for s, h, _ in FALLBACK)
    tmx = tmp_path / "hyp.tmx"
    tmx.write_text('<?xml version="1.0" encoding="UTF-8"?>\n<tmx version="1.4"><header creationtool="t" '
                   'creationtoolversion="1" segtype="sentence" o-tmf="x" adminlang="en" srclang="en" '
                   f'datatype="plaintext"/><body>\n{tus}</body></tmx>\n', encoding="utf-8")
    ref = _write(tmp_path / "ref.txt", [t[2] for t in FALLBACK])
    hyps, refs, srcs = metrics.align(tmx, ref)
    assert hyps == [t[1] for t in FALLBACK] and srcs == [t[0] for t in FALLBACK]


def test_comet_in_evaluate(tiny_comet, tmp_path):
    from tower_cat.qe import CometBackend, QEItem

    model = tiny_comet("regression")
    s = metrics.evaluate([t[1] for t in FALLBACK], [t[2] for t in FALLBACK], [t[0] for t in FALLBACK], comet=model,
                         device="cpu")
    direct = CometBackend(model, device="cpu").score([QEItem(*t[:1], t[1], t[2]) for t in FALLBACK])
    assert s.comet == pytest.approx(sum(r.raw["comet"] for r in direct) / len(direct) * 100)
    assert s.comet_segments == [r.score for r in direct]

    from click.testing import CliRunner

    from tower_cat.cli import cli

    hyp = _write(tmp_path / "hyp.txt", [t[1] for t in FALLBACK])
    ref = _write(tmp_path / "ref.txt", [t[2] for t in FALLBACK])
    src = _write(tmp_path / "src.txt", [t[0] for t in FALLBACK])
    r = CliRunner().invoke(cli, ["evaluate", "--hyp", str(hyp), "--ref", str(ref), "--src", str(src),
                                 "--comet", str(model), "--json"], catch_exceptions=False)
    assert r.exit_code == 0, r.output
    # files are read as sacrebleu reads them: the trailing blank of one hypothesis is gone
    from_files = metrics.evaluate(metrics.read_plain(hyp), metrics.read_plain(ref), metrics.read_plain(src),
                                  comet=model, device="cpu")
    assert json.loads(r.output)["comet"] == pytest.approx(from_files.comet)
    r = CliRunner().invoke(cli, ["evaluate", "--hyp", str(hyp), "--ref", str(ref), "--comet", str(model)])
    assert r.exit_code != 0 and "sources" in str(r.exception)


def test_mismatched_lengths(tmp_path):
    hyp = _write(tmp_path / "hyp.txt", ["a", "b"])
    ref = _write(tmp_path / "ref.txt", ["a"])
    with pytest.raises(TowerCatError, match="pair one to one"):
        metrics.align(hyp, ref)
    with pytest.raises(TowerCatError):
        metrics.evaluate([], [])
