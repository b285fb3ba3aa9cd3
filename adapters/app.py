"""The FastAPI application: our ``/v1`` API plus the DeepL, LibreTranslate and Apertium APy protocols.

Every protocol answers errors in its own shape (DeepL ``{"message"}``, LibreTranslate ``{"error"}``, Apertium
``{"responseStatus", "responseDetails"}``, ours ``{"detail"}``), decided by the path — ``/translate`` is shared
by LibreTranslate and Apertium and told apart by its ``langpair`` parameter.
"""

from __future__ import annotations

import logging
import re
from typing import Callable

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from tower_cat.errors import TowerCatError

from . import apertium, deepl, libretranslate, sessions_api, v1
from .http import _DEEPL_MESSAGES, DEEPL, OURS, error_response, protocol_of
from .service import Service, ServiceError

log = logging.getLogger("tower_cat.server")

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
