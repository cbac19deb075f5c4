"""Pages of single sign-on: the "Sign in with ..." button's target and the provider's callback."""

from __future__ import annotations

from typing import Annotated

from litestar import Controller, Request, get, post
from litestar.datastructures import Cookie
from litestar.di import NamedDependency
from litestar.exceptions import NotFoundException
from litestar.params import FromPath, QueryParameter
from litestar.response import Redirect, Template
from sqlalchemy.ext.asyncio import AsyncSession

from safespace.audit import entries as audit
from safespace.i18n import gettext as _
from safespace.identity import signin, sso
from safespace.identity.models import Membership
from safespace.identity.sign_in_pages import NO_REFERRER, Form, client_over_limit
from safespace.settings import OIDCProvider, Settings
from safespace.web.guards import facilitator_routes
from safespace.web.pages import form_text, page, see_other
from safespace.web.paths import local_path
from safespace.web.session import Viewer, flash, session_cookies

# The browser's half of `state`: the callback must come back to the browser that pressed the button.
STATE_COOKIE = "safespace_sso"
STATE_PATH = "/signin/sso/"


def _provider(sso_providers: sso.Providers, provider_id: str) -> OIDCProvider:
    provider = sso_providers.get(provider_id)
    if provider is None:
        raise NotFoundException(_("There is no such sign-in provider here."))
    return provider


def refused(message: str, status_code: int = 403) -> Template:
    """The page every refused single sign-on ends on: what went wrong and the ways to sign in."""
    response = page("identity/sso_refused.html", status_code=status_code, headers=NO_REFERRER, message=message, values={}, errors={})
    response.delete_cookie(STATE_COOKIE, path=STATE_PATH)
    return response


class SsoController(Controller):
    """OpenID Connect sign-in (identity/sso.py does the checking)."""

    include_in_schema = False

    # A link, not a form: the browser's next stop is the provider, and our Content-Security-Policy's
    # form-action 'self' stops a form's redirect to another site. What it starts is bound to this
    # browser (the state cookie) and finished only by the provider's answer to it.
    @get("/signin/sso/{provider_id:str}", name="sso-start")
    async def start(
        self,
        request: Request,
        provider_id: FromPath[str],
        db_session: NamedDependency[AsyncSession],
        settings: NamedDependency[Settings],
        secret: NamedDependency[bytes],
        sso_providers: NamedDependency[sso.Providers],
        next_path: Annotated[str | None, QueryParameter(name="next")] = None,
    ) -> Redirect | Template:
        provider = _provider(sso_providers, provider_id)
        # Counted with the requests for links by e-mail: each start stores an attempt and asks the provider.
        if await client_over_limit(request, db_session, secret):
            return refused(_("Too many sign-in requests from here. Wait 15 minutes, then try again."), status_code=429)
        try:
            url, state = await sso.begin(db_session, sso_providers, provider, settings.base_url, local_path(next_path))
        except sso.SsoRefused as exc:
            return refused(str(exc), status_code=503)
        cookie = Cookie(
            key=STATE_COOKIE,
            value=state,
            httponly=True,
            samesite="lax",  # sent on the provider's top-level redirect back to us
            secure=settings.secure_cookies,
            path=STATE_PATH,
            max_age=int(sso.ATTEMPT_TTL.total_seconds()),
        )
        return Redirect(url, status_code=303, headers=NO_REFERRER, cookies=[cookie])

    @get("/signin/sso/{provider_id:str}/callback", name="sso-callback")
    async def callback(
        self,
        request: Request,
        provider_id: FromPath[str],
        db_session: NamedDependency[AsyncSession],
        settings: NamedDependency[Settings],
        secret: NamedDependency[bytes],
        sso_providers: NamedDependency[sso.Providers],
        code: Annotated[str, QueryParameter()] = "",
        returned_state: Annotated[str, QueryParameter(name="state")] = "",  # "state" is Litestar's own name
        error: Annotated[str, QueryParameter()] = "",
    ) -> Redirect | Template:
        provider = _provider(sso_providers, provider_id)
        if error or not code:  # the person cancelled at the provider, or the provider refused
            return refused(_("%(provider)s did not sign you in. Start again from the sign-in page.") % {"provider": provider.name})
        try:
            done = await sso.finish(
                db_session, sso_providers, provider, settings.base_url, state=returned_state, cookie_state=request.cookies.get(STATE_COOKIE), code=code
            )
        except sso.SsoRefused as exc:
            return refused(str(exc))
        if request.auth:  # whoever was signed in on this browser before is signed out
            await signin.end_session(db_session, request.auth)
        session_token = await signin.start_session(db_session, done.person_id, None)
        response = Redirect(
            done.next_path or "/",
            status_code=303,
            headers=NO_REFERRER,
            cookies=session_cookies(session_token, secret.hex(), settings.secure_cookies),
        )
        response.delete_cookie(STATE_COOKIE, path=STATE_PATH)
        return response


class SsoSettingController(Controller):
    """A facilitator requires single sign-on for the community's members, or stops requiring it."""

    include_in_schema = False
    path = "/c/{community_id:uuid}/settings/sso"
    dependencies = facilitator_routes()

    @get("/", name="sso-setting")
    async def show(self, facilitation: NamedDependency[Membership], db_session: NamedDependency[AsyncSession]) -> Template:
        required = await sso.is_required(db_session, facilitation.community_id)
        return page("identity/sso_setting.html", community=facilitation.community, required=required)

    @post("/", name="sso-require")
    async def require(
        self,
        request: Request,
        data: Form,
        facilitation: NamedDependency[Membership],
        viewer: NamedDependency[Viewer],
        db_session: NamedDependency[AsyncSession],
        sso_providers: NamedDependency[sso.Providers],
    ) -> Redirect:
        community = facilitation.community
        wanted = form_text(data, "require") == "yes"
        if wanted and not sso_providers.configured:
            await flash(db_session, viewer, _("No sign-in provider is configured here; ask your operator to set one up first."), "error")
            return see_other(request.app.route_reverse("sso-setting", community_id=community.id))
        await sso.set_required(db_session, community.id, wanted, viewer.person_id)
        await audit.record(db_session, community.id, viewer.email, "sso", "required" if wanted else "optional")
        message = _("Members now sign in only with their organisation's account.") if wanted else _("Members may sign in with a link by e-mail again.")
        await flash(db_session, viewer, message)
        return see_other(request.app.route_reverse("sso-setting", community_id=community.id))
