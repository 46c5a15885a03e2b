"""Error responses of the service: one documented shape, generated safely, whatever the client sent.

Every error status (401, 404, 409, 413, 422, 500) answers ``{"detail": "<one line>"}``
(``ErrorOut``), and ``responses(...)`` documents it on the routes. The line never echoes the
client's input: a request's validation errors are described by where they are and what was
expected, so a body holding what JSON cannot encode (an unpaired UTF-16 surrogate, ``NaN``,
``1e400``) still gets its 422 rather than a 500 from encoding the error. An unexpected exception
is a 500 with no internals in the body (its traceback goes to the log).

``BodySizeLimit`` refuses a request body over ``SEGDIAL_MAX_BODY_BYTES`` with 413 before the
route parses it.
"""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

logger = logging.getLogger("segdial.service")

MAX_DETAIL_CHARS = 300

DESCRIPTIONS = {
    401: "Missing, unknown or revoked API key",
    404: "No such conversation for this client",
    409: "The conversation has ended (or reached its turn limit), or concurrent turns kept winning",
    413: "The request body is larger than SEGDIAL_MAX_BODY_BYTES",
    422: "The request is malformed or names what the service does not know",
    503: "Not ready",
}


class ErrorOut(BaseModel):
    """The body of every error response."""

    detail: str = Field(description="What is wrong, in one line")


def one_line(text: object) -> str:
    """``text`` as one line of valid Unicode, at most ``MAX_DETAIL_CHARS`` long."""
    line = " ".join(str(text).split())
    line = line.encode("utf-8", "backslashreplace").decode("utf-8")  # unpaired surrogates: escaped
    return line if len(line) <= MAX_DETAIL_CHARS else line[: MAX_DETAIL_CHARS - 3] + "..."


def responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """The OpenAPI ``responses`` of a route that can answer these error statuses."""
    return {status: {"model": ErrorOut, "description": DESCRIPTIONS[status]} for status in statuses}


def validation_detail(errors: list[Any]) -> str:
    """Where each validation error is and what was expected (never the value that was sent)."""
    parts = []
    for error in errors[:3]:
        where = ".".join(str(p) for p in error.get("loc", ()))
        parts.append(f"{where}: {error.get('msg', 'invalid')}" if where else str(error.get("msg", "invalid")))
    more = f" (and {len(errors) - 3} more)" if len(errors) > 3 else ""
    return one_line("; ".join(parts) + more)


def error_response(status: int, detail: object, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse({"detail": one_line(detail)}, status_code=status, headers=headers)


def install(app: FastAPI) -> None:
    """The service's error handlers: every error body is an ``ErrorOut``."""

    @app.exception_handler(RequestValidationError)
    async def invalid_request(request: Request, exc: RequestValidationError) -> JSONResponse:
        return error_response(422, validation_detail(list(exc.errors())))

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        if exc.status_code == 400:  # FastAPI could not decode the body: malformed input, as bad JSON is
            return error_response(422, "the request body is not valid JSON in UTF-8")
        return error_response(exc.status_code, exc.detail, getattr(exc, "headers", None))

    @app.exception_handler(Exception)
    async def unexpected(request: Request, exc: Exception) -> JSONResponse:
        logger.exception("unexpected error on %s %s", request.method, request.url.path)
        return error_response(500, "internal server error")


async def no_unknown_query(request: Request) -> None:
    """A query parameter the route does not declare is refused (422), as the document says.

    A typo (``?untill=...``) would otherwise be ignored silently and answer another question.
    """
    route = request.scope.get("route")
    dependant = getattr(route, "dependant", None)
    if dependant is None or not request.query_params:
        return
    known = _query_names(dependant)
    unknown = sorted(set(request.query_params) - known)
    if unknown:
        raise RequestValidationError(
            [{"loc": ("query", name), "msg": "unknown query parameter", "type": "extra_forbidden"} for name in unknown]
        )


def _query_names(dependant: Any) -> set[str]:
    """The query parameters a route reads, its dependencies' included."""
    names = {p.alias for p in dependant.query_params}
    for sub in dependant.dependencies:
        names |= _query_names(sub)
    return names


class BodySizeLimit:
    """ASGI middleware: a request body over ``limit`` bytes gets 413 (by its Content-Length, or as it streams)."""

    def __init__(self, app: ASGIApp, limit: int) -> None:
        self.app = app
        self.limit = limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        length = dict(scope["headers"]).get(b"content-length")
        if length is not None and length.isdigit() and int(length) > self.limit:
            await self._refuse(scope, receive, send)
            return
        # Read the body here (it is small: at most ``limit``), then hand it to the app as it came.
        messages: list[Message] = []
        size = 0
        while True:
            message = await receive()
            messages.append(message)
            if message["type"] != "http.request":
                break
            size += len(message.get("body", b""))
            if size > self.limit:
                await self._refuse(scope, receive, send)
                return
            if not message.get("more_body", False):
                break

        async def replay() -> Message:
            return messages.pop(0) if messages else await receive()

        await self.app(scope, replay, send)

    async def _refuse(self, scope: Scope, receive: Receive, send: Send) -> None:
        response = error_response(413, f"the request body is larger than {self.limit} bytes")
        await response(scope, receive, send)
