"""Two ``tower-cat serve`` processes sharing one PostgreSQL (``--tm`` and ``--state`` the same URL) behave as
one server: a glossary created through one is used by the other, usage is counted once across both, and an
interactive session started on one continues on the other. Real processes, real HTTP, a real PostgreSQL
(tests/conftest_pg.py)."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

ROOT = Path(__file__).resolve().parents[1]
KEY = "team-key"

pytest.importorskip("psycopg")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _serve(model: Path, url: str, port: int, log: Path) -> subprocess.Popen:
    env = dict(os.environ, PYTHONPATH=str(ROOT), HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1",
               TOKENIZERS_PARALLELISM="false")
    env.pop("TOWER_CAT_API_KEYS", None)
    command = [sys.executable, "-c", "from tower_cat.cli import main; main()", "serve", "--model", str(model),
               "--tm", url, "--state", url, "--port", str(port), "--api-key", KEY, "--device", "cpu",
               "--threads", "1", "--max-new-tokens", "8", "--log-level", "warning"]
    with open(log, "w") as out:  # the child keeps its own copy of the descriptor
        return subprocess.Popen(command, env=env, stdout=out, stderr=subprocess.STDOUT)


def _wait_ready(proc: subprocess.Popen, base: str, log: Path, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"serve exited with {proc.returncode}: {log.read_text()[-2000:]}")
        try:
            if httpx.get(base + "/v1/health", timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise AssertionError(f"serve did not answer in {timeout} s: {log.read_text()[-2000:]}")


@pytest.fixture
def two_servers(pg_tm_url, tiny_llama, tmp_path):
    ports = [_free_port(), _free_port()]
    logs = [tmp_path / f"serve-{i}.log" for i in range(2)]
    # the first server creates the schema before the second starts (they would also cope at once)
    procs = []
    try:
        for port, log in zip(ports, logs):
            proc = _serve(tiny_llama.ct2_path, pg_tm_url, port, log)
            procs.append(proc)
            _wait_ready(proc, f"http://127.0.0.1:{port}", log)
        headers = {"Authorization": f"Bearer {KEY}"}
        clients = [httpx.Client(base_url=f"http://127.0.0.1:{p}", headers=headers, timeout=120) for p in ports]
        yield clients
        for c in clients:
            c.close()
    finally:
        for proc in procs:
            proc.terminate()
        for proc in procs:
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()


def test_two_serve_processes_share_glossaries_usage_sessions_and_tm(two_servers):
    a, b = two_servers
    # a glossary created through A ...
    made = a.post("/v1/glossaries", json={"name": "team", "source_lang": "en", "target_lang": "de",
                                          "entries": [{"source": "photo printer", "target": "Fotodrucker"}]})
    assert made.status_code == 201, made.text
    gid = made.json()["glossary_id"]
    # ... is known to B, and B translates with it (an unknown id is refused: the check is real)
    assert b.get(f"/v1/glossaries/{gid}").json()["name"] == "team"
    entries = b.get(f"/v1/glossaries/{gid}/entries").json()["dictionaries"][0]["entries"]
    assert entries == [{"source": "photo printer", "target": "Fotodrucker"}]
    assert b.post("/v1/translate", json={"source_lang": "en", "target_lang": "de", "segments": ["x"],
                                         "glossary_ids": ["no-such-glossary"]}).status_code == 404
    texts = ["The photo printer is ready.", "Print the photo.", "Open the printer tray."]
    used = b.post("/v1/translate", json={"source_lang": "en", "target_lang": "de", "segments": texts[:1],
                                         "glossary_ids": [gid]})
    assert used.status_code == 200, used.text
    # usage: one request on B (above), two on A; both servers report the same total, counted once
    for text in texts[1:]:
        assert a.post("/v1/translate", json={"source_lang": "en", "target_lang": "de",
                                             "segments": [text]}).status_code == 200
    usage_a, usage_b = a.get("/v1/usage").json(), b.get("/v1/usage").json()
    assert usage_a == usage_b
    assert usage_a["requests"] == 3 and usage_a["segments"] == 3
    assert usage_a["characters"] == sum(len(t) for t in texts)
    # a session started on A continues on B, and A sees B's turn
    started = a.post("/v1/sessions", json={"source_lang": "en", "target_lang": "de",
                                           "segment": "Check the paper tray.", "use_tm": False})
    assert started.status_code == 201, started.text
    sid = started.json()["id"]
    turn = b.post(f"/v1/sessions/{sid}/turns", json={"instruction": "more formal"})
    assert turn.status_code == 200, turn.text
    assert len(turn.json()["turns"]) == 2
    assert [t["instruction"] for t in a.get(f"/v1/sessions/{sid}").json()["turns"]] == [None, "more formal"]
    # the TM is shared too: an entry added through B is found through A
    added = b.post("/v1/tm", json={"source": "The tray is empty.", "target": "Das Fach ist leer.",
                                   "source_lang": "en", "target_lang": "de"})
    assert added.status_code == 201, added.text
    found = a.post("/v1/tm/lookup", json={"text": "The tray is empty.", "source_lang": "en", "target_lang": "de"})
    assert found.json()["matches"][0]["target"] == "Das Fach ist leer."
    # deleting the glossary through B removes it for A
    assert b.delete(f"/v1/glossaries/{gid}").status_code == 204
    assert a.get(f"/v1/glossaries/{gid}").status_code == 404
