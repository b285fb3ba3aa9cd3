"""Requests that must not hurt the server (adapters/guards.py): deeply nested JSON is a 400 in every protocol's
error shape (not a RecursionError 500 or a reset), form or text bodies to the JSON ``/v1`` API are 415, and a
500 does not poison the keep-alive connection: the next request on the same connection is answered.
"""

from __future__ import annotations

import httpx
import pytest

from tower_cat.adapters.guards import MAX_JSON_DEPTH, json_depth
from tests.serving import serving
from tower_cat.adapters.service import ServerConfig, Service


@pytest.fixture(scope="module")
def server(engine):
    with serving(Service(engine, ServerConfig(max_new_tokens=4))) as srv:
        yield srv


@pytest.fixture
def one_connection(server):
    with httpx.Client(base_url=server.url, timeout=60, limits=httpx.Limits(max_connections=1)) as client:
        yield client


def _port(response: httpx.Response) -> int:
    """The client-side port of the connection that carried a response (same port: same connection)."""
    return response.extensions["network_stream"].get_extra_info("client_addr")[1]


def test_json_depth_counts_nesting_not_brackets_in_strings():
    assert json_depth(b'{"a": [1, {"b": "[[[[{{{{"}]}') == 3
    assert json_depth(b'"\\"[" ') == 0
    assert json_depth(b"[" * 1000 + b"]" * 1000, limit=40) == 41  # stops counting past the limit


DEEP = b'{"a":' * 5000 + b"1" + b"}" * 5000   # 30 KB: under every body limit
SHAPES = {"/v1/translate": "detail", "/v1/glossaries": "detail", "/v1/sessions": "detail", "/v1/tm": "detail",
          "/v2/translate": "message", "/v2/glossaries": "message", "/v3/glossaries": "message",
          "/translate": "error", "/v1/chat/completions": "error"}   # OpenAI: {"error": {"message": ...}}


@pytest.mark.parametrize("path", sorted(SHAPES))
def test_deeply_nested_json_is_a_400_in_the_protocols_shape(one_connection, path):
    r = one_connection.post(path, content=DEEP, headers={"Content-Type": "application/json"})
    assert r.status_code == 400, r.text
    body = r.json()[SHAPES[path]]
    assert f"deeper than {MAX_JSON_DEPTH}" in (body["message"] if isinstance(body, dict) else body), r.text
    again = one_connection.get("/v1/health")  # the connection is still good
    assert again.status_code == 200 and _port(again) == _port(r)


def test_nested_json_within_the_limit_is_accepted(one_connection):
    parts = ["Click ", {"id": "1", "kind": "open", "xml": "<b>"}, "Save", {"id": "1", "kind": "close", "xml": "</b>"}]
    r = one_connection.post("/v1/translate", json={"target_lang": "de", "source_lang": "en",
                                                   "segments": [{"parts": parts}]})
    assert r.status_code == 200, r.text


@pytest.mark.parametrize("ctype,body", [
    ("application/x-www-form-urlencoded", b"target_lang=de&segments=Hello"),
    ("text/plain", b"Hello"),
    ("multipart/form-data; boundary=x", b"--x--\r\n"),
    (None, b"target_lang=de"),
])
def test_non_json_bodies_to_v1_are_415(one_connection, ctype, body):
    headers = {"Content-Type": ctype} if ctype else {}
    for path in ("/v1/translate", "/v1/glossaries", "/v1/sessions", "/v1/tm/lookup"):
        r = one_connection.post(path, content=body, headers=headers)
        assert r.status_code == 415 and "application/json" in r.json()["detail"], (path, r.status_code, r.text)
    assert one_connection.get("/v1/health").status_code == 200


def test_files_endpoint_wants_multipart(one_connection):
    r = one_connection.post("/v1/files", json={"target_lang": "de"})
    assert r.status_code == 415 and "multipart" in r.json()["detail"]


def test_a_500_keeps_the_connection_open(server, one_connection, monkeypatch):
    def broken(text):
        raise RuntimeError("a bug")

    monkeypatch.setattr(server.service.detector, "rank", broken)
    r = one_connection.post("/v1/detect", json={"text": "Hallo Welt"})
    assert r.status_code == 500 and r.json() == {"detail": "internal error: RuntimeError"}
    nxt = one_connection.get("/v1/health")
    assert nxt.status_code == 200 and _port(nxt) == _port(r)
    deepl = one_connection.post("/v2/translate", json={"text": ["Hallo"], "target_lang": "DE",
                                                       "source_lang": "DE"})
    assert deepl.status_code == 200 and _port(deepl) == _port(r)


@pytest.fixture(scope="module")
def budgeted(server):
    """A second app on the same engine with a small per-request token budget."""
    svc = Service(server.service.engine, ServerConfig(max_new_tokens=4, max_request_tokens=40, api_keys=["k"]))
    with serving(svc) as srv:
        yield srv


def test_the_per_request_token_budget_refuses_before_any_engine_work(budgeted):
    long = "The printer on the third floor is out of paper and toner again. " * 3   # > 40 tokens, < max_chars
    jobs = budgeted.service.batcher.stats.jobs
    with httpx.Client(base_url=budgeted.url, timeout=60) as c:
        r = c.post("/v1/translate", headers={"Authorization": "Bearer k"},
                   json={"source_lang": "en", "target_lang": "de", "segments": [long]})
        assert r.status_code == 413 and "tokens (limit 40 per request)" in r.json()["detail"], r.text
        r = c.post("/v2/translate", headers={"Authorization": "DeepL-Auth-Key k"},
                   json={"text": [long[:90], long[:90]], "target_lang": "DE", "source_lang": "EN"})
        assert r.status_code == 413 and "tokens" in r.json()["message"], r.text
        r = c.post("/translate", json={"q": long, "source": "en", "target": "de", "api_key": "k"})
        assert r.status_code == 400 and "tokens" in r.json()["error"], r.text  # LibreTranslate's limit answer
        r = c.post("/v1/post-edit", headers={"Authorization": "Bearer k"},
                   json={"source_lang": "en", "target_lang": "de",
                         "segments": [{"source": long[:100], "translation": long[:100]}]})
        assert r.status_code == 413, r.text
        assert budgeted.service.batcher.stats.jobs == jobs  # nothing reached the engine
        ok = c.post("/v1/translate", headers={"Authorization": "Bearer k"},
                    json={"source_lang": "en", "target_lang": "de", "segments": ["Short."]})
        assert ok.status_code == 200
