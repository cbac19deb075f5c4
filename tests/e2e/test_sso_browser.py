"""Single sign-on in a real browser: Chromium, `safespace serve` and oidc-provider-mock, each a
process of its own. The facilitator signs in with the provider, requires single sign-on for the
community, and a member's link by e-mail is then refused with a page offering the provider."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.e2e.conftest import CHROMIUM, demo_served
from tests.safespace.identity.oidc_provider import CLIENT_ID, provider_process

pytestmark = pytest.mark.e2e
FACILITATOR = "mara@climate.example"  # the demo's facilitator


@pytest.fixture
def served_with_sso(served_env: dict[str, str], db, tmp_path: Path) -> Iterator[tuple[str, dict[str, str], str]]:
    with provider_process() as issuer:
        provider = {"id": "corp", "name": "Corp ID", "issuer": issuer, "client_id": CLIENT_ID, "client_secret": "s3cret"}
        env = served_env | {"SAFESPACE_OIDC_PROVIDERS": json.dumps([provider])}
        with demo_served(env, tmp_path) as (base, links):
            yield base, links, issuer


def test_facilitator_signs_in_with_the_provider_and_requires_it(served_with_sso) -> None:
    from playwright.sync_api import expect, sync_playwright

    base, links, issuer = served_with_sso
    answer = httpx.put(f"{issuer}/users/{FACILITATOR}", json={"email": FACILITATOR, "email_verified": True})
    assert answer.status_code == 204
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=CHROMIUM,
            args=["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update"],
        )
        page = browser.new_page(locale="en-GB", viewport={"width": 390, "height": 800})
        page.goto(f"{base}/signin")
        page.get_by_role("link", name="Sign in with Corp ID").click()
        page.locator("input[name=sub]").fill(FACILITATOR)  # the provider's own page: choose the account
        page.get_by_role("button", name="Authorize").click()
        expect(page.get_by_role("heading", name="Climate Policy Practitioners", level=1)).to_be_visible()

        community = page.url.rstrip("/").rsplit("/", 1)[-1]
        page.goto(f"{base}/c/{community}/settings")
        page.get_by_role("link", name="Single sign-on: whether members may still sign in with a link by e-mail").click()
        page.get_by_role("button", name="Require single sign-on").click()
        expect(page.get_by_text("Members now sign in only with their organisation's account.")).to_be_visible()
        page.get_by_role("button", name="Sign out").click()

        page.goto(links["member"])  # a member's link by e-mail: refused, pointing to the provider
        expect(page.get_by_role("heading", name="You are not signed in")).to_be_visible()
        expect(page.get_by_role("link", name="Sign in with Corp ID")).to_be_visible()
        assert page.evaluate("document.documentElement.scrollWidth") <= 390  # no sideways scroll on a phone
        browser.close()
