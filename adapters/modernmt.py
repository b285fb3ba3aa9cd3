"""ModernMT compatibility: ``/translate``, ``/translate/languages``, ``/translate/detect``.

Two ways of calling, both answered:

* the official clients (``modernmt`` for Python, and the Java/JS ones CAT plugins use) send **every** call as
  ``POST`` with ``X-HTTP-Method-Override: get`` and a JSON body ``{"source", "target", "q", "hints",
  "context_vector", …}``;
* Weblate sends a real ``GET /translate?q=…&source=…&target=…[&context_vector=…]``.

The key is the ``MMT-ApiKey`` header. ``q`` is a string or a list (then ``data`` is a list in the same order).
Answers are ModernMT's envelope ``{"status": 200, "data": {"translation", "characters", "billedCharacters",
"detectedLanguage"?, "altTranslations"?}}``; errors ``{"status": 4xx, "error": {"type", "message"}}``.

``hints`` (memory ids) and ``context_vector`` (``id:weight,…``) are validated and accepted; this server's
memory is its ``--tm`` translation memory, used for every request, so they select nothing. ``alt_translations``
(up to 3) gives beam-search alternatives; ``format`` ``text/xml`` and ``text/html`` keep tags
(``application/xliff+xml`` is read as XML); ``priority``, ``multiline``, ``timeout``, ``session``,
``glossaries``, ``ignore_glossary_case`` and ``mask_profanities`` are accepted and have no effect.

``/translate`` is LibreTranslate's path too: ``http.protocol_of`` hands a request here only when it carries an
``MMT-*`` header or ``X-HTTP-Method-Override``.
"""

from __future__ import annotations

import re

from fastapi import APIRouter, Request

from .http import MODERNMT, Params, ProtocolError, read_params, service_of
from .service import SegmentIn, Service, ServiceError, Unauthorized

MAX_ALTERNATIVES = 3
_CONTEXT_VECTOR = re.compile(r"^\s*\d+:(0|1|0?\.\d+|1\.0+)(\s*,\s*\d+:(0|1|0?\.\d+|1\.0+))*\s*$")
_HINTS = re.compile(r"^\s*[\w-]+(\s*,\s*[\w-]+)*\s*$")
_FORMATS = {"text/plain": "text", "text/xml": "xml", "text/html": "html", "application/xliff+xml": "xml"}


def _ok(data) -> dict:
    return {"status": 200, "data": data}


async def _begin(request: Request, allowed: tuple[str, ...] = ("get",)) -> tuple[Service, str | None, Params]:
    request.state.protocol = MODERNMT
    service = service_of(request)
    method = (request.headers.get("x-http-method-override") or request.method).lower()
    if method not in allowed:
        raise ProtocolError(f"method {method.upper()} is not allowed here", status=405,
                            code="MethodNotAllowedException")
    try:
        key = service.check_key(request.headers.get("mmt-apikey") or None)
    except Unauthorized:
        raise ProtocolError("Invalid or missing MMT-ApiKey", status=401, code="AuthenticationException") from None
    return service, key, await read_params(request)


def _param_error(message: str) -> ProtocolError:
    return ProtocolError(message, code="ParameterParsingException")


async def translate(request: Request):
    service, key, params = await _begin(request)
    q = params.raw("q")
    if q is None:
        raise _param_error("Missing required parameter 'q'")
    batch = isinstance(q, list)
    texts = q if batch else [q]
    if not texts or not all(isinstance(t, str) for t in texts):
        raise _param_error("Parameter 'q' must be a string or a list of strings")
    target = params.get("target")
    if not target:
        raise _param_error("Missing required parameter 'target'")
    source = params.get("source") or None
    try:
        tgt = service.resolve(str(target), "target")
    except ServiceError:
        raise ProtocolError(f"Language pair not supported: {source or 'auto'} > {target}",
                            code="UnsupportedLanguageException") from None
    if source:
        try:
            service.resolve(str(source), "source")
        except ServiceError:
            raise ProtocolError(f"Language pair not supported: {source} > {target}",
                                code="UnsupportedLanguageException") from None
    vector = params.get("context_vector")
    if vector and not _CONTEXT_VECTOR.match(str(vector)):
        raise _param_error("Invalid value for parameter 'context_vector': expected id:weight,id:weight")
    hints = params.get("hints")
    if hints is not None and not isinstance(hints, list) and str(hints) and not _HINTS.match(str(hints)):
        raise _param_error("Invalid value for parameter 'hints': expected comma-separated memory ids")
    fmt = str(params.get("format") or "text/plain").lower()
    if fmt not in _FORMATS:
        raise _param_error(f"Invalid value for parameter 'format': {fmt}")
    try:
        n_alt = int(params.get("alt_translations") or 0)
    except (TypeError, ValueError):
        raise _param_error("Invalid value for parameter 'alt_translations'") from None
    n_alt = max(0, min(n_alt, MAX_ALTERNATIVES)) if fmt == "text/plain" else 0
    items = [SegmentIn.parse(t, _FORMATS[fmt]) for t in texts]
    outs = await service.translate(items, source, tgt, key=key, alternatives=n_alt)
    data = []
    for item, out in zip(items, outs):
        chars = len(item.segment.text)
        d: dict = {"translation": out.text, "characters": chars, "billedCharacters": chars}
        if not source:
            d["detectedLanguage"] = out.source_lang
        if n_alt:
            d["altTranslations"] = out.alternatives
        data.append(d)
    return _ok(data if batch else data[0])


async def detect(request: Request):
    service, key, params = await _begin(request)
    q = params.raw("q")
    if q is None:
        raise _param_error("Missing required parameter 'q'")
    texts = q if isinstance(q, list) else [q]
    if not all(isinstance(t, str) for t in texts):
        raise _param_error("Parameter 'q' must be a string or a list of strings")
    data = [{"billedCharacters": len(t), "detectedLanguage": service.detect(t).language} for t in texts]
    return _ok(data if isinstance(q, list) else data[0])


def router() -> APIRouter:
    """``/translate/languages`` and ``/translate/detect``; ``/translate`` itself is dispatched by ``app.py``."""
    r = APIRouter(tags=["ModernMT-compatible"])

    async def languages(request: Request):
        service, _, _ = await _begin(request)
        return _ok(service.catalog.all_codes())

    for method in ("GET", "POST"):
        r.add_api_route("/translate/languages", languages, methods=[method], name=f"modernmt_languages_{method}")
        r.add_api_route("/translate/detect", detect, methods=[method], name=f"modernmt_detect_{method}")
    return r
