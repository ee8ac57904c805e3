"""Every error as one JSON shape, ``{"error": {"code", "message"}}``, logged exactly once.

Clients never see a stack trace: unexpected exceptions become a bare 500 here and their
traceback goes to the log, and nothing re-raises them to the server (which would log them a
second time).
"""

from __future__ import annotations

import hmac
import json
import logging
import time
from typing import Any, Callable, Mapping, Optional, Sequence

import anyio
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from fashion_search.errors import IndexMismatchError
from fashion_search.store.filters import FilterError

log = logging.getLogger("fashion_search.web")

_HTTP_CODES = {404: "not_found", 405: "method_not_allowed", 413: "upload_too_large", 415: "not_an_image"}


class ApiError(Exception):
    """A request that cannot be served, with the status and code the client gets."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status, self.code, self.message = status, code, message


def too_large_message(limit: int) -> str:
    size = f"{limit / 2**20:.0f} MB" if limit >= 2**20 else f"{limit / 1024:.0f} KB"
    return f"upload larger than the {size} limit"


def error_body(code: str, message: str) -> dict[str, Any]:
    return {"error": {"code": code, "message": message}}


def _printable(text: Any) -> str:
    """``text`` with control characters escaped: a client's path or value (``%0A`` decodes to a
    newline) must not write lines of its own into the server's log."""
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in str(text))


def _log_client_error(scope: Scope, status: int, code: str, message: str) -> None:
    log.warning(
        "%s %s -> %d %s: %s",
        _printable(scope.get("method")),
        _printable(scope.get("path")),
        status,
        code,
        _printable(message),
    )


# Set in the scope of a request whose body passed the limit: its 413 is logged, not the
# parse error that the framework raises on the way.
_TOO_LARGE = "fashion_search.body_too_large"


def _reply(
    request: Request, status: int, code: str, message: str, headers: Optional[Mapping[str, str]] = None
) -> JSONResponse:
    if not request.scope.get(_TOO_LARGE):
        _log_client_error(request.scope, status, code, message)
    return JSONResponse(error_body(code, message), status_code=status, headers=dict(headers or {}))


def _validation_message(exc: RequestValidationError) -> str:
    parts = []
    for err in exc.errors():
        where = ".".join(str(p) for p in err.get("loc", ()) if p not in ("body", "query", "path"))
        parts.append(f"{where}: {err.get('msg', 'invalid')}" if where else str(err.get("msg", "invalid")))
    return "; ".join(parts) or "invalid request"


def install_error_handlers(app: FastAPI) -> None:
    async def api_error(request: Request, exc: ApiError) -> JSONResponse:
        return _reply(request, exc.status, exc.code, exc.message)

    async def http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        code = _HTTP_CODES.get(exc.status_code, "http_error")
        # Starlette's own headers (Allow on a 405) are part of the answer.
        return _reply(request, exc.status_code, code, str(exc.detail), getattr(exc, "headers", None))

    async def invalid_request(request: Request, exc: RequestValidationError) -> JSONResponse:
        return _reply(request, 422, "invalid_request", _validation_message(exc))

    async def index_changed(request: Request, exc: IndexMismatchError) -> JSONResponse:
        # Another process rebuilt the index with other models: this process cannot serve it.
        return _reply(request, 503, "index_models_changed", str(exc))

    async def bad_filter(request: Request, exc: FilterError) -> JSONResponse:
        return _reply(request, 422, "bad_filter", str(exc))

    app.add_exception_handler(ApiError, api_error)  # type: ignore[arg-type]
    app.add_exception_handler(FilterError, bad_filter)  # type: ignore[arg-type]
    app.add_exception_handler(IndexMismatchError, index_changed)  # type: ignore[arg-type]
    app.add_exception_handler(StarletteHTTPException, http_error)  # type: ignore[arg-type]
    app.add_exception_handler(RequestValidationError, invalid_request)  # type: ignore[arg-type]


async def _send_error(
    send: Send, status: int, code: str, message: str, headers: Sequence[tuple[bytes, bytes]] = ()
) -> None:
    body = json.dumps(error_body(code, message)).encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
                *headers,
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})


class CatchAll:
    """Turns an unexpected exception into a JSON 500 and logs its traceback once."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = False

        async def tracked_send(message: Message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, receive, tracked_send)
        except Exception:
            log.exception(
                "%s %s -> 500: unexpected error", _printable(scope.get("method")), _printable(scope.get("path"))
            )
            if not started:
                await _send_error(send, 500, "internal_error", "internal server error; it has been logged")


class _BodyTooLarge(Exception):
    pass


class _BodyTooSlow(Exception):
    pass


class BodySizeLimit:
    """Refuses request bodies over ``max_bytes`` (+ ``slack`` for the multipart envelope) with
    a 413 before they are buffered: at once when Content-Length says so, else as soon as the
    streamed body passes the limit."""

    def __init__(
        self,
        app: ASGIApp,
        max_bytes: int,
        slack: int = 64 * 1024,
        write_bytes: Optional[int] = None,
        is_write: Optional[Callable[[str, str], bool]] = None,
        body_timeout_s: Optional[float] = None,
    ) -> None:
        self.app = app
        # A client gets this long to send its whole body: a slow one cannot hold a connection.
        self.body_timeout_s = body_timeout_s
        self.slack = slack
        self.upload_limit = max_bytes
        # Catalog writes carry several images: their own, larger limit.
        self.write_limit = write_bytes or max_bytes
        self.is_write = is_write or (lambda method, path: False)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        write = self.is_write(scope.get("method", ""), scope.get("path", ""))
        limit = self.write_limit if write else self.upload_limit
        max_bytes = limit + self.slack
        message = too_large_message(limit)
        declared = dict(scope.get("headers") or []).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > max_bytes:
            _log_client_error(scope, 413, "upload_too_large", message)
            await _send_error(send, 413, "upload_too_large", message)
            return
        received = 0
        exceeded = too_slow = body_done = False
        deadline = None if self.body_timeout_s is None else time.monotonic() + self.body_timeout_s

        async def limited_receive() -> Message:
            nonlocal received, exceeded, too_slow, body_done
            if body_done or deadline is None:
                event = await receive()  # after the body: waiting for a disconnect is no read
            else:
                try:
                    with anyio.fail_after(max(0.0, deadline - time.monotonic())):
                        event = await receive()
                except TimeoutError:
                    too_slow = scope[_TOO_LARGE] = True
                    raise _BodyTooSlow() from None
            if event["type"] == "http.request":
                received += len(event.get("body", b""))
                body_done = not event.get("more_body", False)
                if received > max_bytes:
                    exceeded = scope[_TOO_LARGE] = True
                    raise _BodyTooLarge()
            return event

        async def guarded_send(event: Message) -> None:
            # The body parser turns our exception into its own 400; the client gets the 413/408.
            if not (exceeded or too_slow):
                await send(event)

        try:
            await self.app(scope, limited_receive, guarded_send)
        except (_BodyTooLarge, _BodyTooSlow):
            pass
        if exceeded:
            _log_client_error(scope, 413, "upload_too_large", message)
            await _send_error(send, 413, "upload_too_large", message)
        elif too_slow:
            slow = f"the request body did not arrive within {self.body_timeout_s:g} s"
            _log_client_error(scope, 408, "request_timeout", slow)
            await _send_error(send, 408, "request_timeout", slow, [(b"connection", b"close")])


class ApiKeyGate:
    """Checks the API key before a request's body is read: catalog writes always need it
    (and are off, 405, when the server has none), other ``/api/`` routes only with
    ``protect_reads``. 401 without ``Authorization: Bearer KEY``, 403 with another key; keys
    are compared in constant time and never logged."""

    def __init__(
        self, app: ASGIApp, key: Optional[str], protect_reads: bool, is_write: Callable[[str, str], bool]
    ) -> None:
        self.app = app
        self.key = key.encode("utf-8") if key else None
        self.protect_reads = protect_reads
        self.is_write = is_write

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        method, path = scope.get("method", ""), scope.get("path", "")
        write = self.is_write(method, path)
        if write and self.key is None:
            message = "catalog writes are off on this server: start it with --api-key-file to allow them"
            _log_client_error(scope, 405, "writes_disabled", message)
            allow = b"GET" if path.startswith("/api/products/") else b""
            await _send_error(send, 405, "writes_disabled", message, [(b"allow", allow)])
            return
        if write or (self.protect_reads and path.startswith("/api/")):
            assert self.key is not None
            header = dict(scope.get("headers") or []).get(b"authorization", b"")
            scheme, _, token = header.partition(b" ")
            if scheme.lower() != b"bearer" or not token.strip():
                message = "this route needs an API key: send `Authorization: Bearer KEY`"
                _log_client_error(scope, 401, "missing_api_key", message)
                await _send_error(send, 401, "missing_api_key", message, [(b"www-authenticate", b"Bearer")])
                return
            if not hmac.compare_digest(token.strip(), self.key):
                _log_client_error(scope, 403, "wrong_api_key", "the API key is not this server's")
                await _send_error(send, 403, "wrong_api_key", "the API key is not this server's")
                return
        await self.app(scope, receive, send)
