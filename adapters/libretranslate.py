"""LibreTranslate compatibility (as LibreTranslate 1.9 answers): ``POST /translate``, ``GET /languages``,
``POST /detect``, ``GET /health``, ``GET /frontend/settings``.

* JSON or form bodies; ``q`` a string or (JSON only, as in LibreTranslate) a list for a batch; a form post
  takes the first ``q`` and normalises line endings to ``\\n``.
* ``source=auto`` detects per text and adds ``detectedLanguage`` (``{"confidence", "language"}``, a list for a
  batch); ``alternatives=N`` adds ``alternatives`` (beam search n-best, not for ``format=html``).
* ``format=html`` keeps every tag (see ``tags.py``); ``text`` is plain text.
* The key comes from ``api_key`` in the body or query (LibreTranslate reads no header); errors are
  ``{"error": …}`` with 400, 403, 429.

``/translate``, ``/languages`` and ``/detect`` are shared with Apertium APy (``langpair``), Microsoft Translator
(``api-version``, ``Ocp-Apim-*`` headers) and ModernMT (``MMT-*`` headers): ``app.py`` routes those paths and
hands a request here only when it is none of those (see ``http.protocol_of``).
"""

from __future__ import annotations

from fastapi import APIRouter, Request

from .http import LIBRE, Params, service_of
from .service import SegmentIn, ServiceError

MAX_ALTERNATIVES = 3


async def translate(request: Request, params: Params):
    request.state.protocol = LIBRE
    service = service_of(request)
    key = service.check_key(params.get("api_key"))
    q = params.raw("q") if params.is_json else params.get("q")
    if q is None:
        raise ServiceError("Invalid request: missing q parameter")
    source = params.get("source")
    if not source:
        raise ServiceError("Invalid request: missing source parameter")
    target = params.get("target")
    if not target:
        raise ServiceError("Invalid request: missing target parameter")
    batch = isinstance(q, list)
    texts = q if batch else [q]
    if not all(isinstance(t, str) for t in texts):
        raise ServiceError("Invalid request: q must be a string or a list of strings")
    if not params.is_json:
        texts = [t.replace("\r\n", "\n").replace("\r", "\n") for t in texts]
    if batch and len(texts) > service.config.max_texts:
        raise ServiceError(f"Invalid request: request ({len(texts)}) exceeds text limit "
                           f"({service.config.max_texts})")
    fmt = str(params.get("format") or "text").lower()
    if fmt not in ("text", "html"):
        raise ServiceError(f"{fmt} format is not supported")
    try:
        n_alt = int(params.get("alternatives") or 0)
    except (TypeError, ValueError):
        raise ServiceError("Invalid request: alternatives must be a number") from None
    n_alt = max(0, min(n_alt, MAX_ALTERNATIVES)) if fmt == "text" else 0
    auto = str(source).lower() == "auto"
    try:
        src = None if auto else service.resolve(str(source), "source")
    except ServiceError:
        raise ServiceError(f"{source} is not supported") from None
    try:
        tgt = service.resolve(str(target), "target")
    except ServiceError:
        raise ServiceError(f"{target} is not supported") from None
    items = [SegmentIn.parse(t, fmt) for t in texts]
    try:
        outs = await service.translate(items, src, tgt, key=key, alternatives=n_alt)
    except ServiceError as exc:
        if exc.status == 413:  # LibreTranslate reports its character limit as a 400
            raise ServiceError(f"Invalid request: {exc.message}") from None
        if exc.status == 429:
            raise ServiceError(f"Slowdown: {exc.message}", status=429) from None
        raise
    body: dict = {"translatedText": [o.text for o in outs] if batch else outs[0].text}
    if auto:
        det = [{"confidence": o.detected.confidence, "language": o.detected.language} for o in outs]
        body["detectedLanguage"] = det if batch else det[0]
    if n_alt:
        alts = [o.alternatives for o in outs]
        body["alternatives"] = alts if batch else alts[0]
    return body


async def languages(request: Request):
    request.state.protocol = LIBRE
    return service_of(request).catalog.libretranslate()


async def detect(request: Request, params: Params):
    request.state.protocol = LIBRE
    service = service_of(request)
    service.check_key(params.get("api_key"))
    q = params.get("q")
    if q is None:
        raise ServiceError("Invalid request: missing q parameter")
    texts = q if isinstance(q, list) else [q]
    ranked = [[d.as_libretranslate() for d in service.detector.rank(str(t))] for t in texts]
    return ranked if isinstance(q, list) else ranked[0]


def router() -> APIRouter:
    """``/health`` and ``/frontend/settings``; the shared paths are routed by ``app.py``."""
    r = APIRouter(tags=["LibreTranslate-compatible"])

    @r.get("/health")
    async def health(request: Request):
        return {"status": "ok"}

    @r.get("/frontend/settings")
    async def settings(request: Request):
        service = service_of(request)
        return {"charLimit": service.config.max_chars, "frontendTimeout": 500,
                "apiKeys": bool(service.config.api_keys), "keyRequired": bool(service.config.api_keys),
                "suggestions": False, "filesTranslation": False, "supportedFilesFormat": [],
                "language": {"source": {"code": "auto", "name": "Auto Detect"},
                             "target": {"code": service.catalog.bases[0], "name": service.catalog.name(
                                 service.catalog.bases[0])}}}

    return r
