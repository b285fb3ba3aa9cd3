"""What every protocol router shares: which protocol a request speaks, its error shape, its parameters and key.

Routers import this module and the service; ``app.py`` assembles the routers into the application, so no router
imports the app.
"""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import parse_qs

from fastapi import Request
from fastapi.responses import JSONResponse

from .service import Service, ServiceError

DEEPL, LIBRE, APERTIUM, OURS = "deepl", "libretranslate", "apertium", "v1"
_DEEPL_MESSAGES = {403: "Authorization failure", 413: "Request Entity Too Large", 429: "Too many requests",
                   456: "Quota Exceeded"}


# ----------------------------------------------------------------------------------------------------------
# protocol of a request, error bodies


def protocol_of(path: str, query: bytes | str = b"", state: Any = None) -> str:
    proto = getattr(state, "protocol", None) if state is not None else None
    if proto:
        return proto
    if path.startswith(("/v2/", "/v3/")) or path in ("/v2", "/v3"):
        return DEEPL
    if path.startswith("/v1/") or path in ("/v1", "/docs", "/openapi.json"):
        return OURS
    if path.startswith("/listPairs") or b"langpair" in (query if isinstance(query, bytes) else query.encode()):
        return APERTIUM
    return LIBRE


def error_response(protocol: str, status: int, message: str) -> JSONResponse:
    headers = {"Retry-After": "1"} if status in (429, 503) else None
    if protocol == DEEPL:
        body: dict = {"message": message}
    elif protocol == LIBRE:
        body = {"error": message}
    elif protocol == APERTIUM:
        # OmegaT and Weblate read the envelope; HTTP 200 like the classic Apertium JSON API, so the tool shows
        # responseDetails instead of a bare connection error
        return JSONResponse({"responseData": {"translatedText": None}, "responseDetails": message,
                             "responseStatus": status}, status_code=200, headers=headers)
    else:
        body = {"detail": message}
    return JSONResponse(body, status_code=status, headers=headers)


# ----------------------------------------------------------------------------------------------------------
# request parameters: query + JSON or form body, repeated fields kept


class Params:
    """Parameters of a request from the query string and a JSON or form body (body wins)."""

    def __init__(self, data: dict[str, list[Any]], is_json: bool = False):
        self.data = data
        self.is_json = is_json

    def get(self, *names: str, default: Any = None) -> Any:
        for name in names:
            values = self.data.get(name)
            if values:
                return values[0]
        return default

    def list(self, *names: str) -> list[Any]:
        out: list[Any] = []
        for name in names:
            for v in self.data.get(name, []):
                if isinstance(v, list):
                    out.extend(v)
                else:
                    out.append(v)
        return out

    def raw(self, name: str) -> Any:
        """The value as sent: a JSON list stays a list; form fields repeated give a list."""
        values = self.data.get(name)
        if not values:
            return None
        if self.is_json:
            return values[0]
        return values if len(values) > 1 else values[0]

    def has(self, name: str) -> bool:
        return bool(self.data.get(name))

    def flag(self, name: str, default: bool = False) -> bool:
        v = self.get(name)
        if v is None:
            return default
        if isinstance(v, bool):
            return v
        return str(v).strip().lower() in ("1", "true", "yes", "on")


async def read_params(request: Request) -> Params:
    data: dict[str, list[Any]] = {}
    for k, v in request.query_params.multi_items():
        data.setdefault(k, []).append(v)
    ctype = request.headers.get("content-type", "").split(";")[0].strip().lower()
    is_json = False
    body = await request.body()
    if body:
        if ctype == "application/json" or (not ctype and body.lstrip()[:1] in (b"{", b"[")):
            try:
                payload = json.loads(body)
            except ValueError:
                raise ServiceError("the request body is not valid JSON") from None
            if not isinstance(payload, dict):
                raise ServiceError("the JSON body must be an object")
            is_json = True
            for k, v in payload.items():
                data[k] = [v]
        elif ctype == "multipart/form-data":
            form = await request.form()
            for k, v in form.multi_items():
                data.setdefault(k, []).append(v)
        else:  # form-urlencoded (also what clients send on GET with a body)
            try:
                parsed = parse_qs(body.decode("utf-8"), keep_blank_values=True)
            except UnicodeDecodeError:
                raise ServiceError("the request body is not UTF-8") from None
            for k, vs in parsed.items():
                data[k] = vs
    return Params(data, is_json)



def multi_route(r, path: str, methods: tuple[str, ...] = ("GET", "POST"), **kw):
    """Register one handler for several methods as separate routes (distinct OpenAPI operation ids)."""

    def deco(fn):
        for m in methods:
            r.add_api_route(path, fn, methods=[m], name=f"{fn.__name__}_{m.lower()}", **kw)
        return fn

    return deco


def service_of(request: Request) -> Service:
    return request.app.state.service


def bearer_key(request: Request, params: Params | None = None) -> str | None:
    """An API key from ``Authorization: DeepL-Auth-Key|Bearer <key>``, ``X-API-Key``, or ``auth_key``/``api_key``/
    ``key`` parameters."""
    auth = request.headers.get("authorization", "")
    for prefix in ("DeepL-Auth-Key ", "Bearer "):
        if auth.startswith(prefix):
            return auth[len(prefix):].strip() or None
    if request.headers.get("x-api-key"):
        return request.headers["x-api-key"].strip()
    if params is not None:
        for name in ("auth_key", "api_key", "key"):
            v = params.get(name)
            if v:
                return str(v)
    return None
