"""One JSON error envelope for every failure, and the request size limit.

``{"error": {"code": "...", "message": "...", "details": {...}}}``: the codes are those of
``farside_protocol.errors``, so clients re-raise the exception the gateway raised.
"""

from __future__ import annotations

import json
import logging
import re
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from farside_protocol import ApiError, MalformedRequest, PayloadTooLarge
from farside_protocol.errors import InvalidRequest, NotFound, ServerError

log = logging.getLogger(__name__)


def envelope_response(error: ApiError) -> JSONResponse:
    return JSONResponse(error.envelope(), status_code=error.status)


def _describe(err: dict[str, Any]) -> str:
    where = ".".join(str(p) for p in err.get("loc", ()) if p != "body")
    msg = str(err.get("msg", "invalid"))
    if err.get("type") == "extra_forbidden":
        msg = "unknown field"
    return f"{where}: {msg}" if where else msg


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(ApiError)
    async def _api_error(_: Request, exc: ApiError) -> JSONResponse:
        return envelope_response(exc)

    @app.exception_handler(RequestValidationError)
    async def _invalid(_: Request, exc: RequestValidationError) -> JSONResponse:
        errors = list(exc.errors())
        if any(e.get("type") == "json_invalid" for e in errors):
            detail = next(e for e in errors if e.get("type") == "json_invalid")
            ctx = detail.get("ctx", {})
            return envelope_response(
                MalformedRequest(f"request body is not valid JSON: {ctx.get('error', 'invalid')}")
            )
        problems = [_describe(e) for e in errors[:20]]
        return envelope_response(
            InvalidRequest(
                "invalid request: " + "; ".join(problems),
                {"problems": json.loads(json.dumps(problems))},
            )
        )

    @app.exception_handler(HTTPException)
    async def _http(_: Request, exc: HTTPException) -> JSONResponse:
        if exc.status_code == 404:
            return envelope_response(NotFound("no such endpoint; see /openapi.json"))
        if exc.status_code == 400:
            return envelope_response(MalformedRequest(f"malformed request: {exc.detail}"))
        error = ApiError(str(exc.detail))
        error.status = exc.status_code  # type: ignore[misc]
        return envelope_response(error)

    @app.exception_handler(Exception)
    async def _unexpected(_: Request, exc: Exception) -> JSONResponse:
        log.exception("unhandled error")
        return envelope_response(
            ServerError(f"internal error ({type(exc).__name__}); see the gateway's log")
        )


class BodyLimit:
    """Refuse request bodies over ``limit`` bytes with 413, before they are buffered.

    Paths matching ``exempt`` (uploads streamed to the blob store) keep their own limit.
    """

    def __init__(self, app: ASGIApp, limit: int, exempt: re.Pattern[str] | None = None) -> None:
        self.app = app
        self.limit = limit
        self.exempt = exempt

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        exempt = self.exempt is not None and self.exempt.search(scope.get("path", ""))
        if scope["type"] != "http" or exempt:
            await self.app(scope, receive, send)
            return

        def too_large() -> PayloadTooLarge:  # made only when needed: this runs per request
            return PayloadTooLarge(
                f"request body exceeds the gateway's limit of {self.limit} bytes; send less "
                "per request (e.g. split a map into smaller submissions)",
                {"limit": self.limit},
            )

        for name, value in scope.get("headers", []):
            if name == b"content-length" and value.isdigit() and int(value) > self.limit:
                await envelope_response(too_large())(scope, receive, send)
                return
        seen = 0
        exceeded = False
        started = False

        async def counting_receive() -> Message:
            nonlocal seen, exceeded
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.limit:
                    # stop reading; the app fails on the cut body and we answer for it
                    exceeded = True
                    return {"type": "http.disconnect"}
            return message

        async def guarded_send(message: Message) -> None:
            nonlocal started
            if exceeded:
                if message["type"] == "http.response.start" and not started:
                    started = True
                    await envelope_response(too_large())(scope, receive, send)
                return
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        await self.app(scope, counting_receive, guarded_send)
        if exceeded and not started:
            await envelope_response(too_large())(scope, receive, send)
