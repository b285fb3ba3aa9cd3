"""Google Cloud Translation Basic (v2) compatibility: ``/language/translate/v2`` and its ``/languages``,
``/detect``.

What ``google-cloud-translate``'s ``translate_v2.Client`` (with ``client_options={"api_endpoint": …}``) and
Google-v2-shaped connectors (Matecat's "Moses" engine, scripts) send:

* ``POST|GET /language/translate/v2`` — JSON body, form or query: ``q`` (one or a list; repeated in a query),
  ``target``, ``source`` (absent: detected, and ``detectedSourceLanguage`` is answered), ``format``
  (``html``, **Google's default**, keeps every tag and decodes entities; ``text`` is plain), ``model`` and
  ``cid`` accepted without effect → ``{"data": {"translations": [{"translatedText", "detectedSourceLanguage"?}]}}``.
* ``GET|POST /language/translate/v2/languages[?target=xx]`` → ``{"data": {"languages": [{"language", "name"?}]}}``
  (names, in English, only when ``target`` is given, as Google does).
* ``POST|GET /language/translate/v2/detect`` → ``{"data": {"detections": [[{"language", "confidence",
  "isReliable"}]]}}``.
* The key: ``key`` parameter, ``X-Goog-Api-Key`` header, or ``Authorization: Bearer``.
* Errors: ``{"error": {"code", "message", "errors": [{"message", "domain", "reason"}], "status"}}``.
"""

from __future__ import annotations

from fastapi import APIRouter, Request

from .http import GOOGLE, Params, ProtocolError, multi_route, read_params, service_of
from .service import SegmentIn, Service, ServiceError, Unauthorized

PREFIX = "/language/translate/v2"


async def _begin(request: Request) -> tuple[Service, str | None, Params]:
    request.state.protocol = GOOGLE
    service = service_of(request)
    params = await read_params(request)
    auth = request.headers.get("authorization", "")
    key = (params.get("key") or request.headers.get("x-goog-api-key")
           or (auth[7:].strip() if auth.startswith("Bearer ") else None))
    try:
        return service, service.check_key(str(key) if key else None), params
    except Unauthorized:
        raise ProtocolError("API key not valid. Please pass a valid API key.", status=400, code="badRequest") from None


def _texts(params: Params) -> list[str]:
    q = params.list("q")
    if not q:
        raise ProtocolError("Required Text", code="required")
    if not all(isinstance(t, str) for t in q):
        raise ProtocolError("Invalid Value: q must be strings", code="invalid")
    return q


def router() -> APIRouter:
    r = APIRouter(prefix=PREFIX, tags=["Google-Translation-v2-compatible"])

    @multi_route(r, "")
    async def translate(request: Request):
        service, key, params = await _begin(request)
        texts = _texts(params)
        target = params.get("target")
        if not target:
            raise ProtocolError("Required Target language", code="required")
        try:
            tgt = service.resolve(str(target), "target")
        except ServiceError:
            raise ProtocolError("Bad language pair: target language not supported", code="badRequest") from None
        source = params.get("source") or None
        if source:
            try:
                service.resolve(str(source), "source")
            except ServiceError:
                raise ProtocolError("Bad language pair: source language not supported", code="badRequest") from None
        fmt = str(params.get("format") or "html").lower()
        if fmt not in ("html", "text"):
            raise ProtocolError(f"Invalid Value: format {fmt}", code="invalid")
        if len(texts) > 128:  # Google: at most 128 text segments per request
            raise ProtocolError("Too many text segments", code="invalid")
        items = [SegmentIn.parse(t, fmt) for t in texts]
        outs = await service.translate(items, source, tgt, key=key)
        translations = []
        for out in outs:
            t: dict = {"translatedText": out.text}
            if not source:
                t["detectedSourceLanguage"] = out.source_lang
            translations.append(t)
        return {"data": {"translations": translations}}

    @multi_route(r, "/languages")
    async def languages(request: Request):
        service, _, params = await _begin(request)
        target = params.get("target")
        catalog = service.catalog
        if target:
            return {"data": {"languages": [{"language": c, "name": catalog.name(c)} for c in catalog.all_codes()]}}
        return {"data": {"languages": [{"language": c} for c in catalog.all_codes()]}}

    @multi_route(r, "/detect")
    async def detect(request: Request):
        service, _, params = await _begin(request)
        detections = []
        for text in _texts(params):
            d = service.detect(text)
            detections.append([{"language": d.language, "confidence": round(min(max(d.confidence / 100, 0), 1), 2),
                                "isReliable": False}])
        return {"data": {"detections": detections}}

    return r
