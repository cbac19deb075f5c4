"""HTML pages for signing in and out with magic links, and choosing a language."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Annotated, Any

from litestar import Controller, Request, get, post
from litestar.background_tasks import BackgroundTask
from litestar.di import NamedDependency
from litestar.exceptions import NotFoundException
from litestar.params import FromPath, QueryParameter, URLEncodedBody
from litestar.response import Redirect, Template
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from safespace import i18n, ratelimit
from safespace.errors import InvalidInput
from safespace.i18n import gettext as _
from safespace.identity import services, signin, sso
from safespace.identity.mail import Postman
from safespace.settings import Settings
from safespace.web.pages import form_text, page, see_other
from safespace.web.paths import local_path
from safespace.web.session import LANGUAGE_COOKIE, Viewer, forget_session_cookies, session_cookies

log = logging.getLogger(__name__)
NO_REFERRER = {"Referrer-Policy": "no-referrer"}
Form = URLEncodedBody[dict[str, Any]]


@dataclass(frozen=True)
class SignInLinks:
    """Looks the address up, stores a link and mails it, after the response has gone out: the
    answer to "send me a link" does the same work, and takes as long, for a known address as for
    an unknown one (looking a person up and writing a link took 2-4 ms more, measurable from
    outside). A link lost because the process stopped meanwhile is asked for again."""

    sessionmaker: async_sessionmaker[AsyncSession]
    postman: Postman

    async def send(self, email: str, language: str, next_path: str | None) -> None:
        async with self.sessionmaker() as db:
            person = await services.find_person(db, email)
            if person is None:
                return
            token = await signin.issue_link(db, person.id)
            await db.commit()
        await self.postman.sign_in_link(person, token, language=language, next_path=next_path)


async def client_over_limit(request: Request, db: AsyncSession, secret: bytes) -> bool:
    """Counts one sign-in request from this client (the form's, or a single sign-on start's: one
    counter for both) in the database, so the limit holds across replicas; True past the limit."""
    client = request.client.host if request.client else "unknown"
    return await ratelimit.over_limit(db, ratelimit.rate_key(secret, "client", client), signin.RATE_LIMIT_PER_CLIENT)


async def _link_needs_sso(db: AsyncSession, link: signin.LinkPreview, providers: sso.Providers) -> bool:
    """With no provider configured (any more) a requirement cannot be met: refusing links then would
    lock the community out, the facilitators who could lift it included. No query either."""
    assert link.person_id is not None
    return bool(providers.configured) and await sso.sso_only(db, link.person_id, link.community_id)


def _sso_required() -> Template:
    message = _("Your community asks its members to sign in with their organisation's account, not with a link by e-mail. "
                "Use the button below.")  # fmt: skip
    return page("identity/sso_refused.html", status_code=403, headers=NO_REFERRER, message=message, values={}, errors={})


class SignInController(Controller):
    """Magic-link sign-in. The answer is the same whether an address is known or not."""

    include_in_schema = False

    @get("/")
    async def root(self, request: Request) -> Redirect:
        viewer: Viewer | None = request.user
        if viewer is None:
            return Redirect("/signin")
        place_ids = [p.community_id for p in viewer.places]
        if viewer.community_id in place_ids:
            return Redirect(f"/c/{viewer.community_id}")
        if len(place_ids) == 1:
            return Redirect(f"/c/{place_ids[0]}")
        return Redirect("/communities")

    @get("/signin")
    async def sign_in_form(self, next_path: Annotated[str | None, QueryParameter(name="next")] = None) -> Template:
        return page("identity/sign_in.html", values={"next": local_path(next_path) or ""}, errors={})

    @post("/signin")
    async def request_link(
        self,
        request: Request,
        data: Form,
        db_session: NamedDependency[AsyncSession],
        secret: NamedDependency[bytes],
        sign_in_links: NamedDependency[SignInLinks],
    ) -> Template:
        raw = form_text(data, "email")
        next_path = local_path(form_text(data, "next"))
        values = {"email": raw, "next": next_path or ""}
        try:
            email = services.normalize_email(raw)
        except InvalidInput as exc:
            return page("identity/sign_in.html", status_code=422, values=values, errors=exc.errors)
        if await client_over_limit(request, db_session, secret):
            return page(
                "identity/sign_in.html",
                status_code=429,
                values=values,
                errors={"email": _("Too many sign-in requests from here. Wait 15 minutes, then try again.")},
            )
        # Past the per-address limit the page answers as always but sends nothing more: the same
        # answer for strangers, and no way to flood someone's inbox or lock them out with a message.
        address_ok = not await ratelimit.over_limit(
            db_session, ratelimit.rate_key(secret, "address", email), signin.RATE_LIMIT_PER_ADDRESS
        )
        # Known or not, the lookup, the link and the mail happen after the response (SignInLinks).
        background = BackgroundTask(sign_in_links.send, email, i18n.current_language(), next_path) if address_ok else None
        return page("identity/check_inbox.html", background=background, email=email)

    @get("/signin/{token:str}")
    async def confirm_link(
        self,
        token: FromPath[str],
        db_session: NamedDependency[AsyncSession],
        sso_providers: NamedDependency[sso.Providers],
        next_path: Annotated[str | None, QueryParameter(name="next")] = None,
    ) -> Template:
        """Opening the link only shows a button: mail scanners that fetch links cannot use it up."""
        link = await signin.peek_link(db_session, token)
        if link is None:
            return page("identity/link_invalid.html", status_code=410, headers=NO_REFERRER, values={}, errors={})
        if await _link_needs_sso(db_session, link, sso_providers):
            return _sso_required()
        return page(
            "identity/confirm_link.html", headers=NO_REFERRER, token=token, link=link, next=local_path(next_path) or ""
        )

    @post("/signin/{token:str}")
    async def follow_link(
        self,
        request: Request,
        token: FromPath[str],
        data: Form,
        db_session: NamedDependency[AsyncSession],
        settings: NamedDependency[Settings],
        secret: NamedDependency[bytes],
        sso_providers: NamedDependency[sso.Providers],
    ) -> Redirect | Template:
        link = await signin.peek_link(db_session, token)
        if link is not None and await _link_needs_sso(db_session, link, sso_providers):
            return _sso_required()  # checked before the link is used: it changes nothing
        signed_in = await signin.redeem_link(db_session, token)
        if signed_in is None:
            return page("identity/link_invalid.html", status_code=410, headers=NO_REFERRER, values={}, errors={})
        if request.auth:  # whoever was signed in on this browser before is signed out
            await signin.end_session(db_session, request.auth)
        # A fresh token at every sign-in: a session id planted before sign-in is worthless.
        session_token = await signin.start_session(db_session, signed_in.person_id, signed_in.community_id)
        next_path = local_path(form_text(data, "next"))
        target = next_path or (f"/c/{signed_in.community_id}" if signed_in.community_id else "/")
        return Redirect(
            target,
            status_code=303,
            headers=NO_REFERRER,
            cookies=session_cookies(session_token, secret.hex(), settings.secure_cookies),
        )

    @get("/language/{code:str}")
    async def choose_language(
        self,
        code: FromPath[str],
        settings: NamedDependency[Settings],
        next_path: Annotated[str | None, QueryParameter(name="next")] = None,
    ) -> Redirect:
        """Switch the language of this browser (a signed-in person sets theirs in the profile)."""
        if code not in i18n.LANGUAGES:
            raise NotFoundException(_("That language is not available."))
        response = Redirect(local_path(next_path) or "/signin")
        response.set_cookie(
            LANGUAGE_COOKIE, code, max_age=365 * 24 * 3600, path="/", samesite="lax", httponly=True, secure=settings.secure_cookies
        )
        return response

    @post("/signout")
    async def sign_out(self, request: Request, db_session: NamedDependency[AsyncSession]) -> Redirect:
        if request.auth:
            await signin.end_session(db_session, request.auth)
        response = see_other("/signin")
        forget_session_cookies(response)
        return response
