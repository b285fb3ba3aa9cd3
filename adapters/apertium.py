"""Apertium APy compatibility: ``GET|POST /translate?q=&langpair=src|tgt`` and ``GET /listPairs``.

This is the request OmegaT's bundled Apertium connector makes with "custom server" on::

    {server}/translate?q=<url-encoded segment>&markUnknown=no&langpair=en|pt_BR&key=<key>

(one segment per request; OmegaT caches results), and what Weblate's "Apertium APy" machinery makes after
reading ``/listPairs``. Codes may be ISO 639-1 (``en``), ISO 639-3 (``eng``) or locales (``pt_BR``,
``en_US``, ``ca_valencia``). OmegaT's own inline tags (``<b0>``, ``</b0>``, ``<t1/>``) come back intact.

``/listLanguageNames[?locale=&languages=eng+spa]`` answers ``{code: name}`` for the served languages (2- and
3-letter codes; names in English whatever the locale, the only names the server has), ``/identifyLang?q=``
answers ``{iso639-3 code: probability}``. Every answer, errors included, is JSONP
(``callback(…)``, ``application/javascript``) when the request has a ``callback`` parameter, as in APy.

Answers use APy's envelope ``{"responseData": {"translatedText": …}, "responseDetails": null,
"responseStatus": 200}``. Errors keep the envelope with ``responseStatus`` set to the error code and
``responseDetails`` to the reason, sent with HTTP 200 as the classic Apertium JSON API did, so OmegaT shows
the reason instead of "server not found". The key, when the server has keys, is the ``key`` parameter.
"""

from __future__ import annotations

import json
import re

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response

from .catalog import ISO3
from .http import APERTIUM, Params, multi_route, read_params, service_of
from .service import SegmentIn, ServiceError

_CALLBACK = re.compile(r"^[A-Za-z_$][\w$]*(\.[A-Za-z_$][\w$]*)*$")


def reply(body, callback: str | None = None, status: int = 200) -> Response:
    """JSON, or JSONP when the request named a ``callback`` (a plain JS identifier; anything else is refused)."""
    if not callback:
        return JSONResponse(body, status_code=status)
    if not _CALLBACK.match(callback) or len(callback) > 128:
        return JSONResponse({"responseData": None, "responseDetails": "invalid callback name",
                             "responseStatus": 400}, status_code=200)
    return Response(f"{callback}({json.dumps(body, ensure_ascii=False)});", status_code=status,
                    media_type="application/javascript")


async def translate(request: Request, params: Params):
    request.state.protocol = APERTIUM
    service = service_of(request)
    key = service.check_key(params.get("key") or None)
    q = params.get("q")
    if q is None:
        raise ServiceError("Missing argument q")
    pair = str(params.get("langpair") or "")
    if "|" not in pair:
        raise ServiceError("Missing or malformed argument langpair (expected src|tgt)")
    src_code, tgt_code = pair.split("|", 1)
    try:
        src = service.resolve(src_code, "source")
        tgt = service.resolve(tgt_code, "target")
    except ServiceError:
        raise ServiceError("That pair is not installed") from None
    mode = "html" if str(params.get("format") or "").lower() == "html" else "omegat"
    outs = await service.translate([SegmentIn.parse(str(q), mode)], src, tgt, key=key)
    return reply({"responseData": {"translatedText": outs[0].text}, "responseDetails": None, "responseStatus": 200},
                 params.get("callback"))


def router() -> APIRouter:
    r = APIRouter(tags=["Apertium-APy-compatible"])

    @r.get("/listPairs")
    async def list_pairs(request: Request):
        request.state.protocol = APERTIUM
        return reply({"responseData": service_of(request).catalog.apertium_pairs(), "responseDetails": None,
                      "responseStatus": 200}, request.query_params.get("callback"))

    @r.get("/listLanguageNames")
    async def list_language_names(request: Request):
        request.state.protocol = APERTIUM
        catalog = service_of(request).catalog
        names = {}
        for code in catalog.all_codes():
            names[code.replace("-", "_")] = catalog.name(code)
            if code in ISO3:
                names[ISO3[code]] = catalog.name(code)
        wanted = request.query_params.get("languages")
        if wanted:
            keep = set(re.split(r"[\s+,]+", wanted.strip()))
            names = {k: v for k, v in names.items() if k in keep}
        return reply(names, request.query_params.get("callback"))

    @multi_route(r, "/identifyLang")
    async def identify_lang(request: Request):
        request.state.protocol = APERTIUM
        params = await read_params(request)
        service = service_of(request)
        service.check_key(params.get("key") or None)
        q = params.get("q")
        if q is None:
            raise ServiceError("Missing argument q")
        ranked = service.detector.rank(str(q))
        return reply({ISO3.get(d.language, d.language): round(d.confidence / 100, 4) for d in ranked},
                     params.get("callback"))

    return r
