"""RFC 9457 problem documents for every error, so callers always learn what was wrong.

A dependency that does not answer (see `servicekit.faults`) is 503 with `Retry-After`, not 500: the request
was fine and will succeed later. Once the database is known to be down, requests are answered 503 at once
(`Unavailable`) until the service's probe sees it answer again, instead of each waiting for the driver's timeout.
"""
from __future__ import annotations

import logging

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from servicekit.faults import Health, dependency_of
from servicekit.refusals import HTTP_STATUS, Rejected
from servicekit.security_headers import NO_STORE, NOSNIFF

log = logging.getLogger("servicekit.problems")
MEDIA_TYPE = "application/problem+json"
RETRY_AFTER_SECONDS = 5
ALWAYS_ANSWERED = ("/healthz", "/readyz", "/openapi.json", "/docs", "/asyncapi")  # need no database


class Problem(Exception):
    """Raise from a handler: `raise Problem(409, "Already registered", "business 123 exists")`."""

    def __init__(self, status: int, title: str, detail: str = "", **extra):
        super().__init__(detail or title)
        self.status, self.title, self.detail, self.extra = status, title, detail, extra


def problem_response(status: int, title: str, detail: str = "", **extra) -> JSONResponse:
    body = {"type": "about:blank", "title": title, "status": status, "detail": detail, **extra}
    return JSONResponse(body, status_code=status, media_type=MEDIA_TYPE)


def unavailable(dependency: str) -> JSONResponse:
    what = {"mongodb": "the database", "kafka": "the message broker"}.get(dependency, "a dependency")
    response = problem_response(503, "Service unavailable", f"{what.capitalize()} does not answer; please retry.",
                                dependency=dependency)
    response.headers.update({"Retry-After": str(RETRY_AFTER_SECONDS), **NOSNIFF, **NO_STORE})
    return response


def dependency_failed(exc: BaseException, health: Health | None) -> JSONResponse | None:
    """The 503 for a request that a dependency failed (noted in `health`), None when `exc` is not such a failure."""
    dependency = dependency_of(exc)
    if dependency is None:
        return None
    if health is not None and dependency != "other":
        health.failed(dependency)
    log.warning("dependency unavailable; answered 503",
                extra={"fields": {"dependency": dependency, "error_kind": type(exc).__name__}})
    return unavailable(dependency)


class Unavailable:
    """ASGI middleware: 503 at once while the database is known to be down, and 503 for a request that a dependency
    failed. The latter is answered here, not by an exception handler: Starlette's outermost middleware re-raises after
    a handler for `Exception` has answered, and uvicorn then closes the connection, so a client that sent its next
    request on it read nothing (httpx.ReadError) instead of the 503."""

    def __init__(self, app, health: Health):
        self.app, self.health = app, health

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        if self.health.is_down("mongodb") and not scope["path"].endswith(ALWAYS_ANSWERED):
            return await unavailable("mongodb")(scope, receive, send)
        started = False

        async def send_noting_start(message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, receive, send_noting_start)
        except Exception as exc:
            response = None if started else dependency_failed(exc, self.health)
            if response is None:
                raise
            await response(scope, receive, send)


def _field(loc) -> str:
    return ".".join(str(p) for p in loc if p not in ("body", "query", "path", "header"))


def install(app: FastAPI, health: Health | None = None) -> None:
    @app.exception_handler(Problem)
    async def _problem(_: Request, exc: Problem):
        return problem_response(exc.status, exc.title, exc.detail, **exc.extra)

    @app.exception_handler(Rejected)
    async def _rejected(_: Request, exc: Rejected):
        return problem_response(HTTP_STATUS[exc.kind], exc.title, exc.detail, **exc.extra)

    @app.exception_handler(RequestValidationError)
    async def _invalid(_: Request, exc: RequestValidationError):
        errors = [{"field": _field(e["loc"]) or "(body)", "message": e["msg"]} for e in exc.errors()]
        detail = "; ".join(f"{e['field']}: {e['message']}" for e in errors)
        return problem_response(422, "The request is not valid", detail, errors=errors)

    @app.exception_handler(StarletteHTTPException)
    async def _http(_: Request, exc: StarletteHTTPException):
        titles = {401: "Unauthorized", 403: "Forbidden", 404: "Not found", 405: "Method not allowed"}
        return problem_response(exc.status_code, titles.get(exc.status_code, "Error"), str(exc.detail or ""))

    if health is not None:
        app.add_middleware(Unavailable, health=health)

    @app.exception_handler(Exception)
    async def _unexpected(_: Request, exc: Exception):
        if (response := dependency_failed(exc, health)) is not None:  # an app without `Unavailable` (no health)
            return response
        log.exception("unhandled error")
        response = problem_response(500, "Internal error", "The request could not be completed; it has been logged.")
        response.headers.update({**NOSNIFF, **NO_STORE})  # answered outside the middleware that adds them
        return response
