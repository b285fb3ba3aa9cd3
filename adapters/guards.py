"""Request guards: what no request may do to the server, whatever its protocol.

:class:`JsonGuard` (inside the body-size limit, so it only sees bodies that fit) refuses JSON nested deeper
than :data:`MAX_JSON_DEPTH` (400: Python's parser would hit its recursion limit and answer 500) and, on our own
``/v1`` API, bodies that are not JSON (415: form or text bodies to a JSON endpoint; ``/v1/files`` takes
multipart). :class:`SafeErrors` (outermost) turns any exception that escapes the application into a 500 in the
request's protocol shape and does **not** re-raise it: Starlette's error middleware re-raises after answering,
and uvicorn then closes the keep-alive connection, so the client's next request on it was reset.
"""

from __future__ import annotations

import logging
import re

from .http import OURS, error_response, protocol_of

log = logging.getLogger("tower_cat.server")

MAX_JSON_DEPTH = 32
_JSON_TOKEN = re.compile(rb'"(?:[^"\\]|\\.)*"|[\[\]{}]')
_BODY_METHODS = (b"POST", b"PUT", b"PATCH", "POST", "PUT", "PATCH")


def json_depth(body: bytes, limit: int = MAX_JSON_DEPTH) -> int:
    """The nesting depth of a JSON text, counted without parsing it (strings skipped); stops past ``limit``."""
    depth = deepest = 0
    for m in _JSON_TOKEN.finditer(body):
        c = m.group(0)[:1]
        if c in (b"[", b"{"):
            depth += 1
            if depth > deepest:
                deepest = depth
                if deepest > limit:
                    break
        elif c in (b"]", b"}"):
            depth -= 1
    return deepest


def _header(scope: dict, name: bytes) -> str:
    for k, v in scope.get("headers", []):
        if k == name:
            return v.decode("latin-1")
    return ""


def _is_json_type(ctype: str) -> bool:
    return ctype == "application/json" or ctype.endswith("+json")


class JsonGuard:
    def __init__(self, app, max_depth: int = MAX_JSON_DEPTH):
        self.app = app
        self.max_depth = max_depth

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http" or scope.get("method") not in _BODY_METHODS:
            return await self.app(scope, receive, send)
        path = scope.get("path", "")
        ctype = _header(scope, b"content-type").split(";")[0].strip().lower()
        ours = path.startswith("/v1/") and not path.startswith("/v1/files")
        if not (_is_json_type(ctype) or (not ctype and (ours or path.startswith(("/v2/", "/v3/", "/translate"))))):
            if ours and ctype:
                return await self._refuse(scope, receive, send, 415,
                                          f"send the request body as application/json (not {ctype})")
            return await self.app(scope, receive, send)
        # a JSON body (or one without a type that may be JSON): read it, check its depth, hand it on
        chunks, more = [], True
        while more:
            msg = await receive()
            if msg["type"] == "http.disconnect":  # the client hung up mid-body: nothing to answer, not an error
                log.info("client disconnected before the body of %s %s was read", scope.get("method"), path)
                return
            chunks.append(msg.get("body", b""))
            more = msg.get("more_body", False)
        body = b"".join(chunks)
        if (_is_json_type(ctype) or body.lstrip()[:1] in (b"{", b"[")) and json_depth(body, self.max_depth) > \
                self.max_depth:
            return await self._refuse(scope, receive, send, 400,
                                      f"the JSON body is nested deeper than {self.max_depth} levels")
        if ours and not ctype and body.strip() and body.lstrip()[:1] not in (b"{", b"["):
            return await self._refuse(scope, receive, send, 415, "send the request body as application/json")
        sent = False

        async def replay():
            nonlocal sent
            if not sent:
                sent = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        await self.app(scope, replay, send)

    @staticmethod
    async def _refuse(scope, receive, send, status: int, message: str):
        proto = protocol_of(scope.get("path", ""), scope.get("query_string", b""), None, scope.get("headers"))
        await error_response(proto, status, message)(scope, receive, send)


class SafeErrors:
    """Outermost: an exception that escapes the app is answered (500, protocol shape) and not re-raised, so the
    server keeps the connection open for the client's next request."""

    def __init__(self, app):
        self.app = app

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        started = False

        async def tracking_send(msg):
            nonlocal started
            if msg["type"] == "http.response.start":
                started = True
            await send(msg)

        try:
            await self.app(scope, receive, tracking_send)
        except Exception as exc:  # noqa: BLE001 - the last line of defence
            log.error("internal error on %s: %s", scope.get("path", ""), exc, exc_info=exc)
            if started:  # a half-sent response cannot be repaired; the connection must close
                raise
            proto = protocol_of(scope.get("path", ""), scope.get("query_string", b""), None, scope.get("headers"))
            await error_response(proto, 500, f"internal error: {type(exc).__name__}")(scope, receive, send)


__all__ = ["JsonGuard", "MAX_JSON_DEPTH", "SafeErrors", "json_depth"]
