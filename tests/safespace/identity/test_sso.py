"""Single sign-on against a real OpenID Connect provider process (oidc-provider-mock): what
signs a known person in, and every answer that must not, each refused with a page that says why."""

from __future__ import annotations

import base64
import hashlib
import json
import os
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator
from urllib.parse import parse_qsl, urlencode, urlsplit

import httpx
import msgspec
import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from safespace.app import create_app
from safespace.audit.models import AuditEntry
from safespace.identity import services
from safespace.identity.models import Membership
from safespace.settings import Settings
from tests.conftest import browser_like, free_port
from tests.helpers import make_community, post_form, sign_in
from tests.safespace.identity.oidc_provider import CLIENT_ID, Tampering, provider_process, proxy_to


@pytest.fixture(scope="module")
def provider() -> Iterator[tuple[str, Tampering]]:
    """The provider, reached through the proxy (which forwards as is unless a test says otherwise)."""
    with provider_process() as upstream, proxy_to(upstream) as (url, tampering):
        yield url, tampering


@pytest.fixture(scope="module")
def late_provider() -> Iterator[str]:
    """A provider whose ID tokens expired five minutes before they were issued."""
    with provider_process("--token-max-age=-300") as url:
        yield url


@pytest.fixture
def tampering(provider: tuple[str, Tampering]) -> Iterator[Tampering]:
    provider[1].mode = None
    yield provider[1]
    provider[1].mode = None


@pytest.fixture
async def sso_client(settings: Settings, db: AsyncSession, provider, late_provider) -> AsyncIterator[httpx.AsyncClient]:
    configured = [
        {"id": "corp", "name": "Corp ID", "issuer": provider[0], "client_id": CLIENT_ID, "client_secret": "s3cret"},
        {"id": "late", "name": "Late ID", "issuer": late_provider, "client_id": CLIENT_ID, "client_secret": "s3cret"},
    ]
    with_sso = msgspec.structs.replace(settings, oidc_providers=json.dumps(configured))
    async with browser_like(create_app(with_sso)) as client:
        yield client


def set_user(issuer: str, email: str, verified: bool = True) -> None:
    """The provider's account for `email` (its subject is the address)."""
    answer = httpx.put(f"{issuer}/users/{email}", json={"email": email, "email_verified": verified})
    assert answer.status_code == 204, answer.text


async def at_provider(client: httpx.AsyncClient, email: str, provider_id: str = "corp") -> str:
    """Press "Sign in with ...", then choose the account at the provider; returns the callback path."""
    started = await client.get(f"/signin/sso/{provider_id}")
    assert started.status_code == 303, started.text
    authorize = client.authorize_url = started.headers["location"]
    asked = dict(parse_qsl(urlsplit(authorize).query))
    # PKCE (S256) and a nonce in every request: a stolen code is useless without the verifier.
    assert asked["code_challenge_method"] == "S256" and len(asked["code_challenge"]) == 43 and asked["nonce"] and asked["state"]
    chosen = httpx.post(authorize, data={"sub": email})
    assert chosen.status_code == 302, chosen.text
    callback = chosen.headers["location"]
    assert callback.startswith("http://testserver.local/signin/sso/"), callback
    return callback.removeprefix("http://testserver.local")


async def signed_in_as(client: httpx.AsyncClient) -> str | None:
    profile = await client.get("/profile")
    return None if profile.status_code != 200 else profile.text


async def test_sign_in_page_offers_each_provider(sso_client) -> None:
    page = await sso_client.get("/signin")
    assert "Sign in with Corp ID" in page.text and "Sign in with Late ID" in page.text


async def test_member_signs_in_with_a_verified_address(sso_client, db: AsyncSession, provider, tampering) -> None:
    world = await make_community(db, teams={"Harbour": ["ana@x.org"]})
    set_user(provider[0], "ana@x.org")
    callback = await at_provider(sso_client, "ana@x.org")
    done = await sso_client.get(callback)
    assert done.status_code == 303, done.text
    # The code was redeemed with the verifier of this sign-in's PKCE challenge (RFC 7636, S256).
    challenge = dict(parse_qsl(urlsplit(sso_client.authorize_url).query))["code_challenge"]
    verifier = tampering.token_requests[-1]["code_verifier"]
    assert base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode() == challenge
    home = await sso_client.get("/")
    assert home.headers["location"] == f"/c/{world.community.id}"
    assert "ana@x.org" in (await signed_in_as(sso_client) or "")


async def test_invitation_is_accepted_by_single_sign_on(sso_client, db: AsyncSession, provider) -> None:
    world = await make_community(db)
    person, _ = await services.get_or_create_person(db, "new@x.org")
    services.add_membership(db, world.community.id, person.id, None, "invited")
    await db.commit()
    set_user(provider[0], "new@x.org")
    done = await sso_client.get(await at_provider(sso_client, "new@x.org"))
    assert done.status_code == 303
    status = await db.scalar(select(Membership.status).where(Membership.person_id == person.id).execution_options(populate_existing=True))
    assert status == "active"


async def refused(client: httpx.AsyncClient, path: str, words: str) -> None:
    answer = await client.get(path)
    assert answer.status_code == 403, answer.text
    assert words in answer.text, answer.text
    assert await signed_in_as(client) is None, "a refused sign-in must not sign anyone in"


async def test_broken_signature_is_refused(sso_client, db: AsyncSession, provider, tampering) -> None:
    await make_community(db, teams={"Harbour": ["ana@x.org"]})
    set_user(provider[0], "ana@x.org")
    callback = await at_provider(sso_client, "ana@x.org")
    tampering.mode = "signature"
    await refused(sso_client, callback, "does not carry a valid signature")


async def test_token_for_another_application_is_refused(sso_client, db: AsyncSession, provider, tampering) -> None:
    await make_community(db, teams={"Harbour": ["ana@x.org"]})
    set_user(provider[0], "ana@x.org")
    tampering.mode = "audience"
    callback = await at_provider(sso_client, "ana@x.org")
    await refused(sso_client, callback, "meant for another application")


async def test_expired_token_is_refused(sso_client, db: AsyncSession, late_provider) -> None:
    await make_community(db, teams={"Harbour": ["ana@x.org"]})
    set_user(late_provider, "ana@x.org")
    callback = await at_provider(sso_client, "ana@x.org", "late")
    await refused(sso_client, callback, "has expired")


async def test_replayed_answer_and_replayed_code_are_refused(sso_client, db: AsyncSession, provider) -> None:
    await make_community(db, teams={"Harbour": ["ana@x.org"]})
    set_user(provider[0], "ana@x.org")
    callback = await at_provider(sso_client, "ana@x.org")
    state_cookie = sso_client.cookies.get("safespace_sso")
    assert (await sso_client.get(callback)).status_code == 303
    await post_form(sso_client, "/signout", {})
    # The same answer again, with the browser's state cookie put back: the attempt is used up.
    sso_client.cookies.set("safespace_sso", state_cookie, domain="testserver.local", path="/signin/sso/")
    await refused(sso_client, callback, "already used")
    # The old code with a fresh, valid state: the provider refuses a code it has already redeemed.
    fresh = await at_provider(sso_client, "ana@x.org")
    query = dict(parse_qsl(urlsplit(fresh).query))
    old_code = dict(parse_qsl(urlsplit(callback).query))["code"]
    await refused(sso_client, "/signin/sso/corp/callback?" + urlencode({"code": old_code, "state": query["state"]}), "did not accept")


async def test_unverified_address_is_refused(sso_client, db: AsyncSession, provider) -> None:
    await make_community(db, teams={"Harbour": ["ana@x.org"]})
    set_user(provider[0], "ana@x.org", verified=False)
    await refused(sso_client, await at_provider(sso_client, "ana@x.org"), "has not verified your e-mail address")


async def test_changed_state_is_refused(sso_client, db: AsyncSession, provider) -> None:
    await make_community(db, teams={"Harbour": ["ana@x.org"]})
    set_user(provider[0], "ana@x.org")
    callback = await at_provider(sso_client, "ana@x.org")
    parts = urlsplit(callback)
    query = dict(parse_qsl(parts.query)) | {"state": "forged-by-someone-else"}
    await refused(sso_client, parts.path + "?" + urlencode(query), "was not started in this browser")


async def test_unknown_address_gets_a_clear_page(sso_client, db: AsyncSession, provider) -> None:
    await make_community(db)
    set_user(provider[0], "stranger@elsewhere.org")
    await refused(sso_client, await at_provider(sso_client, "stranger@elsewhere.org"), "has not been invited")


async def test_community_requiring_sso_refuses_magic_links(sso_client, db: AsyncSession, provider) -> None:
    world = await make_community(db, teams={"Harbour": ["ana@x.org"]})
    await sign_in(sso_client, db, "ana@x.org")  # ana's session from a link, before it is required
    ana_cookie = sso_client.cookies.get("safespace_session")
    sso_client.cookies.clear()
    await sign_in(sso_client, db, world.facilitator)
    turned = await post_form(sso_client, f"/c/{world.community.id}/settings/sso", {"require": "yes"})
    assert turned.status_code == 303
    assert (await db.scalar(select(AuditEntry.detail).where(AuditEntry.kind == "sso"))) == "required"
    assert (await sso_client.get("/profile")).status_code == 200  # the facilitator who turned it on stays signed in
    facilitator_cookie = sso_client.cookies.get("safespace_session")
    sso_client.cookies.set("safespace_session", ana_cookie, domain="testserver.local", path="/")
    assert (await sso_client.get("/profile")).status_code == 302  # ana's link session has ended
    sso_client.cookies.set("safespace_session", facilitator_cookie, domain="testserver.local", path="/")
    await post_form(sso_client, "/signout", {})
    ana = await services.find_person(db, "ana@x.org")
    from safespace.identity import signin

    token = await signin.issue_link(db, ana.id)
    await db.commit()
    for answer in (await sso_client.get(f"/signin/{token}"), await post_form(sso_client, f"/signin/{token}", {})):
        assert answer.status_code == 403
        assert 'href="/signin/sso/corp"' in answer.text and "not with a link by e-mail" in answer.text
    assert await signed_in_as(sso_client) is None
    set_user(provider[0], "ana@x.org")
    assert (await sso_client.get(await at_provider(sso_client, "ana@x.org"))).status_code == 303


def test_cli_checks_each_provider_and_prints_its_redirect_uri(provider, tmp_path) -> None:
    good = {"id": "corp", "name": "Corp ID", "issuer": provider[0], "client_id": CLIENT_ID, "client_secret": "s3cret"}
    gone = good | {"id": "gone", "issuer": f"http://127.0.0.1:{free_port()}"}
    env = os.environ | {"SAFESPACE_DATA_DIR": str(tmp_path), "SAFESPACE_BASE_URL": "https://safespace.example.org"}
    for providers, code in (([good], 0), ([good, gone], 1)):
        done = subprocess.run([sys.executable, "-m", "safespace", "sso-providers"], env=env | {"SAFESPACE_OIDC_PROVIDERS": json.dumps(providers)},
                              capture_output=True, text=True, timeout=60)  # fmt: skip
        assert done.returncode == code, done.stderr
        assert "corp (Corp ID): discovery OK; redirect URI https://safespace.example.org/signin/sso/corp/callback" in done.stdout
    assert "gone (Corp ID): discovery failed" in done.stdout and "fix their issuer URL" in done.stderr


async def test_sign_in_starts_are_limited_per_client(sso_client, db: AsyncSession, still_clock) -> None:
    await make_community(db)
    answers = [(await sso_client.get("/signin/sso/corp")).status_code for _ in range(21)]
    assert answers == [303] * 20 + [429]
    assert "Too many sign-in requests from here" in (await sso_client.get("/signin/sso/corp")).text


async def test_invitation_elsewhere_is_no_way_round_required_sso(sso_client, db: AsyncSession) -> None:
    """An invitation link to a community that does not require single sign-on still starts a session
    that opens every community of the person: refused too, if one of them requires it."""
    from safespace.identity import signin, sso

    required = await make_community(db, teams={"Harbour": ["ana@x.org"]})
    await sso.set_required(db, required.community.id, True, by=(await services.find_person(db, required.facilitator)).id)
    other = await make_community(db, name="Open Circle", facilitator="bo@x.org")
    ana = await services.find_person(db, "ana@x.org")
    services.add_membership(db, other.community.id, ana.id, None, "invited")
    token = await signin.issue_link(db, ana.id, other.community.id, ttl=signin.INVITATION_LINK_TTL)
    await db.commit()
    for answer in (await sso_client.get(f"/signin/{token}"), await post_form(sso_client, f"/signin/{token}", {})):
        assert answer.status_code == 403
        assert "not with a link by e-mail" in answer.text
    assert await signed_in_as(sso_client) is None


async def test_links_work_again_once_no_provider_is_configured(client, db: AsyncSession) -> None:
    """A community that required single sign-on, after the operator removed every provider: its
    members (its facilitators too) sign in by link again rather than being locked out."""
    from safespace.identity import sso

    world = await make_community(db, teams={"Harbour": ["ana@x.org"]})
    await sso.set_required(db, world.community.id, True, by=(await services.find_person(db, world.facilitator)).id)
    await db.commit()
    for address in ("ana@x.org", world.facilitator):
        await sign_in(client, db, address)
        assert await signed_in_as(client) is not None
