"""The FastAPI application: our ``/v1`` API plus the DeepL, LibreTranslate and Apertium APy protocols.

Every protocol answers errors in its own shape (DeepL ``{"message"}``, LibreTranslate ``{"error"}``, Apertium
``{"responseStatus", "responseDetails"}``, ours ``{"detail"}``), decided by the path — ``/translate`` is shared
by LibreTranslate and Apertium and told apart by its ``langpair`` parameter.
"""

from __future__ import annotations

import json
import logging
import re
from typing import Any, Callable
from urllib.parse import parse_qs

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from tower_cat.errors import TowerCatError

from .service import Service, ServiceError

log = logging.getLogger("tower_cat.server")

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


# ----------------------------------------------------------------------------------------------------------
# request size limit (ASGI middleware: checks Content-Length and counts streamed bytes)


class _TooLarge(Exception):
    pass


class BodyLimit:
    def __init__(self, app, limit_for: Callable[[dict], int]):
        self.app = app
        self.limit_for = limit_for

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        if "//" in scope.get("path", ""):  # "http://host:8000/" + "/translate" (OmegaT appends "/translate")
            scope = dict(scope, path=re.sub("/{2,}", "/", scope["path"]))
        limit = self.limit_for(scope)
        proto = protocol_of(scope.get("path", ""), scope.get("query_string", b""))
        for name, value in scope.get("headers", []):
            if name == b"content-length":
                try:
                    too_big = int(value) > limit
                except ValueError:
                    too_big = False
                if too_big:
                    await self._reject(proto, scope, receive, send, limit)
                    return
        received = 0
        started = False

        async def limited_receive():
            nonlocal received
            msg = await receive()
            if msg["type"] == "http.request":
                received += len(msg.get("body", b""))
                if received > limit:
                    raise _TooLarge
            return msg

        async def tracking_send(msg):
            nonlocal started
            if msg["type"] == "http.response.start":
                started = True
            await send(msg)

        try:
            await self.app(scope, limited_receive, tracking_send)
        except _TooLarge:
            if not started:
                await self._reject(proto, scope, receive, send, limit)

    @staticmethod
    async def _reject(proto, scope, receive, send, limit):
        msg = _DEEPL_MESSAGES[413] if proto == DEEPL else f"request body larger than {limit} bytes"
        response = error_response(proto, 413, msg)
        await response(scope, receive, send)


# ----------------------------------------------------------------------------------------------------------


def create_app(service: Service) -> FastAPI:
    from . import apertium, deepl, libretranslate, sessions_api, v1

    app = FastAPI(title="tower-cat", version="0.1.0",
                  description="Tower-family LLM translation for CAT tools: our /v1 API and DeepL-, "
                              "LibreTranslate- and Apertium-APy-compatible endpoints.")
    app.state.service = service

    @app.exception_handler(ServiceError)
    async def _service_error(request: Request, exc: ServiceError):
        proto = protocol_of(request.url.path, request.url.query, request.state)
        message = exc.message
        if proto == DEEPL and exc.status in _DEEPL_MESSAGES and exc.status != 403:
            message = _DEEPL_MESSAGES[exc.status] if exc.status != 413 else exc.message
        return error_response(proto, exc.status, message)

    @app.exception_handler(TowerCatError)
    async def _tower_error(request: Request, exc: TowerCatError):
        return error_response(protocol_of(request.url.path, request.url.query, request.state), 400, str(exc))

    @app.exception_handler(RequestValidationError)
    async def _validation(request: Request, exc: RequestValidationError):
        proto = protocol_of(request.url.path, request.url.query, request.state)
        if proto == OURS:
            return JSONResponse({"detail": exc.errors()}, status_code=422)
        return error_response(proto, 400, "invalid request: " + "; ".join(
            f"{'.'.join(str(x) for x in e.get('loc', ()))}: {e.get('msg')}" for e in exc.errors()))

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException):
        proto = protocol_of(request.url.path, request.url.query, request.state)
        return error_response(proto, exc.status_code, str(exc.detail))

    @app.exception_handler(Exception)
    async def _crash(request: Request, exc: Exception):
        log.exception("internal error on %s", request.url.path)
        return error_response(protocol_of(request.url.path, request.url.query, request.state), 500,
                              f"internal error: {type(exc).__name__}")

    app.include_router(v1.router())
    app.include_router(sessions_api.router())
    app.include_router(deepl.router())
    app.include_router(libretranslate.router())
    app.include_router(apertium.router())

    config = service.config

    def limit_for(scope: dict) -> int:
        path = scope.get("path", "")
        if path.startswith("/v1/files"):
            return config.max_file_bytes
        if path.startswith(("/v2/glossaries", "/v3/glossaries", "/v1/glossaries")):
            return 10 * 1024 * 1024  # DeepL: 10 MiB per glossary
        return config.max_request_bytes

    app.add_middleware(BodyLimit, limit_for=limit_for)
    return app


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
