"""Single sign-on with OpenID Connect, beside magic links (Authlib does the OAuth and the JOSE).

Authorization code with PKCE (S256); `state` ties the provider's answer to the browser that
asked (a cookie) and to one stored attempt (used once); `nonce` ties the ID token to that
attempt. The ID token's signature, issuer, audience and expiry are checked by Authlib against
the provider's published keys. Only an e-mail the provider marks verified is believed, and it
must belong to a person already known here (a member, or someone invited): single sign-on
proves an address, it never creates an account.

The provider learns that someone signed in to Safespace, and when; nothing about what they
answer or share (docs/THREAT_MODEL.md).
"""

from __future__ import annotations

import logging
import secrets
import uuid
import warnings
from dataclasses import dataclass
from datetime import timedelta

import httpx
from authlib.integrations.base_client import BaseApp, OAuthError
from authlib.integrations.base_client.async_app import AsyncOAuth2Mixin
from authlib.integrations.base_client.async_openid import AsyncOpenIDMixin

with warnings.catch_warnings():  # Authlib 1.9 would rather use httpx2; httpx is what we have and test
    warnings.simplefilter("ignore", DeprecationWarning)
    from authlib.integrations.httpx_client import AsyncOAuth2Client
from joserfc.errors import BadSignatureError, ClaimError, ExpiredTokenError, JoseError
from sqlalchemy import delete, select
from sqlalchemy.ext.asyncio import AsyncSession

from safespace import clock
from safespace.errors import InvalidInput
from safespace.i18n import gettext as _
from safespace.identity.members import accept_invitation
from safespace.identity.models import Membership, Person, SsoAttempt, SsoRequired, WebSession
from safespace.identity.services import normalize_email
from safespace.identity.signin import token_hash
from safespace.settings import OIDCProvider

log = logging.getLogger(__name__)

ATTEMPT_TTL = timedelta(minutes=10)  # from the button to the provider's answer
CLOCK_LEEWAY_SECONDS = 60  # for the ID token's exp and iat: clocks drift a little
HTTP_TIMEOUT_SECONDS = 10


class SsoRefused(Exception):
    """The sign-in cannot go on; the message tells the person why and what to do."""


class _Client(AsyncOAuth2Mixin, AsyncOpenIDMixin, BaseApp):
    """Authlib's OpenID Connect client (discovery, PKCE, token request, ID token checks)."""

    client_cls = AsyncOAuth2Client


@dataclass
class Providers:
    """The configured providers, each with its Authlib client. The discovery document and the
    keys are cached in the client: a cache, not state another replica would need."""

    configured: tuple[OIDCProvider, ...]

    def __post_init__(self) -> None:
        self._clients: dict[str, _Client] = {}

    def get(self, provider_id: str) -> OIDCProvider | None:
        return next((p for p in self.configured if p.id == provider_id), None)

    def client(self, provider: OIDCProvider) -> _Client:
        if provider.id not in self._clients:
            self._clients[provider.id] = _Client(
                framework=None,
                name=provider.id,
                client_id=provider.client_id,
                client_secret=provider.client_secret,
                server_metadata_url=provider.issuer.rstrip("/") + "/.well-known/openid-configuration",
                client_kwargs={"scope": "openid email", "code_challenge_method": "S256", "timeout": HTTP_TIMEOUT_SECONDS},
            )
        return self._clients[provider.id]


async def discover(providers: Providers, provider: OIDCProvider) -> str | None:
    """None if the provider's discovery document is there and names the configured issuer; else what is wrong."""
    try:
        metadata = await providers.client(provider).load_server_metadata()
    except (httpx.HTTPError, ValueError) as exc:
        return f"discovery failed ({exc.__class__.__name__}: {exc})"
    if metadata.get("issuer", "").rstrip("/") != provider.issuer.rstrip("/"):
        return f"the provider calls itself {metadata.get('issuer')!r}, not {provider.issuer!r}"
    return None


def callback_url(base_url: str, provider: OIDCProvider) -> str:
    """Where the provider sends the browser back: register this address with the provider."""
    return f"{base_url.rstrip('/')}/signin/sso/{provider.id}/callback"


async def begin(db: AsyncSession, providers: Providers, provider: OIDCProvider, base_url: str, next_path: str | None) -> tuple[str, str]:
    """(the provider's authorization URL, the state for the browser's cookie)."""
    state, nonce, verifier = secrets.token_urlsafe(32), secrets.token_urlsafe(24), secrets.token_urlsafe(48)
    try:
        made = await providers.client(provider).create_authorization_url(
            callback_url(base_url, provider), state=state, nonce=nonce, code_verifier=verifier
        )
    except (httpx.HTTPError, OAuthError, ValueError) as exc:
        log.warning("SSO provider %s unreachable at discovery (%s)", provider.id, exc.__class__.__name__)
        raise SsoRefused(_("%(provider)s cannot be reached just now. Try again in a few minutes, or ask for a link by e-mail.")
                         % {"provider": provider.name}) from None  # fmt: skip
    db.add(
        SsoAttempt(
            state_hash=token_hash(state),
            provider=provider.id,
            nonce=nonce,
            code_verifier=verifier,
            next_path=next_path,
            expires_at=clock.now() + ATTEMPT_TTL,
        )
    )
    await db.flush()
    return made["url"], state


@dataclass(frozen=True)
class Finished:
    person_id: uuid.UUID
    next_path: str | None


async def finish(
    db: AsyncSession, providers: Providers, provider: OIDCProvider, base_url: str, *, state: str, cookie_state: str | None, code: str
) -> Finished:
    """Check the provider's answer and find the person it proves; SsoRefused says why not."""
    if not state or not cookie_state or not secrets.compare_digest(state, cookie_state):
        raise SsoRefused(_("This sign-in was not started in this browser, or it was changed on the way. Start again from the sign-in page."))
    # Claimed once, by one DELETE: a replayed answer (the same code and state again) finds nothing.
    claimed = (
        await db.execute(
            delete(SsoAttempt)
            .where(SsoAttempt.state_hash == token_hash(state), SsoAttempt.provider == provider.id, SsoAttempt.expires_at > clock.now())
            .returning(SsoAttempt.nonce, SsoAttempt.code_verifier, SsoAttempt.next_path)
        )
    ).first()
    if claimed is None:
        raise SsoRefused(_("This sign-in was already used or took longer than 10 minutes. Start again from the sign-in page."))
    claims = await _verified_claims(providers, provider, base_url, code, claimed.nonce, claimed.code_verifier)
    person_id = await _person_for(db, provider, claims)
    return Finished(person_id=person_id, next_path=claimed.next_path)


async def _verified_claims(
    providers: Providers, provider: OIDCProvider, base_url: str, code: str, nonce: str, verifier: str
) -> dict:
    client = providers.client(provider)
    try:
        token = await client.fetch_access_token(redirect_uri=callback_url(base_url, provider), code=code, code_verifier=verifier)
    except OAuthError as exc:  # the provider refused the code: used before, expired, or not ours
        log.warning("SSO provider %s refused the code (%s)", provider.id, exc.error)
        raise SsoRefused(_("%(provider)s did not accept this sign-in (it may have been used already). Start again from the sign-in page.")
                         % {"provider": provider.name}) from None  # fmt: skip
    except httpx.HTTPError as exc:
        log.warning("SSO provider %s unreachable at the token endpoint (%s)", provider.id, exc.__class__.__name__)
        raise SsoRefused(_("%(provider)s cannot be reached just now. Try again in a few minutes, or ask for a link by e-mail.")
                         % {"provider": provider.name}) from None  # fmt: skip
    if "id_token" not in token:
        raise SsoRefused(_("%(provider)s sent no identity token. Ask your operator to check the provider's settings.") % {"provider": provider.name})
    try:
        claims = await client.parse_id_token(token, nonce=nonce, leeway=CLOCK_LEEWAY_SECONDS)
    except JoseError as exc:
        log.warning("SSO provider %s: ID token refused (%s)", provider.id, exc.__class__.__name__)
        raise SsoRefused(_token_problem(exc, provider)) from None
    return dict(claims)


def _token_problem(exc: JoseError, provider: OIDCProvider) -> str:
    """What was wrong with the ID token, in the words of the refusal page."""
    values = {"provider": provider.name}
    if isinstance(exc, BadSignatureError):
        return _("The answer from %(provider)s does not carry a valid signature, so it was not believed. Start again; "
                 "if this happens again, tell your operator.") % values  # fmt: skip
    if isinstance(exc, ExpiredTokenError):
        return _("The answer from %(provider)s has expired. Start again from the sign-in page; if this happens again, "
                 "the clocks of Safespace and the provider may disagree.") % values  # fmt: skip
    if isinstance(exc, ClaimError) and exc.claim in ("aud", "azp"):
        return _("The answer from %(provider)s was meant for another application, so it was not believed. "
                 "Tell your operator.") % values  # fmt: skip
    if isinstance(exc, ClaimError) and exc.claim == "iss":
        return _("The answer did not come from %(provider)s, so it was not believed. Tell your operator.") % values
    return _("The answer from %(provider)s could not be verified, so it was not believed. Start again from the sign-in page.") % values


async def _person_for(db: AsyncSession, provider: OIDCProvider, claims: dict) -> uuid.UUID:
    """The known person the verified address belongs to; their pending invitations are accepted."""
    if claims.get("email_verified") is not True or not claims.get("email"):
        raise SsoRefused(_("%(provider)s has not verified your e-mail address, so it cannot sign you in here. Verify it with "
                           "%(provider)s, or ask for a sign-in link by e-mail.") % {"provider": provider.name})  # fmt: skip
    try:
        email = normalize_email(str(claims["email"]))
    except InvalidInput:
        email = ""
    person = await db.scalar(select(Person).where(Person.email == email)) if email else None
    if person is None:
        raise SsoRefused(_("%(email)s has not been invited to any community here. Ask a facilitator to invite this address.")
                         % {"email": claims["email"]})  # fmt: skip
    invited = await db.scalars(select(Membership.community_id).where(Membership.person_id == person.id, Membership.status == "invited"))
    for community_id in list(invited):
        await accept_invitation(db, person.id, community_id)
    return person.id


async def sso_only(db: AsyncSession, person_id: uuid.UUID, community_id: uuid.UUID | None) -> bool:
    """Whether a magic link must be refused: it is an invitation to a community that requires
    single sign-on, or the person belongs to (or is invited to) one. Both are asked of every link:
    the session an invitation elsewhere starts opens all of the person's communities."""
    mine = select(Membership.community_id).where(Membership.person_id == person_id, Membership.status.in_(("invited", "active")))
    required_here = SsoRequired.community_id.in_(mine)
    if community_id is not None:
        required_here = required_here | (SsoRequired.community_id == community_id)
    return (await db.scalar(select(SsoRequired.community_id).where(required_here).limit(1))) is not None


async def is_required(db: AsyncSession, community_id: uuid.UUID) -> bool:
    return (await db.get(SsoRequired, community_id)) is not None


async def set_required(db: AsyncSession, community_id: uuid.UUID, required: bool, by: uuid.UUID) -> None:
    """Require single sign-on or not. Turning it on signs out the community's other members (a
    session does not record how it began), so each one's next sign-in goes through the provider."""
    row = await db.get(SsoRequired, community_id)
    if required and row is None:
        db.add(SsoRequired(community_id=community_id))
        members = select(Membership.person_id).where(Membership.community_id == community_id, Membership.person_id != by)
        await db.execute(delete(WebSession).where(WebSession.person_id.in_(members)))
    elif not required and row is not None:
        await db.delete(row)
    await db.flush()
