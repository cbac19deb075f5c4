"""Issue 20 items 4 and 5 in Chromium on a 390 px phone: a facilitator chooses how long the demo
keeps its year of results and confirms what that deletes, and the schedule's pass deletes it; they
add a webhook and copy its secret, shown once; a member deletes their account with the keyboard
alone, on a second browser."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from tests.e2e.conftest import CHROMIUM, demo_served
from tests.e2e.test_browser import tick

pytestmark = pytest.mark.e2e
PHONE = {"width": 390, "height": 844}


def fits_the_phone(page) -> None:
    assert page.evaluate("document.documentElement.scrollWidth") <= PHONE["width"], page.url


@pytest.fixture
def served_for_webhooks(served_env, db, tmp_path: Path):
    """The demo, with webhooks allowed to a local address (nothing listens there: deliveries fail)."""
    env = served_env | {"SAFESPACE_WEBHOOK_ALLOW_PRIVATE": "true"}
    with demo_served(env, tmp_path) as served:
        yield served, env


def test_retention_and_a_webhook_on_a_phone_and_an_account_deleted_by_keyboard(served_for_webhooks, tmp_path: Path) -> None:
    from playwright.sync_api import expect, sync_playwright

    (base, links), served_env = served_for_webhooks
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox", "--disable-gpu"])
        facilitator = browser.new_context(viewport=PHONE).new_page()
        facilitator.goto(links["facilitator"])
        facilitator.get_by_role("button", name="Continue").click()
        community = re.search(r"/c/([0-9a-f-]{36})", facilitator.url).group(1)
        facilitator.goto(f"{base}/c/{community}/settings#retention")
        expect(facilitator.get_by_text("Now: kept until someone deletes them.")).to_be_visible()
        facilitator.get_by_label("Keep for").select_option(label="3 months")
        facilitator.get_by_role("button", name="Save how long to keep").click()
        # The demo holds a year of weekly rounds: the page says what goes before anything does.
        asked = facilitator.get_by_role("alert")
        expect(asked).to_contain_text("Keeping 91 days deletes, at the next pass of the schedule:")
        deleting = int(re.search(r"(\d+) closed rounds", asked.inner_text()).group(1))
        assert deleting > 30
        fits_the_phone(facilitator)
        facilitator.screenshot(path=str(tmp_path / "retention-asked-390.png"), full_page=True)
        facilitator.get_by_role("button", name="Yes, delete them").click()
        expect(facilitator.get_by_text("Kept for 91 days from now on.")).to_be_visible()
        expect(facilitator.get_by_text(f"The next pass deletes {deleting} closed rounds", exact=False)).to_be_visible()

        tick(served_env)
        facilitator.reload()
        expect(facilitator.get_by_text("Nothing is old enough to be deleted yet.")).to_be_visible()
        facilitator.goto(f"{base}/c/{community}/audit")
        expect(facilitator.get_by_text(f"deleted {deleting} rounds", exact=False)).to_be_visible()
        fits_the_phone(facilitator)

        # A webhook: its secret is shown once, whole, on the phone; a test event to an address where
        # nothing listens shows as failed on the next load.
        facilitator.goto(f"{base}/c/{community}/settings")
        facilitator.get_by_role("link", name="Webhooks:", exact=False).click()
        facilitator.get_by_label("HTTPS address").fill("https://127.0.0.1:9/safespace")
        facilitator.get_by_label("a round closes", exact=False).check()
        facilitator.get_by_role("button", name="Add the endpoint").click()
        secret = facilitator.locator("code.secret")
        expect(secret).to_have_text(re.compile(r"^whsec_[A-Za-z0-9_-]{43}$"))
        assert secret.bounding_box()["x"] + secret.bounding_box()["width"] <= PHONE["width"]
        fits_the_phone(facilitator)
        shown = secret.inner_text()
        # The form answers with a redirect to this page: reloading before that navigation is done
        # reloads a page that is being replaced (Chromium: "Not attached to an active page").
        with facilitator.expect_navigation():
            facilitator.get_by_role("button", name="Send a test event").click()
        failed = facilitator.get_by_text("The last delivery failed", exact=False)
        for _ in range(20):  # the test event goes after the answer: reload as a facilitator would
            facilitator.reload()
            if failed.count():
                break
            facilitator.wait_for_timeout(500)
        expect(failed).to_be_visible()
        assert shown not in facilitator.content()  # never shown again
        fits_the_phone(facilitator)

        # A member, on a browser of their own, deletes their account without a mouse.
        member = browser.new_context(viewport=PHONE).new_page()
        member.goto(links["member"])
        member.get_by_role("button", name="Continue").click()
        member.goto(f"{base}/profile")
        address = re.search(r"Signed in as (\S+)\.", member.get_by_text("Signed in as").inner_text()).group(1)
        fits_the_phone(member)
        field = member.get_by_label(f"Type your address to confirm: {address}")
        field.focus()
        member.keyboard.type("not-" + address)
        member.keyboard.press("Enter")
        expect(member.get_by_text("Type your address exactly as shown above to confirm.")).to_be_visible()
        field = member.get_by_label(f"Type your address to confirm: {address}")
        field.focus()
        member.keyboard.press("Control+A")
        member.keyboard.type(address)
        member.keyboard.press("Tab")  # to the button, as a keyboard user goes
        expect(member.get_by_role("button", name="Delete my account")).to_be_focused()
        member.keyboard.press("Enter")
        expect(member.get_by_role("heading", name="Your account is deleted")).to_be_visible()
        fits_the_phone(member)
        member.goto(f"{base}/profile")
        assert "/signin" in member.url  # the session went with the account
        browser.close()
