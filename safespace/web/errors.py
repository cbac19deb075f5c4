"""Errors as answers: problem documents for the API, pages for people, 503 for a database away."""

from __future__ import annotations

import functools
import logging
import re
from http import HTTPStatus
from typing import Any
from urllib.parse import quote

import msgspec

# A private name, but no public accessor exists for the request's session; the version is pinned.
from jinja2 import Environment
from litestar import Litestar, Request, Response
from litestar.exceptions import (
    HTTPException,
    NotAuthorizedException,
    ValidationException,
)
from litestar.openapi.datastructures import ResponseSpec
from litestar.response import Redirect
from litestar.routes import HTTPRoute
from litestar.status_codes import HTTP_500_INTERNAL_SERVER_ERROR
from sqlalchemy import exc as sa_exc

from safespace import i18n
from safespace.errors import InvalidInput, Refused
from safespace.web.pages import is_api, page
from safespace.web.session import language_for
from safespace.web.templates import template_environment

log = logging.getLogger(__name__)


log = logging.getLogger(__name__)


def problem(status: int, title: str, detail: str = "", **extra: Any) -> Response:
    """An RFC 9457 problem document."""
    body = {"type": "about:blank", "title": title, "status": status}
    if detail:
        body["detail"] = detail
    body.update(extra)
    return Response(content=body, status_code=status, media_type="application/problem+json")


class Problem(msgspec.Struct):
    """The shape of `problem()` for the OpenAPI schema: how every API error is answered."""

    type: str
    title: str
    status: int
    detail: str = ""
    # field -> what to do (422), or Litestar's list of invalid parts of the request (400)
    errors: dict[str, str] | list[dict[str, Any]] | None = None


PROBLEMS = {
    400: "The request cannot be read: malformed JSON, a missing, unknown or mistyped field, or a token that is not valid",
    401: "Not signed in: sign in and send the session cookie",
    403: "Not allowed here (only facilitators), or the x-csrftoken header does not match the CSRF cookie",
    404: "No such community for you, or no such round, survey, team, member, key or story in it",
    409: "Refused by a rule: the round is not open, already answered, the token was spent, the last facilitator",
    422: "Some fields need attention: `errors` names each field and what to do",
    429: "Too many: this week's tokens are taken",
}


def problem_responses(*statuses: int) -> dict[int, ResponseSpec]:
    """The problem documents an API route may answer, for its OpenAPI `responses`."""
    return {
        status: ResponseSpec(
            data_container=Problem, media_type="application/problem+json", description=PROBLEMS[status], generate_examples=False
        )
        for status in statuses
    }


def _ensure_language(request: Request) -> None:
    # Errors raised before authentication (e.g. unknown paths) still speak the browser's language.
    if request.scope.get("user") is None:
        i18n.set_language(language_for(request))


_PARAMETER = re.compile(r"\{[^}:]+(?::([^}]+))?\}")
_TYPED = {"path": ".*", "uuid": "[0-9a-fA-F]{8}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{12}", "int": "-?[0-9]+"}


def _route_patterns(app: Litestar) -> list[tuple[str | None, re.Pattern[str], frozenset[str]]]:
    """Every HTTP route: its path if it has no parameter, its path as a pattern, the methods it
    answers (built once per app)."""
    if (patterns := app.state.get("route_patterns")) is None:
        patterns = []
        for route in app.routes:
            if isinstance(route, HTTPRoute):
                parts, at = [], 0
                for match in _PARAMETER.finditer(route.path):
                    parts += [re.escape(route.path[at : match.start()]), _TYPED.get(match.group(1) or "", "[^/]+")]
                    at = match.end()
                parts.append(re.escape(route.path[at:]))
                static = None if at else route.path.rstrip("/")
                patterns.append((static, re.compile("".join(parts) + "/?"), frozenset(route.methods)))
        app.state.route_patterns = patterns
    return patterns


def allowed_methods(request: Request) -> str:
    """The Allow header (RFC 9110 10.2.1) for the request's path: every method the route at that
    path answers. Litestar's own answer to OPTIONS named only one handler's methods."""
    path = request.url.path
    routes = _route_patterns(request.app)
    # As the router does: a path written out in full wins over one with a parameter in its place.
    exact = [methods for static, _pattern, methods in routes if static is not None and static == path.rstrip("/")]
    matching = exact or [methods for _static, pattern, methods in routes if pattern.fullmatch(path)]
    return ", ".join(sorted({m for methods in matching for m in methods} | {"OPTIONS"}))


async def answer_options(request: Request) -> Response | None:
    """before_request: OPTIONS is answered here, with the whole Allow header. It runs before every
    handler, so it is async: Litestar runs a plain function there in a worker thread, and every
    request (/healthz too) would then wait for that thread to get the GIL from a busy loop."""
    if request.method == "OPTIONS":
        return Response(content=None, status_code=204, headers={"Allow": allowed_methods(request)})
    return None


def handle_http_error(request: Request, exc: HTTPException) -> Response:
    _ensure_language(request)
    status = exc.status_code
    if status == 405:
        response = _http_error(request, exc, status)
        response.headers["Allow"] = allowed_methods(request)
        return response
    return _http_error(request, exc, status)


def _http_error(request: Request, exc: HTTPException, status: int) -> Response:
    if is_api(request):
        extra = {}
        if isinstance(exc, ValidationException) and exc.extra:
            extra["errors"] = exc.extra
        return problem(status, _title(status), exc.detail if exc.detail != _title(status) else "", **extra)
    if isinstance(exc, NotAuthorizedException):
        return Redirect(f"/signin?next={quote(request.url.path)}")
    detail = exc.detail
    if detail == HTTPStatus(status).phrase:
        detail = ""  # Litestar's English default says no more than the (translated) title
    if status == 403 and "CSRF" in (exc.detail or ""):
        detail = i18n.gettext("This form has expired. Go back, reload the page and try again.")
    return page("errors/error.html", status_code=status, status=status, title=_title(status), detail=detail)


def handle_invalid_input(request: Request, exc: InvalidInput) -> Response:
    _ensure_language(request)
    # HTML controllers catch InvalidInput to re-render their form; reaching here means JSON.
    return problem(422, i18n.gettext("Some fields need attention"), errors=exc.errors)


def handle_refused(request: Request, exc: Refused) -> Response:
    _ensure_language(request)
    if is_api(request):
        return problem(409, i18n.gettext("Not allowed"), str(exc))
    return page("errors/error.html", status_code=409, status=409, title=_title(409), detail=str(exc))


# SQLite's failures of the storage itself (not of a statement): the file or disk is read-only,
# full or failing, or another process holds the lock too long.
_SQLITE_STORAGE_ERRORS = ("SQLITE_IOERR", "SQLITE_FULL", "SQLITE_READONLY", "SQLITE_BUSY", "SQLITE_LOCKED", "SQLITE_CANTOPEN")
_DRIVERS = ("sqlalchemy.", "asyncpg.", "aiosqlite.")
_POSTGRES_TIMED_OUT = ("57014", "55P03")  # query_canceled (statement_timeout), lock_not_available
RETRY_AFTER = {"Retry-After": "30"}  # seconds; every 503 for an unavailable database says it


def database_unavailable(exc: BaseException) -> bool:
    """True when the database (not the request or our code) failed: unreachable, restarting, full, read-only."""
    if isinstance(exc, sa_exc.TimeoutError):  # no pooled connection came free in time
        return True
    if isinstance(exc, sa_exc.DBAPIError):
        if exc.connection_invalidated or isinstance(exc, sa_exc.InterfaceError):
            return True
        if isinstance(exc, sa_exc.OperationalError):
            name = getattr(exc.orig, "sqlite_errorname", None)  # SQLite: only storage failures, not bad SQL
            return name is None or name.startswith(_SQLITE_STORAGE_ERRORS)
        # PostgreSQL cancelled a statement that ran past SAFESPACE_DATABASE_STATEMENT_TIMEOUT_SECONDS
        # (a lock held elsewhere, an overloaded server), or gave up waiting for a lock.
        return getattr(exc.orig, "sqlstate", None) in _POSTGRES_TIMED_OUT
    # asyncpg's connect and its closed-connection errors are not wrapped by SQLAlchemy, nor is the
    # TimeoutError of a statement the server did not answer in time (asyncpg's command_timeout): an
    # OSError (TimeoutError is one) or a driver error counts only when the driver raised it, not (say) the mailer.
    import asyncpg

    driver_errors = (
        OSError,
        asyncpg.PostgresConnectionError,
        asyncpg.InterfaceError,
        asyncpg.CannotConnectNowError,
        asyncpg.InvalidCatalogNameError,  # the database in the URL does not exist (dropped, or a typo)
    )
    if not isinstance(exc, driver_errors):
        return False
    frame = exc.__traceback__
    while frame is not None:
        if frame.tb_frame.f_globals.get("__name__", "").startswith(_DRIVERS):
            return True
        frame = frame.tb_next
    return False


def handle_database_unavailable(request: Request, exc: BaseException) -> Response:
    """503 with a page or problem document that says to try again; no traceback for a known outage."""
    # The driver's message names the failure (never a value: engines hide parameters); the
    # route's template, never the path.
    reason = str(getattr(exc, "orig", None) or exc).split("\n", 1)[0][:200]
    log.error(
        "database unavailable on %s %s: %s: %s",
        request.method,
        request.scope.get("path_template", "?"),
        exc.__class__.__name__,
        reason,
    )
    _ensure_language(request)
    status = 503
    detail = i18n.gettext(
        "Safespace cannot reach its database right now. Please try again in a few minutes; "
        "if it keeps happening, tell your facilitator."
    )
    headers = dict(RETRY_AFTER)
    if is_api(request):
        response = problem(status, _title(status), detail)
        response.headers.update(headers)
        return response
    return page("errors/error.html", status_code=status, headers=headers, status=status, title=_title(status), detail=detail)




@functools.cache
def error_templates() -> Environment:
    return template_environment()


def handle_server_error(request: Request, exc: Exception) -> Response:
    if database_unavailable(exc):
        return handle_database_unavailable(request, exc)
    # The route's template, never the path: a path can carry a sign-in token.
    log.exception("unhandled error on %s %s", request.method, request.scope.get("path_template", "?"))
    _ensure_language(request)
    status = HTTP_500_INTERNAL_SERVER_ERROR
    detail = i18n.gettext("Something went wrong on our side. Please try again; if it keeps happening, tell your facilitator.")
    if is_api(request):
        return problem(status, _title(status), detail)
    return page("errors/error.html", status_code=status, status=status, title=_title(status), detail=detail)


def _title(status: int) -> str:
    titles = {
        400: i18n.gettext("That request could not be understood"),
        401: i18n.gettext("Sign in to continue"),
        403: i18n.gettext("You cannot do this here"),
        404: i18n.gettext("Page not found"),
        405: i18n.gettext("That action is not available here"),
        409: i18n.gettext("Not allowed"),
        429: i18n.gettext("Too many attempts"),
        500: i18n.gettext("Something went wrong"),
        503: i18n.gettext("Temporarily unavailable"),
    }
    return titles.get(status, i18n.gettext("That did not work"))
