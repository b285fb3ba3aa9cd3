"""The FastAPI application: our ``/v1`` API plus the DeepL, LibreTranslate, Apertium APy, OpenAI, Microsoft
Translator v3, ModernMT and Google Translation v2 protocols.

Every protocol answers errors in its own shape (DeepL ``{"message"}``, LibreTranslate ``{"error"}``, Apertium
``{"responseStatus", "responseDetails"}``, OpenAI/Microsoft/Google ``{"error": {…}}``, ModernMT
``{"status", "error"}``, ours ``{"detail"}``), decided by ``http.protocol_of``. The paths several protocols
share — ``/translate`` (LibreTranslate, Apertium, Microsoft, ModernMT), ``/languages`` and ``/detect``
(LibreTranslate, Microsoft) — are routed here by what only one protocol sends (``api-version`` and
``Ocp-Apim-*`` for Microsoft, ``MMT-*``/``X-HTTP-Method-Override`` for ModernMT, ``langpair`` for Apertium),
so no request ever gets another protocol's answer shape.
"""

from __future__ import annotations

import logging
import re
from typing import Callable

from fastapi import APIRouter, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.requests import ClientDisconnect

from tower_cat.errors import TowerCatError

from . import apertium, deepl, google, libretranslate, microsoft, modernmt, openai_api, sessions_api, v1
from .http import (_DEEPL_MESSAGES, APERTIUM, DEEPL, MICROSOFT, MODERNMT, OURS, ProtocolError, error_response,
                   multi_route, protocol_of, read_params)
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
        proto = protocol_of(scope.get("path", ""), scope.get("query_string", b""), None, scope.get("headers"))
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


def _protocol(request: Request) -> str:
    return protocol_of(request.url.path, request.url.query, request.state, request.headers)


def _error(request: Request, status: int, message: str, code=None) -> Response:
    proto = _protocol(request)
    callback = request.query_params.get("callback") if proto == APERTIUM else None
    if callback:  # JSONP clients cannot read an error status: the envelope carries it
        return apertium.reply({"responseData": {"translatedText": None}, "responseDetails": message,
                               "responseStatus": status}, callback)
    return error_response(proto, status, message, code)


def shared_paths() -> APIRouter:
    """``/translate``, ``/languages``, ``/detect``: each request to the one protocol it speaks."""
    r = APIRouter(tags=["shared paths (LibreTranslate, Apertium, Microsoft, ModernMT)"])

    @multi_route(r, "/translate")
    async def translate(request: Request):
        proto = protocol_of(request.url.path, request.url.query, None, request.headers)
        if proto == MICROSOFT:
            if request.method != "POST":
                request.state.protocol = MICROSOFT
                raise ProtocolError("The request method is not supported for the requested resource.",
                                    status=405, code=405000)
            return await microsoft.translate(request)
        if proto == MODERNMT:
            return await modernmt.translate(request)
        params = await read_params(request)
        if params.has("langpair"):  # Apertium APy (langpair in the query or a form body)
            return await apertium.translate(request, params)
        return await libretranslate.translate(request, params)

    @multi_route(r, "/languages")
    async def languages(request: Request):
        if protocol_of(request.url.path, request.url.query, None, request.headers) == MICROSOFT:
            return await microsoft.languages(request)
        return await libretranslate.languages(request)

    @multi_route(r, "/detect")
    async def detect(request: Request):
        if protocol_of(request.url.path, request.url.query, None, request.headers) == MICROSOFT:
            return await microsoft.detect(request)
        return await libretranslate.detect(request, await read_params(request))

    return r


def create_app(service: Service) -> FastAPI:
    app = FastAPI(title="tower-cat", version="0.1.0",
                  description="Tower-family LLM translation for CAT tools: our /v1 API and DeepL-, "
                              "LibreTranslate-, Apertium-APy-, OpenAI-, Microsoft-Translator-v3-, ModernMT- and "
                              "Google-Translation-v2-compatible endpoints.")
    app.state.service = service

    @app.exception_handler(ServiceError)
    async def _service_error(request: Request, exc: ServiceError):
        proto = _protocol(request)
        message = exc.message
        if proto == DEEPL and exc.status in _DEEPL_MESSAGES and exc.status != 403:
            message = _DEEPL_MESSAGES[exc.status] if exc.status != 413 else exc.message
        return _error(request, exc.status, message, getattr(exc, "code", None))

    @app.exception_handler(TowerCatError)
    async def _tower_error(request: Request, exc: TowerCatError):
        return _error(request, 400, str(exc))

    @app.exception_handler(RequestValidationError)
    async def _validation(request: Request, exc: RequestValidationError):
        if _protocol(request) == OURS:
            return JSONResponse({"detail": exc.errors()}, status_code=422)
        return _error(request, 400, "invalid request: " + "; ".join(
            f"{'.'.join(str(x) for x in e.get('loc', ()))}: {e.get('msg')}" for e in exc.errors()))

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException):
        return _error(request, exc.status_code, str(exc.detail))

    @app.exception_handler(ClientDisconnect)
    async def _gone(request: Request, exc: ClientDisconnect):
        # the client hung up (timeout, cancelled job): nothing to answer and nothing wrong on our side
        log.info("client disconnected before the answer to %s %s", request.method, request.url.path)
        return Response(status_code=499)

    @app.exception_handler(Exception)
    async def _crash(request: Request, exc: Exception):
        if isinstance(exc, (ConnectionError, ClientDisconnect)):
            log.info("client connection lost on %s %s: %s", request.method, request.url.path, exc)
            return Response(status_code=499)
        log.exception("internal error on %s", request.url.path)
        return _error(request, 500, f"internal error: {type(exc).__name__}")

    app.include_router(openai_api.router())   # before /v1: /v1/models, /v1/chat/completions are OpenAI's
    app.include_router(v1.router())
    app.include_router(sessions_api.router())
    app.include_router(deepl.router())
    app.include_router(shared_paths())
    app.include_router(libretranslate.router())
    app.include_router(apertium.router())
    app.include_router(microsoft.router())
    app.include_router(modernmt.router())
    app.include_router(google.router())

    config = service.config

    def limit_for(scope: dict) -> int:
        path = scope.get("path", "")
        if path.startswith("/v1/files"):
            return config.max_file_bytes
        if path.startswith(("/v2/glossaries", "/v3/glossaries", "/v1/glossaries")):
            return 10 * 1024 * 1024  # DeepL: 10 MiB per glossary
        return config.max_request_bytes

    from .guards import JsonGuard, SafeErrors

    app.add_middleware(JsonGuard)        # inside the size limit: sees only bodies that fit
    app.add_middleware(BodyLimit, limit_for=limit_for)
    app.add_middleware(SafeErrors)       # outermost: a 500 answered here does not close the connection
    return app
