"""What only the PostgreSQL TM has: schema migrations, read-only opening, connection errors, and concurrent
writers — two ``tower-cat tm import`` processes and a server accepting interactive-session segments writing
into one TM at the same time (the shared behaviour runs in tests/test_tm.py on both backends)."""

from __future__ import annotations

import concurrent.futures
import os
import random
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from tower_cat.tm import TMError, open_translation_memory

ROOT = Path(__file__).resolve().parents[1]

psycopg = pytest.importorskip("psycopg")
tm_postgres = pytest.importorskip("tower_cat.tm_postgres")


def _tm(url: str, **options):
    return tm_postgres.PostgresTranslationMemory(url, **options)


# ----------------------------------------------------------------------------------------------- schema


def test_schema_version_recorded_and_reopening_changes_nothing(pg_tm_url):
    latest = tm_postgres.MIGRATIONS[-1][0]
    with _tm(pg_tm_url) as tm:
        tm.add("Hello", "Hallo", "en", "de")
        assert tm.stats()["schema_version"] == latest
    with _tm(pg_tm_url) as tm:  # migrate() again: nothing to apply, data kept
        assert len(tm) == 1
        rows = tm.conn.execute("SELECT version FROM tm_schema_version ORDER BY version").fetchall()
        assert [r[0] for r in rows] == [v for v, _, _ in tm_postgres.MIGRATIONS]


def test_a_failing_migration_leaves_the_schema_as_it_was(pg_tm_url, monkeypatch):
    with _tm(pg_tm_url) as tm:
        tm.add("Hello", "Hallo", "en", "de")
    latest = tm_postgres.MIGRATIONS[-1][0]

    def half_done(conn):
        conn.execute("ALTER TABLE tm_entries ADD COLUMN reviewer text")
        conn.execute("SELECT 1 / 0")  # fails after a first change

    monkeypatch.setattr(tm_postgres, "MIGRATIONS", tm_postgres.MIGRATIONS + [(latest + 1, "broken", half_done)])
    with pytest.raises(psycopg.errors.DivisionByZero):
        _tm(pg_tm_url)
    monkeypatch.undo()
    with _tm(pg_tm_url) as tm:
        assert tm.stats()["schema_version"] == latest and len(tm) == 1
        columns = {r[0] for r in tm.conn.execute(
            "SELECT column_name FROM information_schema.columns WHERE table_name = 'tm_entries'")}
        assert "reviewer" not in columns  # the whole migration rolled back with the version row


def test_a_newer_schema_is_refused(pg_tm_url):
    with _tm(pg_tm_url) as tm:
        tm.conn.execute("INSERT INTO tm_schema_version VALUES (999, 'from the future', 0)")
    with pytest.raises(TMError, match="version 999, newer than this tower-cat knows"):
        _tm(pg_tm_url)
    with pytest.raises(TMError, match="version 999"):
        _tm(pg_tm_url, readonly=True)


def test_concurrent_first_opens_migrate_once(pg_tm_url):
    def open_and_add(i: int) -> int:
        with _tm(pg_tm_url) as tm:
            return tm.add(f"Sentence {i}", f"Satz {i}", "en", "de")

    with concurrent.futures.ThreadPoolExecutor(4) as pool:
        ids = list(pool.map(open_and_add, range(8)))
    assert len(set(ids)) == 8
    with _tm(pg_tm_url, readonly=True) as tm:
        assert len(tm) == 8
        assert tm.conn.execute("SELECT count(*) FROM tm_schema_version").fetchone()[0] == len(tm_postgres.MIGRATIONS)


def test_read_only_opening(pg_tm_url):
    with pytest.raises(TMError, match="not a tower-cat translation memory"):
        _tm(pg_tm_url, readonly=True)  # an empty database is not created when only reading
    with _tm(pg_tm_url) as tm:
        tm.add("Hello", "Hallo", "en", "de")
    with _tm(pg_tm_url, readonly=True) as tm:
        assert tm.lookup("Hello", "en", "de")[0].score == 100
        with pytest.raises(TMError, match="read-only"):
            tm.add("Bye", "Tschüss", "en", "de")


def test_connection_errors_hide_the_password(postgres_server):
    url = f"postgresql://someone:s3cret@127.0.0.1:{postgres_server.port}/no_such_database"
    with pytest.raises(TMError) as err:
        open_translation_memory(url)
    assert "s3cret" not in str(err.value) and "someone:***@" in str(err.value)
    assert "cannot connect" in str(err.value)


# ----------------------------------------------------------------------------------------------- concurrency


def _write_tmx(path: Path, numbers: range) -> None:
    rng = random.Random(7)
    words = "note notebook task file project member board tag reminder share sync archive".split()
    with open(path, "w", encoding="utf-8") as fh:
        fh.write('<?xml version="1.0" encoding="UTF-8"?>\n<tmx version="1.4"><header srclang="en-US" '
                 'datatype="plaintext" segtype="sentence" adminlang="en" o-tmf="t" creationtool="t" '
                 'creationtoolversion="1"/><body>\n')
        for i in numbers:
            rng.seed(i)  # unit i has the same text in every file that holds it
            text = " ".join(rng.choice(words) for _ in range(rng.randint(3, 9))) + f" number {i}."
            fh.write(f'<tu tuid="{i}"><tuv xml:lang="en-US"><seg>{text}</seg></tuv>'
                     f'<tuv xml:lang="de-DE"><seg>{text[::-1]}</seg></tuv></tu>\n')
        fh.write("</body></tmx>\n")


def _started_imports(url: str) -> int:
    with psycopg.connect(url, autocommit=True) as conn:
        if conn.execute("SELECT to_regclass('tm_imports')").fetchone()[0] is None:
            return 0
        return conn.execute("SELECT count(*) FROM tm_imports WHERE units_done > 0").fetchone()[0]


def test_two_imports_and_a_server_write_one_tm_at_once(pg_tm_url, tiny_llama, tmp_path):
    """Two `tower-cat tm import` processes (overlapping files: 4 000 units in both) and the HTTP server's
    interactive sessions (accepted segments go into the TM) write at the same time; afterwards every entry
    is there exactly once and every target belongs to its source."""
    from tower_cat.adapters.app import create_app
    from tower_cat.adapters.cli import BackgroundServer
    from tower_cat.adapters.service import ServerConfig, Service

    first, second = tmp_path / "first.tmx", tmp_path / "second.tmx"
    _write_tmx(first, range(0, 10000))
    _write_tmx(second, range(6000, 16000))
    distinct_units = 16000
    sessions = 24
    open_translation_memory(pg_tm_url).close()  # schema first: the writers then race on data, not DDL
    env = dict(os.environ, PYTHONPATH=str(ROOT), HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1")
    command = [sys.executable, "-c", "from tower_cat.cli import main; main()", "tm", "import"]
    imports = [subprocess.Popen(command + [str(path), "--db", pg_tm_url, "--batch-size", "500", "--no-progress"],
                                env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
               for path in (first, second)]
    service = Service.from_config(ServerConfig(model=str(tiny_llama.ct2_path), tm=pg_tm_url, device="cpu",
                                               threads=1, max_new_tokens=12, state=":memory:"))
    overlapped, accepted_sources = 0, []
    try:
        deadline = time.monotonic() + 120
        while _started_imports(pg_tm_url) < 2 and time.monotonic() < deadline:  # both have committed a batch
            if any(p.poll() not in (None, 0) for p in imports):
                break
            time.sleep(0.05)
        with BackgroundServer(create_app(service)) as srv, httpx.Client(base_url=srv.url, timeout=120) as http:
            def session(i: int) -> tuple[str | None, int]:
                source = f"Session sentence {i} about the board."
                started = http.post("/v1/sessions", json={"source_lang": "en", "target_lang": "de",
                                                          "segment": source, "use_tm": False})
                assert started.status_code == 201, started.text
                running = sum(p.poll() is None for p in imports)
                accepted = http.post(f"/v1/sessions/{started.json()['id']}/accept", json={"force": True})
                if accepted.status_code == 409 and "empty" in accepted.text:
                    return None, running  # the random tiny model said nothing: nothing to accept
                assert accepted.status_code == 200, accepted.text
                return source, running

            with concurrent.futures.ThreadPoolExecutor(4) as pool:
                for source, running in pool.map(session, range(sessions)):
                    if source is not None:
                        accepted_sources.append(source)
                        overlapped += running > 0
        for p in imports:
            out, err = p.communicate(timeout=300)
            assert p.returncode == 0, err[-2000:]
    finally:
        service.close()
        for p in imports:
            if p.poll() is None:
                p.kill()
    print(f"{len(accepted_sources)} of {sessions} sessions accepted, {overlapped} while an import was running")
    assert len(accepted_sources) >= sessions // 2
    with _tm(pg_tm_url, readonly=True) as tm:
        assert tm.integrity_check() == "ok"
        conn = tm.conn
        assert len(tm) == distinct_units + len(accepted_sources)
        counts = dict(conn.execute("SELECT coalesce(origin, ''), count(*) FROM tm_entries GROUP BY 1").fetchall())
        assert counts == {"tmx": distinct_units, "interactive": len(accepted_sources)}
        # every entry exactly once: one per source text, no (source, target) twice
        assert conn.execute("SELECT count(DISTINCT source_id) FROM tm_entries").fetchone()[0] == len(tm)
        assert conn.execute("SELECT count(*) FROM tm_sources").fetchone()[0] == len(tm)
        # nothing corrupt: each imported target is its own source reversed, every segment JSON readable
        assert conn.execute("SELECT count(*) FROM tm_entries e JOIN tm_sources s ON s.id = e.source_id "
                            "WHERE e.origin = 'tmx' AND e.target_text <> reverse(s.norm)").fetchone()[0] == 0
        numbers = {int(n) for (n,) in conn.execute(
            "SELECT substring(s.norm from 'number ([0-9]+)') FROM tm_entries e JOIN tm_sources s "
            "ON s.id = e.source_id WHERE e.origin = 'tmx'")}
        assert numbers == set(range(distinct_units))
        imports_done = tm.stats()["imports"]
        assert sorted(r["units"] for r in imports_done) == [10000, 10000]
        assert all(r["status"] == "done" for r in imports_done)
        for source in accepted_sources:
            hit = tm.lookup(source, "en", "de", fuzzy=False)
            assert len(hit) == 1 and hit[0].score == 100 and hit[0].origin == "interactive"
