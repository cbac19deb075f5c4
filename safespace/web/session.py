"""The signed-in viewer: session and CSRF cookies, the session middleware, notices."""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import uuid
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from litestar import Response
from litestar.connection import ASGIConnection
from litestar.datastructures import Cookie
from litestar.middleware import AbstractAuthenticationMiddleware, AuthenticationResult
from litestar.types import Empty, Message, Receive, Scope, Send

# Litestar's cache of parsed headers and cookies in the scope: no public way to reset it after the
# cookie header is rewritten (_bind_csrf); litestar is pinned to a tested range.
from litestar.utils.scope.state import ScopeState
from sqlalchemy import exc as sa_exc
from sqlalchemy.ext.asyncio import AsyncSession

from safespace import i18n
from safespace.identity.signin import SET_NOTICE, LiveSession, SessionReader, needs_ending, needs_settling, settle

log = logging.getLogger(__name__)


SESSION_COOKIE = "safespace_session"
SESSION_DAYS = 30  # the session cookie's life in the browser; the server ends idle sessions sooner
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
    """A session's CSRF token, as Litestar's CSRF middleware sets a cookie (app.py CSRFConfig) but
    kept as long as the session cookie: a browser opened again within the session's life still
    holds it, so its first page does not have to set it again. It is only an HMAC of the session's
    token, worth nothing without the session cookie beside it."""
    return Cookie(key=CSRF_COOKIE, value=token, path="/", httponly=True, samesite="lax", secure=secure, max_age=SESSION_DAYS * 86400)


def forget_session_cookies(response: Response) -> None:
    """Sign-out and account deletion: the browser drops the session cookie and the session's CSRF
    cookie, which would otherwise outlive the session by up to its 30 days."""
    response.delete_cookie(SESSION_COOKIE, path="/")
    response.delete_cookie(CSRF_COOKIE, path="/")


def session_cookies(session_token: str, csrf_secret: str, secure: bool) -> list[Cookie]:
    """A new session's cookies (by magic link or single sign-on): the session, and its own CSRF
    token, so the one from before sign-in stops working."""
    session = Cookie(
        key=SESSION_COOKIE, value=session_token, httponly=True, samesite="lax", secure=secure, path="/", max_age=SESSION_DAYS * 86400
    )
    return [session, csrf_cookie(bound_csrf_token(csrf_secret, session_token), secure)]


LANGUAGE_COOKIE = "safespace_lang"  # the language chosen on the sign-in pages, before any profile


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
