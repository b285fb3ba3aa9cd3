"""Apertium APy compatibility: ``GET|POST /translate?q=&langpair=src|tgt`` and ``GET /listPairs``.

This is the request OmegaT's bundled Apertium connector makes with "custom server" on::

    {server}/translate?q=<url-encoded segment>&markUnknown=no&langpair=en|pt_BR&key=<key>

(one segment per request; OmegaT caches results), and what Weblate's "Apertium APy" machinery makes after
reading ``/listPairs``. Codes may be ISO 639-1 (``en``), ISO 639-3 (``eng``) or locales (``pt_BR``,
``en_US``, ``ca_valencia``). OmegaT's own inline tags (``<b0>``, ``</b0>``, ``<t1/>``) come back intact.

Answers use APy's envelope ``{"responseData": {"translatedText": …}, "responseDetails": null,
"responseStatus": 200}``. Errors keep the envelope with ``responseStatus`` set to the error code and
``responseDetails`` to the reason, sent with HTTP 200 as the classic Apertium JSON API did, so OmegaT shows
the reason instead of "server not found". The key, when the server has keys, is the ``key`` parameter.
"""

from __future__ import annotations

from fastapi import APIRouter, Request

from .http import APERTIUM, Params, service_of
from .service import SegmentIn, ServiceError


async def translate(request: Request, params: Params):
    request.state.protocol = APERTIUM
    service = service_of(request)
    key = service.check_key(params.get("key") or None) if service.config.api_keys else params.get("key")
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
    return {"responseData": {"translatedText": outs[0].text}, "responseDetails": None, "responseStatus": 200}


def router() -> APIRouter:
    r = APIRouter(tags=["Apertium-APy-compatible"])

    @r.get("/listPairs")
    async def list_pairs(request: Request):
        request.state.protocol = APERTIUM
        return {"responseData": service_of(request).catalog.apertium_pairs(), "responseDetails": None,
                "responseStatus": 200}

    return r
