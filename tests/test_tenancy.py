"""Tenancy by API key: every endpoint that takes an id answers 404 to a key that did not create the record,
the admin key sees everything, and the TM a key writes follows ``--tm-mode``.

One server (tiny random Llama on 127.0.0.1) with keys A and B and an admin key; the records are made by A over
the real HTTP API, then every id-taking endpoint is called with B (404, and nothing changed), with A (it works)
and with the admin key (it works).
"""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from tower_cat.adapters.app import create_app
from tower_cat.adapters.cli import BackgroundServer
from tests.serving import serving
from tower_cat.adapters.service import ServerConfig, Service

ROOT = Path(__file__).resolve().parents[1]
SAMPLES = ROOT / "samples"
A, B, ADMIN = "key-a", "key-b", "key-admin"


def _auth(key: str) -> dict:
    return {"Authorization": f"Bearer {key}"}


def _deepl(key: str) -> dict:
    return {"Authorization": f"DeepL-Auth-Key {key}"}


def _serve(engine, tmp: Path, **config):
    from tower_cat.tm import TranslationMemory

    tm = TranslationMemory(tmp / "shared-tm.sqlite")
    svc = Service(engine, ServerConfig(max_new_tokens=4, api_keys=[A, B], admin_key=ADMIN, jobs_dir=str(tmp / "jobs"),
                                       sessions=str(tmp / "sessions.sqlite"), **config), tm=tm)
    return svc, tm


@pytest.fixture(scope="module")
def server(engine, tmp_path_factory):
    svc, tm = _serve(engine, tmp_path_factory.mktemp("tenancy"))
    with serving(svc) as srv:
        yield srv
    tm.close()


@pytest.fixture
def http(server):
    with httpx.Client(base_url=server.url, timeout=60) as client:
        yield client


def _wait_job(server, job_id: str) -> None:
    jobs = server.service.jobs
    assert jobs.wait_for(lambda: jobs.jobs[job_id].status in ("done", "failed"), 120)


@pytest.fixture(scope="module")
def records(server):
    """What key A made: a /v1 glossary, a DeepL v2 and a v3 glossary, a finished file job, a session."""
    with httpx.Client(base_url=server.url, timeout=60) as c:
        g1 = c.post("/v1/glossaries", headers=_auth(A), json={"name": "a-v1", "source_lang": "en",
                                                                "target_lang": "de",
                                                                "entries": [{"source": "printer",
                                                                             "target": "Drucker"}]})
        assert g1.status_code == 201, g1.text
        g2 = c.post("/v2/glossaries", headers=_deepl(A), json={"name": "a-v2", "source_lang": "EN",
                                                                 "target_lang": "DE", "entries": "paper\tPapier",
                                                                 "entries_format": "tsv"})
        assert g2.status_code == 201, g2.text
        g3 = c.post("/v3/glossaries", headers=_deepl(A),
                    json={"name": "a-v3", "dictionaries": [{"source_lang": "EN", "target_lang": "DE",
                                                            "entries": "note\tNotiz", "entries_format": "tsv"}]})
        assert g3.status_code == 201, g3.text
        data = (SAMPLES / "tower-notes.en-de.xlf").read_bytes()
        job = c.post("/v1/files", headers=_auth(A), files={"file": ("a.xlf", data)},
                     data={"target_lang": "de", "source_lang": "en"})
        assert job.status_code == 202, job.text
        session = c.post("/v1/sessions", headers=_auth(A), json={"source_lang": "en", "target_lang": "de",
                                                                   "segment": "The printer is out of paper."})
        assert session.status_code == 201, session.text
    ids = {"v1": g1.json()["glossary_id"], "v2": g2.json()["glossary_id"], "v3": g3.json()["glossary_id"],
           "job": job.json()["job_id"], "session": session.json()["id"]}
    _wait_job(server, ids["job"])
    assert server.service.jobs.jobs[ids["job"]].status == "done", server.service.jobs.jobs[ids["job"]].error
    return ids


# (method, path, body kind, body) of every read that takes an id; {v1} etc. are filled from `records`
READS = [
    ("GET", "/v1/glossaries/{v1}", None, None),
    ("GET", "/v1/glossaries/{v1}/entries", None, None),
    ("GET", "/v2/glossaries/{v2}", None, None),
    ("GET", "/v2/glossaries/{v2}/entries", None, None),
    ("GET", "/v3/glossaries/{v3}", None, None),
    ("GET", "/v3/glossaries/{v3}/entries", None, None),
    ("GET", "/v1/jobs/{job}", None, None),
    ("GET", "/v1/jobs/{job}/summary", None, None),
    ("GET", "/v1/jobs/{job}/download", None, None),
    ("GET", "/v1/sessions/{session}", None, None),
]

# changes that take an id; B must get 404 and change nothing
WRITES = [
    ("PATCH", "/v3/glossaries/{v3}", {"name": "stolen"}),
    ("PUT", "/v3/glossaries/{v3}/dictionaries", {"source_lang": "EN", "target_lang": "FR", "entries": "a\tb",
                                                 "entries_format": "tsv"}),
    ("DELETE", "/v3/glossaries/{v3}/dictionaries?source_lang=EN&target_lang=DE", None),
    ("POST", "/v1/sessions/{session}/turns", {"instruction": "shorter"}),
    ("POST", "/v1/sessions/{session}/undo", None),
    ("POST", "/v1/sessions/{session}/accept", {"force": True}),
    ("DELETE", "/v1/sessions/{session}", None),
    ("DELETE", "/v1/jobs/{job}", None),
    ("DELETE", "/v1/glossaries/{v1}", None),
    ("DELETE", "/v2/glossaries/{v2}", None),
    ("DELETE", "/v3/glossaries/{v3}", None),
]


def _id_in(path: str) -> str:
    return path.split("{")[1].split("}")[0]


def _headers(path: str, key: str) -> dict:
    return _deepl(key) if path.startswith(("/v2", "/v3")) else _auth(key)


@pytest.mark.parametrize("method,path,_kind,body", READS, ids=[f"{m} {p}" for m, p, _, _ in READS])
def test_reads_by_id_are_404_for_another_key(http, records, method, path, _kind, body):
    url = path.format(**records)
    other = http.request(method, url, headers=_headers(path, B))
    assert other.status_code == 404, (url, other.status_code, other.text)
    fake = {k: v[::-1] for k, v in records.items()}  # ids nobody has: B's answer must be the same 404
    missing = http.request(method, path.format(**fake), headers=_headers(path, B))
    assert (missing.status_code, missing.text.replace(fake[_id_in(path)], "ID")) == \
        (404, other.text.replace(records[_id_in(path)], "ID"))
    own = http.request(method, url, headers=_headers(path, A))
    assert own.status_code == 200, (url, own.text)
    admin = http.request(method, url, headers=_headers(path, ADMIN))
    assert admin.status_code == 200 and admin.content == own.content


@pytest.mark.parametrize("method,path,body", WRITES, ids=[f"{m} {p}" for m, p, _ in WRITES])
def test_changes_by_id_are_404_for_another_key_and_change_nothing(http, records, method, path, body):
    url = path.format(**records)
    before = {k: http.get(p.format(**records), headers=_headers(p, A)).text
              for k, p in (("v3", "/v3/glossaries/{v3}"), ("session", "/v1/sessions/{session}"),
                           ("job", "/v1/jobs/{job}"), ("v1", "/v1/glossaries/{v1}"), ("v2", "/v2/glossaries/{v2}"))}
    r = http.request(method, url, headers=_headers(path, B), json=body)
    assert r.status_code == 404, (url, r.status_code, r.text)
    after = {k: http.get(p.format(**records), headers=_headers(p, A)).text
             for k, p in (("v3", "/v3/glossaries/{v3}"), ("session", "/v1/sessions/{session}"),
                          ("job", "/v1/jobs/{job}"), ("v1", "/v1/glossaries/{v1}"), ("v2", "/v2/glossaries/{v2}"))}
    assert after == before


def test_lists_show_only_the_keys_own_records(http, records):
    for path, field, rid in (("/v1/glossaries", "glossaries", "v1"), ("/v2/glossaries", "glossaries", "v2"),
                             ("/v3/glossaries", "glossaries", "v3"), ("/v1/jobs", "jobs", "job")):
        key_field = "job_id" if field == "jobs" else "glossary_id"
        ids_of = {k: {x[key_field] for x in http.get(path, headers=_headers(path, k)).json()[field]}
                  for k in (A, B, ADMIN)}
        assert records[rid] in ids_of[A] and records[rid] in ids_of[ADMIN], path
        assert records[rid] not in ids_of[B], path


def test_another_keys_glossary_cannot_be_used_in_requests(http, records):
    r = http.post("/v1/translate", headers=_auth(B), json={"source_lang": "en", "target_lang": "de",
                                                           "glossary_ids": [records["v1"]], "segments": ["printer"]})
    assert r.status_code == 404, r.text
    r = http.post("/v1/post-edit", headers=_auth(B), json={"source_lang": "en", "target_lang": "de",
                                                           "glossary_ids": [records["v1"]],
                                                           "segments": [{"source": "printer", "translation": "x"}]})
    assert r.status_code == 404, r.text
    r = http.post("/v2/translate", headers=_deepl(B), json={"text": ["paper"], "source_lang": "EN",
                                                            "target_lang": "DE", "glossary_id": records["v2"]})
    assert r.status_code == 400 and "not found" in r.json()["message"]  # DeepL's own answer for an unknown id
    r = http.post("/v1/sessions", headers=_auth(B), json={"source_lang": "en", "target_lang": "de",
                                                          "segment": "printer", "glossary_ids": [records["v1"]]})
    assert r.status_code == 404, r.text
    r = http.post("/v1/files", headers=_auth(B), files={"file": ("b.xlf", b"<xliff/>")},
                  data={"target_lang": "de", "glossary_id": records["v1"]})
    assert r.status_code == 404, r.text
    own = http.post("/v1/translate", headers=_auth(A), json={"source_lang": "en", "target_lang": "de",
                                                             "glossary_ids": [records["v1"]],
                                                             "segments": ["The printer"]})
    assert own.status_code == 200
    assert {"source": "printer", "target": "Drucker"} in own.json()["translations"][0]["terms"]


def test_usage_is_counted_per_key(http):
    before = {k: http.get("/v1/usage", headers=_auth(k)).json()["characters"] for k in (A, B)}
    assert http.post("/v2/translate", headers=_deepl(A), json={"text": ["Hello"], "target_lang": "DE"}).status_code == 200
    after = {k: http.get("/v1/usage", headers=_auth(k)).json()["characters"] for k in (A, B)}
    assert after[A] == before[A] + 5 and after[B] == before[B]


def test_the_owner_and_the_admin_can_delete(http, records, server):
    """Runs last in this module (pytest keeps file order): the records are deleted by their owner or the admin."""
    assert http.delete(f"/v1/sessions/{records['session']}", headers=_auth(ADMIN)).status_code == 204
    assert http.get(f"/v1/sessions/{records['session']}", headers=_auth(A)).status_code == 404
    assert http.delete(f"/v1/jobs/{records['job']}", headers=_auth(A)).status_code == 204
    assert http.get(f"/v1/jobs/{records['job']}", headers=_auth(ADMIN)).status_code == 404
    assert http.delete(f"/v1/glossaries/{records['v1']}", headers=_auth(ADMIN)).status_code == 204
    assert http.delete(f"/v2/glossaries/{records['v2']}", headers=_deepl(A)).status_code == 204
    assert http.delete(f"/v3/glossaries/{records['v3']}", headers=_deepl(A)).status_code == 204
    assert server.service.state.glossaries() == []


def test_tm_language_codes_are_validated(http):
    for src, tgt in (("xx", "de"), ("en", "../x"), ("en", ""), ("en\x00", "de")):
        r = http.post("/v1/tm", headers=_auth(ADMIN), json={"source_lang": src, "target_lang": tgt,
                                                             "source": "a", "target": "b"})
        assert r.status_code in (400, 422), (src, tgt, r.status_code, r.text)
    r = http.post("/v1/tm/lookup", headers=_auth(ADMIN), json={"source_lang": "en", "target_lang": "../x",
                                                                "text": "a"})
    assert r.status_code == 400


def test_shared_tm_mode_every_key_reads_what_another_wrote(http, server):
    pair = {"source_lang": "en", "target_lang": "de"}
    r = http.post("/v1/tm", headers=_auth(A), json={**pair, "source": "The shared cat sleeps.",
                                                    "target": "Die geteilte Katze schläft."})
    assert r.status_code == 201, r.text
    found = http.post("/v1/tm/lookup", headers=_auth(B), json={**pair, "text": "The shared cat sleeps."}).json()
    assert [m["target"] for m in found["matches"]][:1] == ["Die geteilte Katze schläft."]


def test_per_key_tm_mode_keeps_each_keys_segments_apart(engine, tmp_path):
    svc, shared = _serve(engine, tmp_path, tm_mode="per-key")
    pair = {"source_lang": "en", "target_lang": "de"}
    try:
        with BackgroundServer(create_app(svc)) as srv, httpx.Client(base_url=srv.url, timeout=60) as c:
            assert c.post("/v1/tm", headers=_auth(A), json={**pair, "source": "Secret plan A.",
                                                            "target": "Geheimplan A."}).status_code == 201
            look = {k: c.post("/v1/tm/lookup", headers=_auth(k), json={**pair, "text": "Secret plan A."}).json()
                    for k in (A, B, ADMIN)}
            assert [m["target"] for m in look[A]["matches"]] == ["Geheimplan A."]
            assert look[B]["matches"] == [] and look[ADMIN]["matches"] == []
            tr = {k: c.post("/v1/translate", headers=_auth(k), json={**pair, "segments": ["Secret plan A."]}).json()
                  for k in (A, B)}
            assert tr[A]["translations"][0]["origin"] == "tm-exact"
            assert tr[A]["translations"][0]["text"] == "Geheimplan A."
            assert tr[B]["translations"][0]["origin"] != "tm-exact" and "Geheimplan" not in tr[B]["translations"][0]["text"]
            s = c.post("/v1/sessions", headers=_auth(B), json={**pair, "segment": "Plan B is ready."}).json()
            acc = c.post(f"/v1/sessions/{s['id']}/accept", headers=_auth(B), json={"force": True})
            assert acc.status_code == 200, acc.text
            look_b = c.post("/v1/tm/lookup", headers=_auth(B), json={**pair, "text": "Plan B is ready."}).json()
            look_a = c.post("/v1/tm/lookup", headers=_auth(A), json={**pair, "text": "Plan B is ready."}).json()
            assert len(look_b["matches"]) == 1 and look_a["matches"] == []
        from tower_cat.document import Segment

        for text in ("Secret plan A.", "Plan B is ready."):  # nothing of A's or B's reached the shared TM
            assert shared.lookup(Segment.from_text(text), "en", "de", limit=1, min_score=50) == []
        tms = sorted(p.name for p in (tmp_path / "jobs" / "tm").glob("*.sqlite"))
        assert len(tms) == 2 and not any(k in n for n in tms for k in (A, B))  # named by owner id, not by key
    finally:
        svc.close()
        shared.close()


def test_session_owners_survive_a_restart_without_a_state_folder(engine, tmp_path):
    """Sessions persist in their own file; with the server state in memory, the owner travels with the session."""
    sessions = tmp_path / "sessions.sqlite"
    config = dict(max_new_tokens=4, api_keys=[A, B], admin_key=ADMIN, sessions=str(sessions))
    first = Service(engine, ServerConfig(**config))
    with BackgroundServer(create_app(first)) as srv, httpx.Client(base_url=srv.url, timeout=60) as c:
        sid = c.post("/v1/sessions", headers=_auth(A), json={"source_lang": "en", "target_lang": "de",
                                                               "segment": "Hello."}).json()["id"]
    first.close()
    again = Service(engine, ServerConfig(**config))
    try:
        with BackgroundServer(create_app(again)) as srv, httpx.Client(base_url=srv.url, timeout=60) as c:
            assert again.state.location == ":memory:"
            mine = c.get(f"/v1/sessions/{sid}", headers=_auth(A))
            assert mine.status_code == 200 and "_owner" not in mine.json()["meta"]
            assert c.get(f"/v1/sessions/{sid}", headers=_auth(B)).status_code == 404
            assert c.get(f"/v1/sessions/{sid}", headers=_auth(ADMIN)).status_code == 200
    finally:
        again.close()


def test_one_key_cannot_use_up_the_glossary_room_of_another(engine, tmp_path, monkeypatch):
    from tower_cat.adapters.state import GlossaryStore

    monkeypatch.setattr(GlossaryStore, "MAX_GLOSSARIES", 2)
    svc, tm = _serve(engine, tmp_path)
    try:
        with BackgroundServer(create_app(svc)) as srv, httpx.Client(base_url=srv.url, timeout=60) as c:
            body = {"name": "g", "source_lang": "en", "target_lang": "de", "entries": [{"source": "a", "target": "b"}]}
            assert [c.post("/v1/glossaries", headers=_auth(A), json=body).status_code for _ in range(3)] == \
                [201, 201, 456]
            assert c.post("/v1/glossaries", headers=_auth(B), json=body).status_code == 201
    finally:
        svc.close()
        tm.close()


def test_the_admin_key_can_run_a_job_with_another_keys_glossary(http, server):
    g = http.post("/v1/glossaries", headers=_auth(A), json={"name": "a-admin", "source_lang": "en", "target_lang": "de",
                                                           "entries": [{"source": "printer", "target": "Drucker"}]})
    gid = g.json()["glossary_id"]
    job = http.post("/v1/files", headers=_auth(ADMIN), files={"file": ("x.xlf", (SAMPLES / "tower-notes.en-de.xlf")
                                                                         .read_bytes())},
                    data={"target_lang": "de", "source_lang": "en", "glossary_id": gid}).json()
    _wait_job(server, job["job_id"])
    done = server.service.jobs.jobs[job["job_id"]]
    assert done.status == "done", done.error
    assert http.get(f"/v1/jobs/{job['job_id']}", headers=_auth(A)).status_code == 404  # the admin's job


def test_per_key_tm_mode_file_jobs_use_the_keys_own_tm(engine, tmp_path):
    svc, shared = _serve(engine, tmp_path, tm_mode="per-key")
    pair = {"source_lang": "en", "target_lang": "de"}
    xlf = ('<?xml version="1.0" encoding="UTF-8"?>\n<xliff version="1.2" xmlns="urn:oasis:names:tc:xliff:document:1.2">'
           '<file original="d" source-language="en" target-language="de" datatype="plaintext"><body>'
           '<trans-unit id="1"><source>Secret plan A.</source></trans-unit></body></file></xliff>\n').encode()
    try:
        with BackgroundServer(create_app(svc)) as srv, httpx.Client(base_url=srv.url, timeout=60) as c:
            assert c.post("/v1/tm", headers=_auth(A), json={**pair, "source": "Secret plan A.",
                                                            "target": "Geheimplan A."}).status_code == 201
            out = {}
            for key in (A, B):
                job = c.post("/v1/files", headers=_auth(key), files={"file": ("d.xlf", xlf)}, data=pair).json()
                assert svc.jobs.wait_for(lambda: svc.jobs.jobs[job["job_id"]].status in ("done", "failed"), 120)
                out[key] = c.get(f"/v1/jobs/{job['job_id']}/download", headers=_auth(key)).content
            assert b"Geheimplan A." in out[A] and b"Geheimplan" not in out[B]
    finally:
        svc.close()
        shared.close()


def test_one_key_cannot_pile_up_sessions_without_end(http, server, monkeypatch):
    from tower_cat.adapters import sessions_api

    state = server.service.state
    owned = {k: state.count_owned("session", server.service.caller(k).owner) for k in (A, B)}
    limit = max(owned.values()) + 1
    monkeypatch.setattr(sessions_api, "MAX_SESSIONS_PER_KEY", limit)
    start = {"source_lang": "en", "target_lang": "de", "segment": "Hi."}
    made = [http.post("/v1/sessions", headers=_auth(B), json=start) for _ in range(limit - owned[B])]
    assert [r.status_code for r in made] == [201] * len(made)
    refused = http.post("/v1/sessions", headers=_auth(B), json=start)
    assert refused.status_code == 429 and "delete some" in refused.json()["detail"]
    assert http.post("/v1/sessions", headers=_auth(A), json=start).status_code == 201  # A has room of its own
    assert http.delete(f"/v1/sessions/{made[0].json()['id']}", headers=_auth(B)).status_code == 204
    assert http.post("/v1/sessions", headers=_auth(B), json=start).status_code == 201


def test_one_key_cannot_take_the_whole_engine_queue():
    """While one key floods the engine queue, another key's requests are still admitted."""
    import threading

    from tower_cat.adapters.service import Batcher, Overloaded

    gate = threading.Event()

    class SlowEngine:
        def generate(self, prompts, options=None, *, sources=None):
            assert gate.wait(30)
            return [p.upper() for p in prompts]

    b = Batcher(SlowEngine(), window=0.01, max_batch_prompts=2, max_pending=8)  # a key may hold 6 of 8
    try:
        held = [b.submit(["a"] * 3, [None] * 3, "o", owner="A"), b.submit(["a"] * 3, [None] * 3, "o", owner="A")]
        with pytest.raises(Overloaded, match="this key"):
            b.submit(["a"], [None], "o", owner="A")
        other = b.submit(["b", "b"], [None, None], "o", owner="B")
        gate.set()
        assert other.result(30) == ["B", "B"] and [f.result(30) for f in held] == [["A"] * 3, ["A"] * 3]
        assert b.submit(["a"], [None], "o", owner="A").result(30) == ["A"]  # its share is free again
        assert b._by_owner == {} and b.pending == 0
    finally:
        gate.set()
        b.close()
