"""OpenAI-compatible API: ``GET /v1/models``, ``POST /v1/chat/completions`` (also without the ``/v1`` prefix).

CAT tools and TMS platforms (Weblate, Phrase BYO Lite, Smartling, Crowdin, Trados/memoQ AI connectors, …) plug
LLMs in through this API: base URL ``http://host:8000/v1``, any model name, the key as ``Authorization: Bearer``.

Two paths behind one endpoint (see :func:`recognise`):

* **Translation requests** in a shape a known connector sends are routed through the translation core
  (``Service.translate``: TM few-shot examples, glossaries, inline-tag protection, language detection), exactly
  as the DeepL or LibreTranslate doors are:

  - Weblate's OpenAI machinery: a system prompt that says ``from language 'X'`` / ``to language 'Y'`` and one
    user message holding the strings joined by ``\\n==WEBLATE_PART==\\n``; the glossary block of the prompt
    (``source<TAB>target`` lines) becomes prompt terms, Weblate's placeables (``[X12X]``) are inline codes that
    come back verbatim, and a "rephrase" request gets the translation plus up to two alternatives.
  - A plain pair: one system message that is a short translate instruction naming both languages
    (``Translate from English to German.``, ``You are a translator. Translate the text from en into de``) and
    one user message holding the text.

* **Anything else** is chat: the messages go through the model's own chat template (``Service.chat``) with
  ``n``, ``temperature``, ``top_p``, ``max_tokens`` and ``stop``.

Both go through the engine's micro-batching, so concurrent requests share ``Engine.generate`` calls.
``stream=true`` answers as server-sent events once the (batched) generation is done: the engine decodes whole
batches, so the chunks arrive together rather than token by token. ``temperature`` defaults to 0 (greedy).
Errors are OpenAI's ``{"error": {"message", "type", "param", "code"}}``.
"""

from __future__ import annotations

import asyncio
import json
import re
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, StreamingResponse

from tower_cat.document import CodeKind, InlineCode, Segment
from tower_cat.languages import NAMES

from .http import OPENAI, ProtocolError, bearer_key, service_of
from .service import SegmentIn, Service, ServiceError, Unauthorized
from .tags import Markup, parse_markup, to_markup

WEBLATE_SEPARATOR = "\n==WEBLATE_PART==\n"
_WEBLATE_SPLIT = re.compile(r"\n *==WEBLATE_PART== *\n")
_WEBLATE_PAIR = re.compile(r"from language '(?P<src>[^'\n]+)'\s*to language '(?P<tgt>[^'\n]+)'")
_WEBLATE_GLOSSARY = "Use the following glossary during the translation:"
_WEBLATE_REPHRASE = "rephrased translation strings"
_WEBLATE_PLACEABLE = re.compile(r"\[X\d+ *X\]")
_PLAIN_PAIR = re.compile(r"\btranslat\w*\b[^\n]*?\bfrom\s+(?P<src>[\w\-() ]+?)\s+(?:in)?to\s+(?P<tgt>[\w\-() ]+?)"
                         r"\s*(?:[.:;,!\n]|$)", re.I)
_PLAIN_MAX = 300  # a longer system prompt carries instructions the translation path would drop: chat instead
_TAG = re.compile(r"</?[A-Za-z][\w:.-]*(?:\s[^<>]*)?/?>")
MAX_N = 8


# ----------------------------------------------------------------------------------------------------------
# recognising translation requests


@dataclass
class TranslationRequest:
    source_lang: str
    target_lang: str
    texts: list[str]
    kind: str                                   # "weblate" | "weblate-rephrase" | "plain"
    terms: list[tuple[str, str]] = field(default_factory=list)


def _language(service: Service, words: str) -> str | None:
    """A language named by code (``de``, ``pt_BR``) or English name (``German``, ``Portuguese (Brazil)``)."""
    words = words.strip().strip("'\"")
    if not words:
        return None
    try:
        return service.resolve(words, "target")
    except ServiceError:
        pass
    wanted = words.lower()
    for code in service.catalog.all_codes():
        if wanted in (service.catalog.name(code).lower(), NAMES.get(code, "").lower()):
            return code
    return None


def _text_of(content: Any) -> str | None:
    """A message's text: a string, or the text parts of a content list (other part types: not ours)."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        texts = []
        for part in content:
            if not isinstance(part, dict) or part.get("type") != "text" or not isinstance(part.get("text"), str):
                return None
            texts.append(part["text"])
        return "".join(texts)
    return None


def _weblate_terms(prompt: str) -> list[tuple[str, str]]:
    if _WEBLATE_GLOSSARY not in prompt:
        return []
    terms = []
    for line in prompt.split(_WEBLATE_GLOSSARY, 1)[1].splitlines():
        cells = line.split("\t")
        if len(cells) >= 2 and cells[0].strip() and cells[1].strip():
            terms.append((cells[0].strip(), cells[1].strip()))
    return terms


def recognise(service: Service, messages: list[dict]) -> TranslationRequest | None:
    """A translation request in a known connector's shape, or None (then it is chat).

    The rule (documented in the README): exactly one system message followed by exactly one user message, and

    * the system message holds Weblate's ``from language 'X'`` / ``to language 'Y'``: the user message is split
      on ``==WEBLATE_PART==`` lines into strings; or
    * the system message is at most 300 characters and says ``translat… from X to|into Y``: the user message is
      one text.

    X and Y must be languages the served model translates (codes or English names); otherwise it is chat.
    """
    if len(messages) != 2 or messages[0].get("role") != "system" or messages[1].get("role") != "user":
        return None
    system, user = _text_of(messages[0].get("content")), _text_of(messages[1].get("content"))
    if system is None or user is None:
        return None
    m = _WEBLATE_PAIR.search(system)
    if m:
        src, tgt = _language(service, m.group("src")), _language(service, m.group("tgt"))
        if src and tgt:
            texts = _WEBLATE_SPLIT.split(user)
            if _WEBLATE_REPHRASE in system:  # [source, existing translation]: new candidates for the source
                return TranslationRequest(src, tgt, texts[:1], "weblate-rephrase", _weblate_terms(system))
            return TranslationRequest(src, tgt, texts, "weblate", _weblate_terms(system))
    if len(system.strip()) <= _PLAIN_MAX:
        m = _PLAIN_PAIR.search(system)
        if m:
            src, tgt = _language(service, m.group("src")), _language(service, m.group("tgt"))
            if src and tgt:
                return TranslationRequest(src, tgt, [user], "plain")
    return None


def segment_in(text: str, weblate: bool) -> SegmentIn:
    """The text as a segment: XML/HTML tags are inline codes when the string round-trips through the XML reader
    unchanged (else it is plain text), and Weblate's placeables ``[X12X]`` are standalone codes."""
    markup = parse_markup(text, "xml") if _TAG.search(text) else None
    if markup is None or to_markup(markup.segment, "xml") != text:
        markup = parse_markup(text, "text")
    if weblate and _WEBLATE_PLACEABLE.search(text):
        parts: list = []
        for part in markup.segment.parts:
            if not isinstance(part, str):
                parts.append(part)
                continue
            pos = 0
            for p in _WEBLATE_PLACEABLE.finditer(part):
                parts.append(part[pos:p.start()])
                parts.append(InlineCode(id=f"weblate-{p.group(0)}", kind=CodeKind.STANDALONE, xml=p.group(0),
                                        tag="x", display=p.group(0)))
                pos = p.end()
            parts.append(part[pos:])
        markup = Markup(Segment(parts), markup.mode)
    return SegmentIn(markup)


# ----------------------------------------------------------------------------------------------------------
# the router


def _model_id(service: Service) -> str:
    path = getattr(service.engine, "path", None)
    return Path(str(path)).name if path else "tower-cat"


def _int(body: dict, name: str, default: int | None, lo: int, hi: int) -> int | None:
    v = body.get(name)
    if v is None:
        return default
    if isinstance(v, bool) or not isinstance(v, int) or not lo <= v <= hi:
        raise ProtocolError(f"'{name}' must be an integer from {lo} to {hi}", code="invalid_value")
    return v


def _float(body: dict, name: str, default: float, lo: float, hi: float) -> float:
    v = body.get(name)
    if v is None:
        return default
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not lo <= v <= hi:
        raise ProtocolError(f"'{name}' must be a number from {lo} to {hi}", code="invalid_value")
    return float(v)


async def _count_tokens(service: Service, texts: list[str]) -> int:
    return sum(await asyncio.to_thread(lambda: [service.engine.count_tokens(t) for t in texts if t]))


async def _translate(service: Service, req: TranslationRequest, n: int, key: str | None) -> list[tuple[str, str]]:
    """(content, finish reason) per choice, through the translation core."""
    weblate = req.kind.startswith("weblate")
    items = [segment_in(t, weblate) for t in req.texts]
    alternatives = 2 if req.kind == "weblate-rephrase" else n - 1
    outs = await service.translate(items, req.source_lang, req.target_lang, key=key, terms=req.terms,
                                   alternatives=alternatives)
    reason = "length" if any(o.truncated for o in outs) else "stop"
    if req.kind == "weblate-rephrase":
        candidates = [outs[0].text] + [a for a in outs[0].alternatives if a != outs[0].text]
        return [(WEBLATE_SEPARATOR.join(candidates), reason)] * n
    choices = []
    for k in range(n):
        texts = [o.text if k == 0 or k > len(o.alternatives) else o.alternatives[k - 1] for o in outs]
        choices.append((WEBLATE_SEPARATOR.join(texts) if weblate else texts[0], reason))
    return choices


def _pieces(text: str) -> list[str]:
    return re.findall(r"\s*\S+|\s+", text) or [""]


def router() -> APIRouter:
    r = APIRouter(tags=["OpenAI-compatible"])

    def _begin(request: Request) -> tuple[Service, str | None]:
        request.state.protocol = OPENAI
        service = service_of(request)
        try:
            return service, service.check_key(bearer_key(request))
        except Unauthorized:
            raise ProtocolError("Incorrect API key provided.", status=401, code="invalid_api_key") from None

    def _model(service: Service) -> dict:
        return {"id": _model_id(service), "object": "model", "created": int(service.started),
                "owned_by": "tower-cat"}

    for prefix in ("/v1", ""):
        @r.get(prefix + "/models", name=f"openai_models{prefix.replace('/', '_')}")
        async def models(request: Request):
            service, _ = _begin(request)
            return {"object": "list", "data": [_model(service)]}

        @r.get(prefix + "/models/{model_id}", name=f"openai_model{prefix.replace('/', '_')}")
        async def model(model_id: str, request: Request):
            service, _ = _begin(request)
            if model_id != _model_id(service):
                raise ProtocolError(f"The model '{model_id}' does not exist", status=404, code="model_not_found")
            return _model(service)

        @r.post(prefix + "/chat/completions", name=f"openai_chat{prefix.replace('/', '_')}")
        async def chat_completions(request: Request):
            service, key = _begin(request)
            try:
                body = json.loads(await request.body() or b"null")
            except ValueError:
                raise ProtocolError("We could not parse the JSON body of your request.") from None
            if not isinstance(body, dict):
                raise ProtocolError("The request body must be a JSON object.")
            return await _chat(request, service, key, body)

    return r


async def _chat(request: Request, service: Service, key: str | None, body: dict):
    raw = body.get("messages")
    if not isinstance(raw, list) or not raw:
        raise ProtocolError("'messages' must be a non-empty array", code="invalid_value")
    messages = []
    for i, m in enumerate(raw):
        text = _text_of(m.get("content")) if isinstance(m, dict) else None
        role = m.get("role") if isinstance(m, dict) else None
        if role == "developer":
            role = "system"
        if role not in ("system", "user", "assistant") or text is None:
            raise ProtocolError(f"messages[{i}]: only system, developer, user and assistant messages with text "
                                "content are supported", code="invalid_value")
        messages.append({"role": role, "content": text})
    for unsupported in ("tools", "functions", "logit_bias"):
        if body.get(unsupported):
            raise ProtocolError(f"'{unsupported}' is not supported by this server", code="unsupported_parameter")
    fmt = body.get("response_format")
    if isinstance(fmt, dict) and fmt.get("type") not in (None, "text"):
        raise ProtocolError("only response_format type 'text' is supported", code="unsupported_parameter")
    n = _int(body, "n", 1, 1, MAX_N)
    temperature = _float(body, "temperature", 0.0, 0.0, 2.0)
    top_p = _float(body, "top_p", 1.0, 0.0, 1.0)
    max_tokens = _int(body, "max_completion_tokens", None, 1, 1 << 20)
    max_tokens = _int(body, "max_tokens", max_tokens, 1, 1 << 20)
    stop = body.get("stop")
    stop = [stop] if isinstance(stop, str) else (stop or [])
    if not isinstance(stop, list) or len(stop) > 4 or not all(isinstance(s, str) for s in stop):
        raise ProtocolError("'stop' must be a string or an array of up to 4 strings", code="invalid_value")
    stream = bool(body.get("stream"))
    include_usage = bool((body.get("stream_options") or {}).get("include_usage")) if stream else False

    req = recognise(service, messages)
    if req is not None:
        choices = await _translate(service, req, n, key)
        prompt_tokens = await _count_tokens(service, [m["content"] for m in messages])
        completion_tokens = await _count_tokens(service, [c for c, _ in choices])
        route = "translation"
    else:
        result = await service.chat(messages, n=n, temperature=temperature, top_p=top_p, max_tokens=max_tokens,
                                    stop=stop, key=key)
        choices, prompt_tokens, completion_tokens = result.choices, result.prompt_tokens, result.completion_tokens
        route = "chat"
    usage = {"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens,
             "total_tokens": prompt_tokens + completion_tokens}
    cid = "chatcmpl-" + uuid.uuid4().hex
    created = int(time.time())
    model = _model_id(service)
    headers = {"X-Tower-Cat-Route": route}
    if not stream:
        return JSONResponse({"id": cid, "object": "chat.completion", "created": created, "model": model,
                             "choices": [{"index": i, "message": {"role": "assistant", "content": text},
                                          "logprobs": None, "finish_reason": reason}
                                         for i, (text, reason) in enumerate(choices)],
                             "usage": usage, "system_fingerprint": None}, headers=headers)

    def chunk(choices_: list[dict], usage_: dict | None = None) -> str:
        payload = {"id": cid, "object": "chat.completion.chunk", "created": created, "model": model,
                   "system_fingerprint": None, "choices": choices_}
        if include_usage:
            payload["usage"] = usage_
        return "data: " + json.dumps(payload, ensure_ascii=False) + "\n\n"

    async def events():
        for i, (text, reason) in enumerate(choices):
            yield chunk([{"index": i, "delta": {"role": "assistant", "content": ""}, "logprobs": None,
                          "finish_reason": None}])
            for piece in _pieces(text):
                yield chunk([{"index": i, "delta": {"content": piece}, "logprobs": None, "finish_reason": None}])
            yield chunk([{"index": i, "delta": {}, "logprobs": None, "finish_reason": reason}])
        if include_usage:
            yield chunk([], usage)
        yield "data: [DONE]\n\n"

    return StreamingResponse(events(), media_type="text/event-stream",
                             headers={**headers, "Cache-Control": "no-cache"})
