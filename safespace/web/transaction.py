"""The request's transaction: committed before the answer is sent, or the answer says it was not saved."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Awaitable, Callable

import msgspec
from advanced_alchemy.extensions.litestar import async_autocommit_handler_maker

# A private name, but no public accessor exists for the request's session; the version is pinned.
from advanced_alchemy.extensions.litestar._utils import get_aa_scope_state
from litestar import Request
from litestar.types import Message, Scope
from sqlalchemy import exc as sa_exc

from safespace import i18n
from safespace.web.errors import error_templates
from safespace.web.pages import API_PREFIX

log = logging.getLogger(__name__)


log = logging.getLogger(__name__)


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
        template = error_templates().get_template("errors/error.html")
        body = template.render(request=Request(scope), status=status, title=title, detail=detail, csrf_input="").encode()
        kind = b"text/html; charset=utf-8"
    dropped = {b"content-type", b"content-length", b"location", b"set-cookie"}
    headers = [(k, v) for k, v in message.get("headers", []) if k.lower() not in dropped]
    message["status"] = status
    message["headers"] = [*headers, (b"content-type", kind), (b"content-length", str(len(body)).encode()), (b"retry-after", b"30")]
    scope[_NOT_SAVED] = body  # type: ignore[literal-required]
