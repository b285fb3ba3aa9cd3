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


class ProtocolError(ServiceError):
    """A refusal with a protocol's own error code (Microsoft's 400036, ModernMT's exception type …)."""

    def __init__(self, message: str, status: int = 400, code: int | str | None = None):
        super().__init__(message, status)
        self.code = code

DEEPL, LIBRE, APERTIUM, OURS = "deepl", "libretranslate", "apertium", "v1"
OPENAI, MICROSOFT, MODERNMT, GOOGLE = "openai", "microsoft", "modernmt", "google"
_DEEPL_MESSAGES = {403: "Authorization failure", 413: "Request Entity Too Large", 429: "Too many requests",
                   456: "Quota Exceeded"}


# ----------------------------------------------------------------------------------------------------------
# protocol of a request, error bodies


# paths two or more protocols share: told apart by parameters and headers, never by guesswork on the body
SHARED_PATHS = ("/translate", "/languages", "/detect")
OPENAI_PATHS = ("/v1/chat/completions", "/v1/models", "/v1/completions", "/chat/completions", "/models")
MICROSOFT_PREFIX = "/translator/text/v3.0"
_MICROSOFT_HEADERS = ("ocp-apim-subscription-key", "ocp-apim-subscription-region", "ocp-apim-resourceid")
_MODERNMT_HEADERS = ("mmt-apikey", "mmt-platform", "mmt-platformversion", "mmt-apiclient", "x-http-method-override")
_MODERNMT_PATHS = ("/translate/languages", "/translate/detect", "/translate/qe", "/translate/batch",
                   "/context-vector", "/users/me", "/memories", "/import-jobs")
_APERTIUM_PATHS = ("/listPairs", "/listLanguageNames", "/identifyLang")


def _query_names(query: bytes | str) -> set[str]:
    text = query.decode("latin-1") if isinstance(query, bytes) else query
    return {part.split("=", 1)[0].lower() for part in text.split("&") if part}


def _header_names(headers: Any) -> set[str]:
    if headers is None:
        return set()
    if isinstance(headers, list):  # ASGI scope: [(b"name", b"value")]
        return {k.decode("latin-1").lower() for k, _ in headers}
    return {k.lower() for k in headers.keys()}


def protocol_of(path: str, query: bytes | str = b"", state: Any = None, headers: Any = None) -> str:
    """Which protocol a request speaks, so that every answer — errors included — has that protocol's shape.

    Path first; the paths LibreTranslate shares with Microsoft Translator (``/translate``, ``/languages``,
    ``/detect``), ModernMT (``/translate``) and Apertium APy (``/translate``) are told apart by what only one of
    them sends: Microsoft's ``api-version`` parameter or ``Ocp-Apim-*`` headers, ModernMT's ``MMT-*`` headers or
    ``X-HTTP-Method-Override``, Apertium's ``langpair``. What is left is LibreTranslate.
    """
    proto = getattr(state, "protocol", None) if state is not None else None
    if proto:
        return proto
    if path.startswith(("/v2/", "/v3/")) or path in ("/v2", "/v3"):
        return DEEPL
    if path in OPENAI_PATHS or path.startswith("/v1/models/"):
        return OPENAI
    if path.startswith("/v1/") or path in ("/v1", "/docs", "/openapi.json"):
        return OURS
    if path.startswith("/language/translate/v2"):
        return GOOGLE
    if path.startswith(MICROSOFT_PREFIX):
        return MICROSOFT
    if path.startswith(_MODERNMT_PATHS):
        return MODERNMT
    if path.startswith(_APERTIUM_PATHS):
        return APERTIUM
    names = _query_names(query)
    heads = _header_names(headers)
    if path in SHARED_PATHS or path in ("/dictionary/lookup", "/dictionary/examples", "/transliterate",
                                        "/breaksentence"):
        if "api-version" in names or any(h in heads for h in _MICROSOFT_HEADERS):
            return MICROSOFT
        if path == "/translate" and any(h in heads for h in _MODERNMT_HEADERS):
            return MODERNMT
    if "langpair" in names:
        return APERTIUM
    return LIBRE


# Microsoft Translator v3 error codes: HTTP status * 1000 + a detail number (v3 reference, "Errors")
MICROSOFT_CODES = {400: 400000, 401: 401000, 403: 403000, 404: 404000, 405: 405000, 413: 400077,
                   415: 415000, 429: 429000, 456: 403001, 500: 500000, 503: 503000}
# Google APIs: the canonical status name of an HTTP status
_GOOGLE_STATUS = {400: "INVALID_ARGUMENT", 401: "UNAUTHENTICATED", 403: "PERMISSION_DENIED", 404: "NOT_FOUND",
                  413: "INVALID_ARGUMENT", 429: "RESOURCE_EXHAUSTED", 456: "RESOURCE_EXHAUSTED",
                  500: "INTERNAL", 503: "UNAVAILABLE"}
_GOOGLE_REASON = {400: "invalid", 401: "authError", 403: "forbidden", 404: "notFound", 413: "invalid",
                  429: "rateLimitExceeded", 456: "dailyLimitExceeded", 500: "backendError", 503: "backendError"}
# ModernMT: exception type names its clients show
_MODERNMT_TYPES = {400: "ParameterParsingException", 401: "AuthenticationException", 403: "AuthorizationException",
                   404: "NotFoundException", 413: "PayloadTooLargeException", 429: "TooManyRequestsException",
                   456: "QuotaExceededException", 500: "InternalServerErrorException",
                   503: "ServiceUnavailableException"}
# OpenAI: error.type per status
_OPENAI_TYPES = {400: "invalid_request_error", 401: "authentication_error", 403: "permission_error",
                 404: "not_found_error", 413: "invalid_request_error", 429: "rate_limit_error",
                 456: "insufficient_quota", 500: "server_error", 503: "server_error"}


def error_response(protocol: str, status: int, message: str, code: int | str | None = None) -> JSONResponse:
    """An error in the shape the protocol's clients parse (``code``: a protocol-specific error code)."""
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
    elif protocol == MICROSOFT:
        status = 403 if status == 456 else status
        body = {"error": {"code": int(code) if code is not None else MICROSOFT_CODES.get(status, status * 1000),
                          "message": message}}
    elif protocol == MODERNMT:
        body = {"status": status, "error": {"type": str(code or _MODERNMT_TYPES.get(status, "ClientException")),
                                            "message": message}}
    elif protocol == GOOGLE:
        status = 403 if status == 456 else status
        body = {"error": {"code": status, "message": message,
                          "errors": [{"message": message, "domain": "global",
                                      "reason": str(code or _GOOGLE_REASON.get(status, "invalid"))}],
                          "status": _GOOGLE_STATUS.get(status, "UNKNOWN")}}
    elif protocol == OPENAI:
        kind = _OPENAI_TYPES.get(status, "invalid_request_error")
        status = 429 if status == 456 else status  # OpenAI reports an exhausted quota as 429 insufficient_quota
        body = {"error": {"message": message, "type": kind, "param": None, "code": code}}
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
