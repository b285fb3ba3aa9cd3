"""The OpenAI-compatible door, driven by the official `openai` client against `tower-cat serve` on 127.0.0.1.

Checked: models, chat (n, temperature, max_tokens, stop, usage), streaming, errors, and that requests in the
shape of Weblate's OpenAI machinery (its own prompt text and separator) and a plain translate pair are routed
through the translation core (an exact TM hit comes back verbatim; glossary terms and placeables reach it),
while other messages are chat. Coalescing is asserted with the batcher held on an event, not with timing.
"""

from __future__ import annotations

import asyncio
import re
import threading
import time

import httpx
import pytest

from tests.protocol_fixtures import KEY, TM_SOURCE, TM_TARGET, engine, http, keyed, server, service, tiny, tm  # noqa: F401
from tower_cat.adapters import openai_api

openai = pytest.importorskip("openai")

# Weblate's OpenAI machinery prompt (weblate/machinery/openai.py, 2026): the text our recogniser must accept
WEBLATE_PROMPT = """
You are a highly skilled translation assistant, adept at translating text
from language '{source_language}'
to language '{target_language}'
with precision and nuance.
{persona}
{style}
You always reply with translated string only.
You do not include transliteration.
{separator}
{placeables}
{glossary}
"""
SEPARATOR = "\n==WEBLATE_PART==\n"
SEPARATOR_RE = re.compile(r"\n *==WEBLATE_PART== *\n")
SEPARATOR_PROMPT = f"""
You receive an input as strings separated by {SEPARATOR} and
your answer separates strings by {SEPARATOR}.
"""
REPHRASE_PROMPT = f"""
You receive an input as the source and existing translation strings separated
by {SEPARATOR} and you answer three rephrased translation strings separated by
{SEPARATOR}.
"""
PLACEABLES_PROMPT = """
You treat strings like [X0X] or [X123X] as placeables for user input and keep them intact.
"""
GLOSSARY_PROMPT = """
Use the following glossary during the translation:
{}
"""


def weblate_messages(texts, glossary="", rephrase=False, src="en", tgt="de"):
    prompt = WEBLATE_PROMPT.format(source_language=src, target_language=tgt, persona="", style="",
                                   separator=REPHRASE_PROMPT if rephrase else (SEPARATOR_PROMPT if len(texts) > 1
                                                                               else ""),
                                   placeables=PLACEABLES_PROMPT if any("[X" in t for t in texts) else "",
                                   glossary=GLOSSARY_PROMPT.format(glossary) if glossary else "")
    return [{"role": "system", "content": prompt}, {"role": "user", "content": SEPARATOR.join(texts)}]


@pytest.fixture
def client(server):
    return openai.OpenAI(base_url=server.url + "/v1", api_key="any-key-in-open-mode", max_retries=0)


def _model(client) -> str:
    return client.models.list().data[0].id


def test_models(client, server):
    models = client.models.list()
    assert len(models.data) == 1 and models.data[0].owned_by == "tower-cat"
    assert client.models.retrieve(models.data[0].id).id == models.data[0].id
    with pytest.raises(openai.NotFoundError):
        client.models.retrieve("gpt-nonexistent")
    # base URL without /v1 works too (tools that append /chat/completions to the host)
    bare = openai.OpenAI(base_url=server.url, api_key="k", max_retries=0)
    assert bare.models.list().data[0].id == models.data[0].id


def test_chat_n_temperature_max_tokens_stop_usage(client, server):
    model = _model(client)
    messages = [{"role": "system", "content": "You are a helpful assistant."},
                {"role": "user", "content": "Name three colours."}]
    raw = client.chat.completions.with_raw_response.create(model=model, messages=messages, n=2, max_tokens=5)
    assert raw.headers["x-tower-cat-route"] == "chat"
    greedy = raw.parse()
    assert len(greedy.choices) == 2 and greedy.choices[0].message.content == greedy.choices[1].message.content
    assert greedy.choices[0].message.role == "assistant"
    assert {c.finish_reason for c in greedy.choices} <= {"stop", "length"}
    assert greedy.usage.prompt_tokens > 0 and 0 < greedy.usage.completion_tokens <= 2 * 5
    assert greedy.usage.total_tokens == greedy.usage.prompt_tokens + greedy.usage.completion_tokens
    sampled = client.chat.completions.create(model=model, messages=messages, n=3, temperature=1.5, max_tokens=6)
    assert len(sampled.choices) == 3 and all(isinstance(c.message.content, str) for c in sampled.choices)
    assert 0 < sampled.usage.completion_tokens <= 3 * 6
    # a stop string cuts the reply where it first occurs
    full = greedy.choices[0].message.content
    if len(full) > 2:
        stop = full[1:3]
        cut = client.chat.completions.create(model=model, messages=messages, max_tokens=5, stop=[stop])
        assert cut.choices[0].message.content == full[:full.index(stop)]
        assert cut.choices[0].finish_reason == "stop"


def test_streaming_matches_non_streaming(client):
    model = _model(client)
    messages = [{"role": "user", "content": "Tell me about the sea."}]
    whole = client.chat.completions.create(model=model, messages=messages, max_tokens=8)
    stream = client.chat.completions.create(model=model, messages=messages, max_tokens=8, stream=True,
                                            stream_options={"include_usage": True})
    parts, reasons, usage = [], [], None
    for chunk in stream:
        if chunk.usage is not None:
            usage = chunk.usage
        for c in chunk.choices:
            if c.delta.content:
                parts.append(c.delta.content)
            if c.finish_reason:
                reasons.append(c.finish_reason)
    assert "".join(parts) == whole.choices[0].message.content
    assert reasons == [whole.choices[0].finish_reason]
    assert usage is not None and usage.total_tokens == whole.usage.total_tokens


def test_weblate_openai_machinery_goes_through_the_translation_core(client, server, monkeypatch):
    calls = []
    real = server.service.translate

    async def spy(items, source_lang, target_lang, **kw):
        calls.append((items, source_lang, target_lang, kw))
        return await real(items, source_lang, target_lang, **kw)

    monkeypatch.setattr(server.service, "translate", spy)
    texts = [TM_SOURCE, "Hello [X5X], you have [X14X] new notes on the printer"]
    raw = client.chat.completions.with_raw_response.create(
        model=_model(client), messages=weblate_messages(texts, glossary="printer\tDrucker\nnote\tNotiz"),
        temperature=0, frequency_penalty=0, presence_penalty=0)
    assert raw.headers["x-tower-cat-route"] == "translation"
    reply = raw.parse().choices[0].message.content
    parts = SEPARATOR_RE.split(reply)  # exactly how Weblate parses the answer
    assert len(parts) == 2
    assert parts[0] == TM_TARGET  # exact TM match, verbatim: only the translation core does that
    assert parts[1].count("[X5X]") == 1 and parts[1].count("[X14X]") == 1  # placeables are protected codes
    (items, src, tgt, kw), = calls
    assert (src, tgt) == ("en", "de") and [it.segment.text for it in items][0] == TM_SOURCE
    assert ("printer", "Drucker") in kw["terms"] and ("note", "Notiz") in kw["terms"]
    # a single string: no separator prompt, the whole user message is the text
    one = client.chat.completions.create(model="whatever", messages=weblate_messages([TM_SOURCE]))
    assert one.choices[0].message.content == TM_TARGET
    # rephrase: source + existing translation in, up to three candidates out
    again = client.chat.completions.create(model="m", messages=weblate_messages(["Open the file", "Datei öffnen"],
                                                                                 rephrase=True))
    candidates = SEPARATOR_RE.split(again.choices[0].message.content)
    assert 1 <= len(candidates) <= 3 and calls[-1][0][0].segment.text == "Open the file"


def test_plain_translate_pair_and_chat_are_told_apart(client, server):
    model = _model(client)
    pair = [{"role": "system", "content": "Translate the following text from English to German."},
            {"role": "user", "content": TM_SOURCE}]
    raw = client.chat.completions.with_raw_response.create(model=model, messages=pair)
    assert raw.headers["x-tower-cat-route"] == "translation" and raw.parse().choices[0].message.content == TM_TARGET
    codes = [{"role": "system", "content": "You are a translator. Translate from en into de"},
             {"role": "user", "content": TM_SOURCE}]
    assert client.chat.completions.create(model=model, messages=codes).choices[0].message.content == TM_TARGET
    tags = [{"role": "system", "content": "Translate from English to German:"},
            {"role": "user", "content": "Press <b>Save</b> to keep <x id=\"1\"/> changes"}]
    out = client.chat.completions.create(model=model, messages=tags).choices[0].message.content
    assert out.count("<b>") == 1 and out.count("</b>") == 1 and out.count('<x id="1"/>') == 1
    chat = [{"role": "system", "content": "You are a helpful assistant."}, {"role": "user", "content": TM_SOURCE}]
    assert client.chat.completions.with_raw_response.create(
        model=model, messages=chat).headers["x-tower-cat-route"] == "chat"


@pytest.mark.parametrize("messages,expected", [
    ([{"role": "system", "content": "Translate from English to German."}, {"role": "user", "content": "x"}],
     ("en", "de", "plain")),
    ([{"role": "system", "content": "Please translate the text from French into Portuguese (Brazil)."},
      {"role": "user", "content": "x"}], ("fr", "pt-BR", "plain")),
    ([{"role": "system", "content": "Translate from English to Klingon."}, {"role": "user", "content": "x"}], None),
    ([{"role": "system", "content": "Translate from English to German. " + "Keep a formal tone. " * 20},
      {"role": "user", "content": "x"}], None),  # long instructions the translation path would drop: chat
    ([{"role": "user", "content": "Translate from English to German: x"}], None),
    ([{"role": "system", "content": "Translate from English to German."}, {"role": "user", "content": "a"},
      {"role": "assistant", "content": "b"}, {"role": "user", "content": "c"}], None),
    (weblate_messages(["a", "b"], src="pt_BR", tgt="en"), ("pt-BR", "en", "weblate")),
])
def test_recognition_rule(service, messages, expected):
    req = openai_api.recognise(service, messages)
    assert (None if req is None else (req.source_lang, req.target_lang, req.kind)) == expected


def test_errors_in_openai_shape(client, keyed):
    model = _model(client)
    with pytest.raises(openai.BadRequestError) as exc:
        client.chat.completions.create(model=model, messages=[{"role": "user", "content": "x"}], temperature=3)
    assert "temperature" in exc.value.message
    with pytest.raises(openai.BadRequestError):
        client.chat.completions.create(model=model, messages=[])
    with pytest.raises(openai.BadRequestError):
        client.chat.completions.create(model=model, messages=[{"role": "user", "content": "x"}],
                                       tools=[{"type": "function", "function": {"name": "f"}}])
    with pytest.raises(openai.AuthenticationError):
        openai.OpenAI(base_url=keyed.url + "/v1", api_key="wrong", max_retries=0).models.list()
    ok = openai.OpenAI(base_url=keyed.url + "/v1", api_key=KEY, max_retries=0)
    assert ok.chat.completions.create(model="m", messages=[{"role": "user", "content": "hi"}]).choices
    with pytest.raises(openai.RateLimitError) as exc:  # the key's character quota (200) is used up
        ok.chat.completions.create(model="m", messages=[{"role": "user", "content": "y" * 250}])
    assert exc.value.body["type"] == "insufficient_quota"


def test_concurrent_chat_requests_share_engine_calls(server, service):
    """50 clients while the engine thread is held: every request is queued, then one Engine.generate serves all."""
    n = 50
    gate = threading.Event()
    hold = service.batcher.call(gate.wait)  # the worker runs this until the gate opens
    before = (service.batcher.stats.generate_calls, service.batcher.stats.jobs)

    async def one(client, i):
        r = await client.post("/v1/chat/completions", json={
            "model": "m", "max_tokens": 4, "messages": [{"role": "user", "content": f"Question number {i}?"}]})
        return r.status_code, r.json()

    async def run():
        limits = httpx.Limits(max_connections=n, max_keepalive_connections=n)
        async with httpx.AsyncClient(base_url=server.url, timeout=120, limits=limits) as client:
            tasks = [asyncio.create_task(one(client, i)) for i in range(n)]
            deadline = time.monotonic() + 60
            while service.batcher.pending < n + 1:  # all 50 queued behind the held call
                assert time.monotonic() < deadline, f"only {service.batcher.pending - 1} of {n} queued"
                await asyncio.sleep(0.01)
            gate.set()
            return await asyncio.gather(*tasks)

    try:
        results = asyncio.run(run())
    finally:
        gate.set()
        hold.result(timeout=30)
    assert all(status == 200 and body["choices"][0]["message"]["role"] == "assistant" for status, body in results)
    assert service.batcher.stats.jobs - before[1] == n
    assert service.batcher.stats.generate_calls - before[0] == 1
    assert service.batcher.stats.max_coalesced_jobs >= n


def test_client_disconnect_is_logged_at_info(server, caplog):
    """A client that hangs up mid-body is not an internal error: one INFO line, no ERROR."""
    import logging
    import socket

    caplog.set_level(logging.INFO, logger="tower_cat.server")
    host, port = server.url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=10) as sock:
        sock.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                     b"Content-Length: 500\r\n\r\n{\"model\": \"m\", \"mess")
    deadline = time.monotonic() + 10
    while not any("disconnected" in r.getMessage() for r in caplog.records):
        assert time.monotonic() < deadline, "no disconnect log line"
        time.sleep(0.05)
    gone = [r for r in caplog.records if "disconnected" in r.getMessage()]
    assert gone[0].levelno == logging.INFO
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR and r.name.startswith("tower_cat")]
