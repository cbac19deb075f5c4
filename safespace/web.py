"""What every page and API route shares: templates, the signed-in viewer, guards, errors."""

from __future__ import annotations

import base64
import contextlib
import functools
import hashlib
import hmac
import json
import logging
import re
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import timedelta
from http import HTTPStatus
from pathlib import Path
from typing import Any
from urllib.parse import quote

import msgspec
from advanced_alchemy.extensions.litestar import async_autocommit_handler_maker

# A private name, but no public accessor exists for the request's session; the version is pinned.
from advanced_alchemy.extensions.litestar._utils import get_aa_scope_state
from jinja2 import Environment, FileSystemLoader, select_autoescape
from litestar import Litestar, Request, Response
from litestar.background_tasks import BackgroundTask
from litestar.connection import ASGIConnection
from litestar.datastructures import Cookie
from litestar.di import NamedDependency, Provide
from litestar.exceptions import (
    HTTPException,
    NotAuthorizedException,
    NotFoundException,
    PermissionDeniedException,
    ValidationException,
)
from litestar.middleware import AbstractAuthenticationMiddleware, AuthenticationResult
from litestar.openapi.datastructures import ResponseSpec
from litestar.params import FromPath
from litestar.response import Redirect, Template
from litestar.routes import HTTPRoute
from litestar.status_codes import HTTP_500_INTERNAL_SERVER_ERROR
from litestar.types import Empty, Message, Receive, Scope, Send
from litestar.utils.scope.state import ScopeState
from sqlalchemy import exc as sa_exc
from sqlalchemy.ext.asyncio import AsyncSession

from safespace import i18n
from safespace.errors import InvalidInput, Refused
from safespace.identity.models import Membership
from safespace.identity.services import active_membership
from safespace.identity.signin import SET_NOTICE, LiveSession, SessionReader, needs_ending, needs_settling, settle

log = logging.getLogger(__name__)

TEMPLATES = Path(__file__).with_name("templates")  # package data: a plain wheel carries them
SESSION_COOKIE = "safespace_session"
CSRF_COOKIE = "safespace_csrf"
BOUND_CSRF = "safespace.bound_csrf"  # scope key: the session's CSRF token, when this response must set it


def bound_csrf_token(csrf_secret: str, session_token: str) -> str:
    """The CSRF token of a session: Litestar's format (64 hex characters, then their HMAC under the
    CSRF secret, which its middleware checks), with the 64 characters derived from the session
    token instead of drawn at random. So a token obtained outside the session (before sign-in, or
    planted in the browser by someone else) does not pass for it."""
    from litestar.middleware.csrf import generate_csrf_hash

    secret_part = hmac.new(csrf_secret.encode(), f"csrf-of-session:{session_token}".encode(), hashlib.sha256).hexdigest()
    return secret_part + generate_csrf_hash(token=secret_part, secret=csrf_secret)


def csrf_cookie(token: str, secure: bool) -> Cookie:
    """As Litestar's CSRF middleware sets it (app.py CSRFConfig)."""
    return Cookie(key=CSRF_COOKIE, value=token, path="/", httponly=True, samesite="lax", secure=secure)
LANGUAGE_COOKIE = "safespace_lang"  # the language chosen on the sign-in pages, before any profile
API_PREFIX = "/api/"


def template_environment() -> Environment:
    env = Environment(
        loader=FileSystemLoader(TEMPLATES),
        autoescape=select_autoescape(["html"], default_for_string=False),
        extensions=["jinja2.ext.i18n"],
        trim_blocks=True,
        lstrip_blocks=True,
        # Templates change with a deploy (a restart), never under a running process: no stat()
        # of each template file on every render, which cost a page about 5% of its time.
        auto_reload=False,
    )
    env.install_gettext_callables(  # type: ignore[attr-defined]
        lambda message: i18n.translations(i18n.current_language()).gettext(message),
        lambda singular, plural, n: i18n.translations(i18n.current_language()).ngettext(singular, plural, n),
        newstyle=True,
    )
    env.globals.update(current_language=i18n.current_language, languages=i18n.LANGUAGES, sri=subresource_integrity)
    return env


STATIC = Path(__file__).resolve().parent / "static"


@functools.cache
def subresource_integrity(name: str) -> str:
    """The SRI value of one of our static files (read once per process: files change with a deploy)."""
    digest = hashlib.sha384((STATIC / name).read_bytes()).digest()
    return "sha384-" + base64.b64encode(digest).decode()


# --- the signed-in viewer -------------------------------------------------------------------


@dataclass(frozen=True)
class Place:
    """A community the viewer can switch to, for the navigation."""

    community_id: uuid.UUID
    name: str
    role: str


@dataclass
class Viewer:
    person_id: uuid.UUID
    session_id: uuid.UUID
    email: str
    display_name: str
    language: str | None
    community_id: uuid.UUID | None
    places: list[Place] = field(default_factory=list)
    flash: dict[str, str] | None = None

    @property
    def name(self) -> str:
        return self.display_name or self.email.split("@")[0]


def language_for(connection: ASGIConnection, viewer: Viewer | None = None) -> str:
    """The person's choice, else the language picked on this browser, else Accept-Language."""
    if viewer and viewer.language:
        return viewer.language
    chosen = connection.cookies.get(LANGUAGE_COOKIE)
    if chosen in i18n.LANGUAGES:
        return chosen
    return i18n.negotiate(connection.headers.get("accept-language"))


class SessionAuthMiddleware(AbstractAuthenticationMiddleware):
    """Loads the viewer from the session cookie (or leaves it None) and picks the language; binds
    the CSRF token to the session (bound_csrf_token)."""

    def __init__(self, app, sessions: SessionReader, idle: timedelta, csrf_secret: str, secure: bool, **kwargs: Any) -> None:  # noqa: ANN001
        super().__init__(app, **kwargs)
        self.sessions = sessions  # one per app: concurrent requests' sessions are read together
        self.idle = idle
        self.csrf_secret = csrf_secret
        self.secure = secure

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """As the base class; a response to a request whose CSRF cookie was replaced by the
        session's own (_bind_csrf) sets that cookie in the browser."""
        if scope["type"] != "http":
            await super().__call__(scope, receive, send)
            return

        async def sending(message: Message) -> None:
            if message["type"] == "http.response.start" and (bound := scope.get(BOUND_CSRF)):
                headers = list(message.get("headers", []))
                setting = f"{CSRF_COOKIE}=".encode()
                if not any(k.lower() == b"set-cookie" and v.startswith(setting) for k, v in headers):  # sign-in sets its own
                    cookie = csrf_cookie(bound, self.secure).to_header(header="").strip().encode("latin-1")
                    message["headers"] = [*headers, (b"set-cookie", cookie)]
            await send(message)

        await super().__call__(scope, receive, sending)

    def _bind_csrf(self, scope: Scope, session_token: str) -> None:
        """With a live session, the CSRF cookie that Litestar's middleware (inside this one) compares
        the form's token with is the session's own. A browser holding another one (from before
        sign-in, or planted) gets the session's, set on this response; a form sent with the other
        token then fails the check, as a forged one would."""
        bound = bound_csrf_token(self.csrf_secret, session_token)
        if ASGIConnection(scope).cookies.get(CSRF_COOKIE) == bound:
            return
        others = [(k, v) for k, v in scope["headers"] if k != b"cookie"]
        parts = [part.strip() for k, v in scope["headers"] if k == b"cookie" for part in v.decode("latin-1").split(";")]
        parts = [part for part in parts if part and not part.startswith(f"{CSRF_COOKIE}=")] + [f"{CSRF_COOKIE}={bound}"]
        scope["headers"] = [*others, (b"cookie", "; ".join(parts).encode("latin-1"))]
        state = ScopeState.from_scope(scope)  # Litestar keeps the parsed headers and cookies here
        state.headers = state.cookies = Empty
        scope[BOUND_CSRF] = bound  # type: ignore[literal-required]

    async def authenticate_request(self, connection: ASGIConnection) -> AuthenticationResult:
        token = connection.cookies.get(SESSION_COOKIE)
        # Only a GET renders a full page: the one-time notice is for it.
        page_view = connection.scope.get("method") in ("GET", "HEAD")
        viewer = await self._viewer(token, page_view) if token else None
        i18n.set_language(language_for(connection, viewer))
        if viewer:
            self._bind_csrf(connection.scope, token)
        return AuthenticationResult(user=viewer, auth=token if viewer else None)

    async def _viewer(self, token: str, page_view: bool) -> Viewer | None:
        live = await self.sessions.read(token)
        if live is None:
            return None
        flash = json.loads(live.flash) if page_view and live.flash else None
        if flash or needs_settling(live, self.idle):  # at most hourly, or a notice to clear
            live = await self._settle(live, clear_notice=bool(flash))
            if live is None:  # idle too long: signed out
                return None
        places = [Place(*place) for place in live.places]
        return Viewer(
            person_id=live.person_id,
            session_id=live.session_id,
            email=live.email,
            display_name=live.display_name,
            language=live.language,
            community_id=live.community_id,
            places=places,
            flash=flash,
        )


    async def _settle(self, live: LiveSession, clear_notice: bool) -> LiveSession | None:
        """The session's housekeeping writes (the hourly touch, ending an idle session, clearing a
        shown notice). Reading a page must not depend on them: when the write fails (a full disk,
        a read-only database, a timeout) the page is served all the same; an idle session still
        ends, the notice may show once more, and the touch is tried again on the next request."""
        try:
            async with self.sessions.engine.connect() as db:
                settled = await settle(db, live, self.idle)
                if settled is not None and clear_notice:
                    await db.execute(SET_NOTICE, {"session_id": settled.session_id, "notice": None})
                await db.commit()
        except sa_exc.SQLAlchemyError as exc:
            log.warning("session housekeeping not written (%s); the page is served", exc.__class__.__name__)
            return None if needs_ending(live, self.idle) else live
        return settled


async def flash(db: AsyncSession, viewer: Viewer, message: str, kind: str = "success") -> None:
    """A one-time notice shown on the next page the viewer opens."""
    # On the table, not the mapped class: a plain UPDATE by primary key, without the ORM's
    # bulk-update bookkeeping (no WebSession objects live in request sessions). Through the
    # session, so its pending changes are flushed first, as before.
    await db.execute(SET_NOTICE, {"session_id": viewer.session_id, "notice": notice(message, kind)})


def notice(message: str, kind: str = "success") -> str:
    """A one-time notice as the session keeps it."""
    return json.dumps({"message": message, "kind": kind})


# --- dependencies and guards -----------------------------------------------------------------


DATABASE_STATE_KEY = "database"  # app.state: the SQLAlchemy plugin's config (create_app)


def request_session(request: Request) -> AsyncSession:
    """The request's database session, made on first use: the one `db_session` injects, committed
    or rolled back and closed when the response is sent. For a route that needs the database
    only on some paths (a dependency is made for every request, and several at once cost an
    anyio task group)."""
    return request.app.state[DATABASE_STATE_KEY].provide_session(request.app.state, request.scope)


def provide_viewer(request: Request) -> Viewer:
    if request.user is None:
        raise NotAuthorizedException(i18n.gettext("Sign in to continue."))
    return request.user


async def provide_membership(
    community_id: FromPath[uuid.UUID], request: Request, db_session: NamedDependency[AsyncSession]
) -> Membership:
    """The viewer's active membership here. Any other community is 'not found', not 'forbidden'."""
    return await require_membership(db_session, provide_viewer(request).person_id, community_id)


async def require_membership(db: AsyncSession, person_id: uuid.UUID, community_id: uuid.UUID) -> Membership:
    membership = await active_membership(db, person_id, community_id)
    if membership is None:
        raise no_community()
    return membership


def no_community() -> NotFoundException:
    return NotFoundException(i18n.gettext("There is no community at this address."))


def _facilitators_only(role: str) -> None:
    if role != "facilitator":
        raise PermissionDeniedException(i18n.gettext("Only the community's facilitators can do this."))


async def provide_facilitation(
    community_id: FromPath[uuid.UUID], request: Request, db_session: NamedDependency[AsyncSession]
) -> Membership:
    membership = await provide_membership(community_id, request, db_session)
    _facilitators_only(membership.role)
    return membership


def facilitator_place(request: Request, community_id: uuid.UUID) -> Place:
    """provide_facilitation's check, answered from the viewer's places: the active memberships
    read with the session at the start of this request. No query and no Membership object, for
    a page that needs nothing more of the membership (the trend page, on every visit)."""
    place = next((p for p in provide_viewer(request).places if p.community_id == community_id), None)
    if place is None:
        raise no_community()
    _facilitators_only(place.role)
    return place


def member_routes() -> dict[str, Provide]:
    """Dependencies of routes under a community for any active member (404 for strangers)."""
    return {"viewer": Provide(provide_viewer, sync_to_thread=False), "membership": Provide(provide_membership)}


def facilitator_routes() -> dict[str, Provide]:
    """Dependencies of routes under a community for its facilitators (403 for members)."""
    return {"viewer": Provide(provide_viewer, sync_to_thread=False), "facilitation": Provide(provide_facilitation)}


def community_routes() -> dict[str, Provide]:
    """Both, for controllers that mix member and facilitator routes."""
    return member_routes() | facilitator_routes()


# --- pages and errors ---------------------------------------------------------------------------


def see_other(path: str) -> Redirect:
    """After a form POST: the browser GETs the next page (303), so reloading it re-sends nothing."""
    return Redirect(path, status_code=303)


def local_path(value: str | None) -> str | None:
    """A path on this site to go back to after sign-in; anything else (another host) is dropped."""
    if value and value.startswith("/") and not value.startswith(("//", "/\\")) and "\n" not in value:
        return value
    return None


def form_text(data: dict[str, Any], name: str) -> str:
    """One form field as text (the last value if it was sent twice)."""
    value = data.get(name, "")
    return str(value[-1] if isinstance(value, list) else value or "").strip()


def page(
    name: str,
    status_code: int = 200,
    headers: dict[str, str] | None = None,
    background: BackgroundTask | None = None,
    **context: Any,
) -> Template:
    return Template(template_name=name, context=context, status_code=status_code, headers=headers, background=background)


def is_api(request: Request) -> bool:
    return request.url.path.startswith(API_PREFIX)


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


def answer_options(request: Request) -> Response | None:
    """before_request: OPTIONS is answered here, with the whole Allow header."""
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


# --- the request's transaction ------------------------------------------------------------------

SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
_NOT_SAVED = "safespace.not_saved"  # scope key: the body that replaces a response whose commit failed


def commit_before_send(session_scope_key: str) -> Callable[[Message, Scope], Awaitable[None]]:
    """Commits the request's session as its response starts, as advanced-alchemy's
    "autocommit_include_redirects" does, but never answers success for what was not saved.

    advanced-alchemy logs a failed commit at debug level and sends the response as rendered: a
    form on a full disk said "saved" and kept nothing. Here a form or API call whose commit fails
    answers 503 (nothing was saved, try again). A page view is served all the same: what a GET
    writes is housekeeping (a session's current community, a key made on first use) that the
    next request makes again. advanced-alchemy's own handler then closes the session.

    `session_scope_key` is the config's: advanced-alchemy gives each config made in a process a
    key of its own (a second app in a test process gets a suffixed one)."""
    close = async_autocommit_handler_maker(commit_on_redirect=True, session_scope_key=session_scope_key)

    async def handler(message: Message, scope: Scope) -> None:
        session = get_aa_scope_state(scope, session_scope_key)
        if message["type"] == "http.response.start" and session is not None and 200 <= message["status"] < 400:
            try:
                await session.commit()
            except sa_exc.SQLAlchemyError as exc:
                with contextlib.suppress(sa_exc.SQLAlchemyError):
                    await session.rollback()
                where = f"{scope['method']} {scope.get('path_template', '?')}"
                # The error's kind and code only: a driver's message may quote the values written (P7).
                orig = getattr(exc, "orig", None)
                reason = f"{exc.__class__.__name__} {getattr(orig, 'sqlstate', None) or getattr(orig, 'sqlite_errorname', '')}".strip()
                if scope["method"] in SAFE_METHODS:
                    log.warning("a page's own writes were not saved on %s (%s); the page is served", where, reason)
                else:
                    log.error("nothing saved on %s: the commit failed (%s)", where, reason)
                    _answer_not_saved(message, scope)
        elif message["type"] == "http.response.body" and _NOT_SAVED in scope:
            message["body"], scope[_NOT_SAVED] = scope[_NOT_SAVED], b""  # type: ignore[literal-required]
        await close(message, scope)

    return handler


def _answer_not_saved(message: Message, scope: Scope) -> None:
    """Turn the response that is starting into a 503 that says nothing was saved."""
    status = 503
    title = i18n.gettext("Not saved")
    detail = i18n.gettext(
        "Safespace could not save this: its database refused the change (it may be out of space). "
        "Nothing was saved. Please try again in a few minutes; if it keeps happening, tell your facilitator."
    )
    if scope["path"].startswith(API_PREFIX):
        body, kind = msgspec.json.encode({"type": "about:blank", "title": title, "status": status, "detail": detail}), b"application/problem+json"
    else:
        template = _error_templates().get_template("errors/error.html")
        body = template.render(request=Request(scope), status=status, title=title, detail=detail, csrf_input="").encode()
        kind = b"text/html; charset=utf-8"
    dropped = {b"content-type", b"content-length", b"location", b"set-cookie"}
    headers = [(k, v) for k, v in message.get("headers", []) if k.lower() not in dropped]
    message["status"] = status
    message["headers"] = [*headers, (b"content-type", kind), (b"content-length", str(len(body)).encode()), (b"retry-after", b"30")]
    scope[_NOT_SAVED] = body  # type: ignore[literal-required]


@functools.cache
def _error_templates() -> Environment:
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
