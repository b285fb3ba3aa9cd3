"""Durable, bounded file jobs (adapters/jobs.py, adapters/state.py).

* the state database: glossaries, usage and job records survive a new Service over the same file;
* a job recorded as running when the server died is resumed, a finished one served, expired ones removed;
* DELETE cancels a running job (events, not sleeps: the engine is gated);
* a job past its time budget, or whose upload needs more memory than its budget to read (the 182-byte PO
  with nplurals=100000000), fails without holding up the jobs after it;
* the next job is taken from the key that waited longest;
* `tower-cat serve` killed with SIGKILL during a job: after a restart the job is listed, resumed, downloadable.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import pytest

from tower_cat.adapters.app import create_app
from tower_cat.adapters.cli import BackgroundServer
from tower_cat.adapters.jobs import Job, JobManager
from tower_cat.adapters.service import Dictionary, ServerConfig, Service
from tower_cat.adapters.state import SQLiteState, owner_id

ROOT = Path(__file__).resolve().parents[1]
SAMPLES = ROOT / "samples"
PLURAL_BOMB = (b'msgid ""\nmsgstr ""\n"Content-Type: text/plain; charset=UTF-8\\n"\n'
               b'"Plural-Forms: nplurals=100000000; plural=n;\\n"\n\nmsgid "a"\nmsgstr ""\n')


def xliff(n: int, offset: int = 0) -> bytes:
    units = "".join(f'<trans-unit id="u{i}"><source>Sentence {i} says the printer needs paper tray {i % 7}.'
                    f'</source></trans-unit>' for i in range(offset, offset + n))
    return ('<?xml version="1.0" encoding="UTF-8"?>\n<xliff version="1.2" '
            'xmlns="urn:oasis:names:tc:xliff:document:1.2"><file original="doc" source-language="en" '
            f'target-language="de" datatype="plaintext"><body>{units}</body></file></xliff>\n').encode()


class GatedEngine:
    """The real engine, but every generate call waits for ``gate``; ``entered`` is set when one is waiting."""

    def __init__(self, engine):
        self._engine = engine
        self.gate = threading.Event()
        self.entered = threading.Event()

    def __getattr__(self, name):
        return getattr(self._engine, name)

    def generate(self, *args, **kwargs):
        self.entered.set()
        assert self.gate.wait(60), "the test never opened the gate"
        return self._engine.generate(*args, **kwargs)


def _service(engine, tmp: Path, **config) -> Service:
    config.setdefault("max_new_tokens", 4)
    return Service(engine, ServerConfig(jobs_dir=str(tmp / "jobs"), **config))


def _finished(jobs: JobManager, jid: str, timeout: float = 120) -> Job:
    assert jobs.wait_for(lambda: jid in jobs.jobs and jobs.jobs[jid].status in ("done", "failed"), timeout), \
        jobs.jobs.get(jid)
    return jobs.jobs[jid]


# ----------------------------------------------------------------------------------------------------- state


def test_state_keeps_glossaries_usage_and_jobs_across_services(engine, tmp_path):
    key = "secret-key-of-a"
    svc = _service(engine, tmp_path, api_keys=[key])
    g = svc.glossaries.create("g", [Dictionary("en", "de", [("cat", "Katze")])], owner=owner_id(key))
    svc.usage.add(key, 12, 2)
    svc.close()
    again = _service(engine, tmp_path, api_keys=[key])
    try:
        kept = again.glossaries.get(g.glossary_id, again.caller(key))
        assert (kept.name, kept.owner, kept.dictionaries[0].entries) == ("g", owner_id(key), [("cat", "Katze")])
        assert vars(again.usage.get(key)) == {"characters": 12, "requests": 1, "segments": 2}
        for f in (tmp_path / "jobs").glob("state.sqlite*"):  # the database holds owner ids, never a key
            assert key.encode() not in f.read_bytes()
    finally:
        again.close()


def test_state_database_is_wal_and_refuses_a_newer_schema(tmp_path):
    import sqlite3

    path = tmp_path / "state.sqlite"
    SQLiteState(path).close()
    with sqlite3.connect(path) as db:
        assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        db.execute("UPDATE meta SET value = '99' WHERE key = 'schema'")
    from tower_cat.adapters.state import StateError

    with pytest.raises(StateError, match="newer"):
        SQLiteState(path)


# ----------------------------------------------------------------------------------------------------- restart


def test_recovery_resumes_running_jobs_serves_finished_and_removes_expired(engine, tmp_path):
    jobs_dir = tmp_path / "jobs"
    state = SQLiteState(jobs_dir / "state.sqlite")

    def record(jid: str, status: str, finished: float | None = None, interrupted: int = 0) -> Job:
        job = Job(jid, "", "translate", "a.xlf", str(jobs_dir / jid), "en", "de", status=status,
                  finished=finished, interrupted=interrupted)
        (job.path / "in").mkdir(parents=True)
        (job.path / "out").mkdir()
        job.input.write_bytes(xliff(3))
        state.put_job(job)
        return job

    running = record("a" * 32, "running")
    done = record("b" * 32, "done", finished=time.time())
    done.output.write_bytes(b"translated")
    expired = record("c" * 32, "done", finished=time.time() - 30 * 86400)
    crashing = record("d" * 32, "running", interrupted=2)   # took the server down twice already
    orphan = jobs_dir / ("e" * 32)
    orphan.mkdir()
    state.close()

    svc = _service(engine, tmp_path)
    try:
        jobs = JobManager(svc, str(jobs_dir))
        svc.jobs = jobs
        resumed = _finished(jobs, running.id)
        assert resumed.status == "done" and resumed.interrupted == 1 and resumed.output.is_file()
        assert jobs.get(done.id).status == "done" and jobs.get(done.id).output.read_bytes() == b"translated"
        assert expired.id not in jobs.jobs and not expired.path.exists()
        assert jobs.get(crashing.id).status == "failed" and "restarts" in jobs.get(crashing.id).error
        assert not orphan.exists()
        assert {r.id: r.status for r in svc.state.jobs()} == {running.id: "done", done.id: "done",
                                                               crashing.id: "failed"}
    finally:
        svc.close()


# ----------------------------------------------------------------------------------------------------- cancel, budgets


def test_delete_cancels_a_running_job(engine, tmp_path):
    gated = GatedEngine(engine)
    svc = _service(gated, tmp_path, job_workers=1)
    try:
        with BackgroundServer(create_app(svc)) as srv, httpx.Client(base_url=srv.url, timeout=60) as c:
            jid = c.post("/v1/files", files={"file": ("a.xlf", xliff(40))},
                         data={"target_lang": "de", "source_lang": "en"}).json()["job_id"]
            assert gated.entered.wait(60)  # the job is inside the engine
            assert c.get(f"/v1/jobs/{jid}").json()["status"] == "running"
            workdir = svc.jobs.jobs[jid].path
            results = {}
            deleter = threading.Thread(target=lambda: results.update(r=c.delete(f"/v1/jobs/{jid}")))
            deleter.start()
            assert svc.jobs.wait_for(lambda: svc.jobs.jobs.get(jid) is None
                                     or svc.jobs.jobs[jid].status == "cancelling", 30)
            gated.gate.set()  # the engine call ends; the job stops at its next checkpoint
            deleter.join(60)
            assert results["r"].status_code in (202, 204)
            assert svc.jobs.wait_for(lambda: jid not in svc.jobs.jobs, 60)
            assert c.get(f"/v1/jobs/{jid}").status_code == 404
            assert not workdir.exists() and all(r.id != jid for r in svc.state.jobs())
            # the worker is free again: the next job runs to the end
            nxt = c.post("/v1/files", files={"file": ("b.xlf", xliff(2))}, data={"target_lang": "de"}).json()
            assert _finished(svc.jobs, nxt["job_id"]).status == "done"
    finally:
        gated.gate.set()
        svc.close()


def test_a_job_past_its_time_budget_fails(engine, tmp_path):
    gated = GatedEngine(engine)
    svc = _service(gated, tmp_path, job_max_seconds=0.5, max_batch_prompts=4)
    try:
        jobs = JobManager(svc, str(tmp_path / "jobs"))
        svc.jobs = jobs
        job = jobs.create("a.xlf", xliff(20), task="translate", source_lang="en", target_lang="de", options={},
                          glossary_id=None)
        time.sleep(0.6)  # the budget is spent, whatever the job has reached by now (no assertion on time)
        gated.gate.set()
        done = _finished(jobs, job.id)
        assert done.status == "failed" and "time budget" in done.error, done.error
        assert not done.output.exists()
    finally:
        gated.gate.set()
        svc.close()


def test_a_file_too_big_to_read_fails_alone_and_the_next_job_runs(engine, tmp_path):
    """An upload is read in a child process under the memory budget: a file that needs more fails its job with a
    reason, the server's memory never sees it, and the job after it is done."""
    svc = _service(engine, tmp_path, job_max_memory_mb=80, job_workers=1)  # the reader child needs ~30 MB idle
    try:
        jobs = JobManager(svc, str(tmp_path / "jobs"))
        svc.jobs = jobs
        rss = _rss_mb()
        big = jobs.create("big.xlf", xliff(40_000), task="translate", source_lang="en", target_lang="de",
                          options={}, glossary_id=None)
        good = jobs.create("good.xlf", xliff(3), task="translate", source_lang="en", target_lang="de",
                           options={}, glossary_id=None)
        failed = _finished(jobs, big.id)
        assert failed.status == "failed" and "memory budget (80 MB)" in failed.error, failed.error
        assert "big.xlf" in failed.error and str(tmp_path) not in failed.error
        assert _finished(jobs, good.id).status == "done"
        assert _rss_mb() < rss + 100  # 40 000 units were never loaded here
    finally:
        svc.close()


def test_the_plural_bomb_is_refused_at_upload_and_later_jobs_run(engine, tmp_path):
    """The 182-byte PO with nplurals=100000000 (issue 19): 400 naming the header, no job, the server unharmed."""
    svc = _service(engine, tmp_path)
    try:
        with BackgroundServer(create_app(svc)) as srv, httpx.Client(base_url=srv.url, timeout=60) as c:
            rss = _rss_mb()
            r = c.post("/v1/files", files={"file": ("bomb.po", PLURAL_BOMB)}, data={"target_lang": "de"})
            assert r.status_code == 400 and "Plural-Forms" in r.json()["detail"], r.text
            assert "bomb.po" in r.json()["detail"] and str(tmp_path) not in r.json()["detail"]
            assert c.get("/v1/jobs").json()["jobs"] == []
            assert not [p for p in (tmp_path / "jobs").iterdir() if p.is_dir()]
            ok = c.post("/v1/files", files={"file": ("ok.xlf", xliff(2))}, data={"target_lang": "de"}).json()
            assert _finished(svc.jobs, ok["job_id"]).status == "done"
            assert _rss_mb() < rss + 100
    finally:
        svc.close()


def test_too_many_units_fail_before_any_engine_work(engine, tmp_path):
    gated = GatedEngine(engine)  # never opened: the job must not reach the engine
    svc = _service(gated, tmp_path, job_max_units=5)
    try:
        jobs = JobManager(svc, str(tmp_path / "jobs"))
        svc.jobs = jobs
        job = jobs.create("big.xlf", xliff(6), task="translate", source_lang="en", target_lang="de", options={},
                          glossary_id=None)
        failed = _finished(jobs, job.id)
        assert failed.status == "failed" and "6 units" in failed.error and not gated.entered.is_set()
    finally:
        gated.gate.set()
        svc.close()


def test_the_next_job_comes_from_the_key_that_waited(engine, tmp_path):
    gated = GatedEngine(engine)
    svc = _service(gated, tmp_path, job_workers=1, api_keys=["a", "b"])
    try:
        jobs = JobManager(svc, str(tmp_path / "jobs"))
        svc.jobs = jobs
        a, b = svc.caller("a"), svc.caller("b")
        first = jobs.create("a1.xlf", xliff(1), task="translate", source_lang="en", target_lang="de", options={},
                            glossary_id=None, caller=a)
        assert gated.entered.wait(60)
        a2 = jobs.create("a2.xlf", xliff(1, 1), task="translate", source_lang="en", target_lang="de",
                         options={}, glossary_id=None, caller=a)
        a3 = jobs.create("a3.xlf", xliff(1, 2), task="translate", source_lang="en", target_lang="de",
                         options={}, glossary_id=None, caller=a)
        b1 = jobs.create("b1.xlf", xliff(1, 3), task="translate", source_lang="en", target_lang="de",
                         options={}, glossary_id=None, caller=b)
        gated.gate.set()
        for j in (first, a2, a3, b1):
            assert _finished(jobs, j.id).status == "done"
        started = [jid for jid, status in jobs.events if status == "running"]
        assert started == [first.id, b1.id, a2.id, a3.id]
    finally:
        gated.gate.set()
        svc.close()


def _rss_mb() -> float:
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


# ----------------------------------------------------------------------------------------------------- kill -9


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _start(tiny, tmp_path: Path, port: int) -> subprocess.Popen:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
    log = open(tmp_path / f"serve-{port}.log", "ab")
    proc = subprocess.Popen([sys.executable, "-c", "from tower_cat.cli import main; main()", "serve", "--model",
                             str(tiny.ct2_path), "--port", str(port), "--device", "cpu", "--threads", "1",
                             "--max-new-tokens", "24", "--max-batch", "8", "--api-key", "k1",
                             "--jobs-dir", str(tmp_path / "jobs"), "--cache", str(tmp_path / "cache.sqlite"),
                             "--log-level", "warning"], env=env, stdout=log, stderr=subprocess.STDOUT, cwd=tmp_path)
    deadline = time.monotonic() + 120
    while True:
        try:
            if httpx.get(f"http://127.0.0.1:{port}/v1/health", timeout=2).status_code == 200:
                return proc
        except httpx.TransportError:
            pass
        assert proc.poll() is None, (tmp_path / f"serve-{port}.log").read_text()
        assert time.monotonic() < deadline, "the server did not come up"
        time.sleep(0.2)


def test_serve_killed_during_a_job_lists_resumes_and_serves_it_after_restart(tiny, tmp_path):
    auth = {"Authorization": "Bearer k1"}
    port = _free_port()
    proc = _start(tiny, tmp_path, port)
    url = f"http://127.0.0.1:{port}"
    try:
        with httpx.Client(base_url=url, headers=auth, timeout=30) as c:
            small = c.post("/v1/files", files={"file": ("small.xlf", xliff(2))},
                           data={"target_lang": "de", "source_lang": "en"}).json()["job_id"]
            deadline = time.monotonic() + 120
            while c.get(f"/v1/jobs/{small}").json()["status"] != "done":
                assert time.monotonic() < deadline, c.get(f"/v1/jobs/{small}").json()
                time.sleep(0.1)
            big = c.post("/v1/files", files={"file": ("big.xlf", xliff(600))},
                         data={"target_lang": "de", "source_lang": "en"}).json()["job_id"]
            deadline = time.monotonic() + 120
            while True:  # kill it once it has made progress and is not finished
                job = c.get(f"/v1/jobs/{big}").json()
                if job["status"] == "running" and 0 < job["progress"]["done"] < job["progress"]["total"]:
                    break
                assert job["status"] in ("queued", "running"), job  # finished before the kill: make it bigger
                assert time.monotonic() < deadline, job
                time.sleep(0.05)
        proc.send_signal(signal.SIGKILL)
        proc.wait(30)
        proc = _start(tiny, tmp_path, port)
        with httpx.Client(base_url=url, headers=auth, timeout=30) as c:
            listed = {j["job_id"]: j for j in c.get("/v1/jobs").json()["jobs"]}
            assert set(listed) == {small, big}
            assert listed[big]["interrupted"] == 1 and listed[big]["status"] in ("queued", "running", "done")
            first = c.get(f"/v1/jobs/{small}/download")
            assert first.status_code == 200 and b"<target" in first.content
            deadline = time.monotonic() + 300
            while (job := c.get(f"/v1/jobs/{big}").json())["status"] != "done":
                assert job["status"] in ("queued", "running"), job
                assert time.monotonic() < deadline, job
                time.sleep(0.2)
            out = c.get(f"/v1/jobs/{big}/download")
            assert out.status_code == 200 and out.content.count(b"<target") == 600
            assert c.get(f"/v1/jobs/{big}/summary").json()["totals"]
    finally:
        proc.kill()
        proc.wait(30)
    leftovers = [p for p in (tmp_path / "jobs").rglob("*.tmp")]
    assert leftovers == []


def test_another_servers_jobs_in_a_shared_state_are_listed_but_never_resumed_here(engine, tmp_path):
    """Several servers over one state (PostgreSQL): a restart resumes only this server's jobs."""
    jobs_dir = tmp_path / "jobs"
    state = SQLiteState(jobs_dir / "state.sqlite")
    theirs = Job("f" * 32, "", "translate", "a.xlf", "/elsewhere/" + "f" * 32, "en", "de", status="running",
                 node="other-host:/srv/jobs")
    state.put_job(theirs)
    state.close()
    svc = _service(engine, tmp_path)
    try:
        svc.state.shared = True  # what a PostgreSQL state says
        jobs = JobManager(svc, str(jobs_dir))
        svc.jobs = jobs
        assert theirs.id not in jobs.jobs  # not resumed here
        listed = jobs.get(theirs.id)
        assert listed.status == "running" and listed.interrupted == 0 and listed.node == theirs.node
        assert [j.id for j in jobs.list()] == [theirs.id]
        with pytest.raises(Exception, match="another server"):
            jobs.delete(theirs.id)
        assert [r.status for r in svc.state.jobs()] == ["running"]
    finally:
        svc.close()


def test_glossaries_made_and_changed_over_http_survive_a_restart(engine, tmp_path):
    auth = {"Authorization": "DeepL-Auth-Key k"}
    first = _service(engine, tmp_path, api_keys=["k"])
    with BackgroundServer(create_app(first)) as srv, httpx.Client(base_url=srv.url, timeout=60, headers=auth) as c:
        g = c.post("/v3/glossaries", json={"name": "ui", "dictionaries": [
            {"source_lang": "EN", "target_lang": "DE", "entries": "note\tNotiz", "entries_format": "tsv"}]}).json()
        assert c.patch(f"/v3/glossaries/{g['glossary_id']}", json={"name": "ui-2", "dictionaries": [
            {"source_lang": "EN", "target_lang": "FR", "entries": "note\tnote", "entries_format": "tsv"}]}
        ).status_code == 200
        gone = c.post("/v2/glossaries", json={"name": "tmp", "source_lang": "EN", "target_lang": "DE",
                                              "entries": "a\tb", "entries_format": "tsv"}).json()
        assert c.delete(f"/v2/glossaries/{gone['glossary_id']}").status_code == 204
    first.close()
    again = _service(engine, tmp_path, api_keys=["k"])
    try:
        with BackgroundServer(create_app(again)) as srv, httpx.Client(base_url=srv.url, timeout=60,
                                                                      headers=auth) as c:
            listed = c.get("/v3/glossaries").json()["glossaries"]
            assert [(x["name"], sorted((d["source_lang"], d["target_lang"]) for d in x["dictionaries"]))
                    for x in listed] == [("ui-2", [("en", "de"), ("en", "fr")])]
            entries = c.get(f"/v3/glossaries/{g['glossary_id']}/entries",
                            params={"source_lang": "EN", "target_lang": "DE"}).json()
            assert entries["dictionaries"][0]["entries"] == "note\tNotiz"
    finally:
        again.close()
