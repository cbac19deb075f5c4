"""Issue 18 end to end in Chromium: a facilitator plans an action from a released statement and
publishes "you said, we did"; a member reads it on a second browser, in the mail and in the chat."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.e2e.conftest import CHROMIUM, demo_served
from tests.safespace.chat.test_chat import receiver  # noqa: F401 - the fixture

pytestmark = pytest.mark.e2e
SUMMARY = "You told us that raising a problem still feels risky. Facilitators will go first."
ACTION = "Every retro opens with five minutes on what went wrong"


@pytest.fixture
def served_with_mail(served_env, settings, db, tmp_path: Path):
    env = served_env | {"SAFESPACE_SMTP_HOST": "127.0.0.1", "SAFESPACE_SMTP_PORT": str(settings.smtp_port), "SAFESPACE_SMTP_SECURITY": "none"}
    with demo_served(env, tmp_path) as served:
        yield served, env


def test_an_action_from_a_result_reaches_members_by_page_mail_and_chat(served_with_mail, inbox, receiver, tmp_path: Path) -> None:  # noqa: F811
    from playwright.sync_api import expect, sync_playwright

    (base, links), env = served_with_mail
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox", "--disable-gpu"])
        facilitator = browser.new_context(viewport={"width": 1280, "height": 900}).new_page()
        facilitator.goto(links["facilitator"])
        with facilitator.expect_navigation():  # its URL is read next
            facilitator.get_by_role("button", name="Continue").click()
        community = facilitator.url.rstrip("/").rsplit("/c/", 1)[1].split("/")[0]

        # The community's chat, set on its settings page.
        facilitator.get_by_role("link", name="Settings").click()
        facilitator.get_by_label("Apprise URL of your chat").fill(receiver.url())
        with facilitator.expect_navigation():  # the form's redirect, before the next page is asked for
            facilitator.get_by_role("button", name="Set the chat").click()

        # The latest closed round of the weekly pulse: "Plan an action" beside its first statement.
        facilitator.goto(f"{base}/c/{community}")
        with facilitator.expect_navigation():  # its URL is read next: the home page's until the click lands
            facilitator.get_by_role("link", name="Weekly pulse: round 52").click()
        results_url = facilitator.url
        facilitator.goto(results_url.replace(f"/c/{community}/rounds/", f"/c/{community}/insights/rounds/").removesuffix("/results"))
        facilitator.get_by_role("link", name="Plan an action", exact=True).first.click()
        facilitator.get_by_label("What will be done").fill(ACTION)
        facilitator.get_by_label("Owner (optional)").fill("Mara Okafor")
        facilitator.get_by_role("button", name="Plan the action").click()
        expect(facilitator.get_by_text("Action planned.")).to_be_visible()
        expect(facilitator.get_by_role("heading", name=ACTION)).to_be_visible()
        facilitator.get_by_role("link", name="See that round").click()
        facilitator.get_by_label("Summary").fill(SUMMARY)
        facilitator.get_by_role("button", name="Publish and mail every member").click()
        expect(facilitator.get_by_text("members get it by mail.")).to_be_visible()
        expect(facilitator.get_by_role("heading", name="You said, we did")).to_be_visible()
        facilitator.screenshot(path=str(tmp_path / "published.png"), full_page=True)

        # A member, in another browser: above the round's results, and on Our results.
        member = browser.new_context(viewport={"width": 390, "height": 844}).new_page()
        member.goto(links["member"])
        member.get_by_role("button", name="Continue").click()
        member.goto(results_url)
        summary = member.locator("#summary")
        expect(summary).to_contain_text(SUMMARY)
        expect(summary).to_contain_text(ACTION)
        member.goto(f"{base}/c/{community}/summary")
        expect(member.get_by_role("heading", name="You said, we did")).to_be_visible()
        expect(member.get_by_text(ACTION)).to_be_visible()
        assert member.evaluate("document.documentElement.scrollWidth <= document.documentElement.clientWidth")

        # Issue 18 item 7: a 0 to 10 question. The facilitator starts a survey of the built-in
        # Recommend instrument and opens a round now; the member answers it on the phone, by keyboard.
        facilitator.goto(f"{base}/c/{community}/surveys")
        facilitator.get_by_label("Title").fill("Would you recommend us")
        facilitator.locator('input[name="instruments"][value="recommend"]').check()
        facilitator.get_by_role("button", name="Create survey").click()
        facilitator.goto(f"{base}/c/{community}/surveys")
        facilitator.get_by_role("link", name="Would you recommend us").click()
        facilitator.get_by_role("link", name="Open a round now").click()
        facilitator.get_by_role("button", name="Open the round now").click()
        rate = facilitator.get_by_role("link", name="Response rate").first.get_attribute("href")
        member.goto(base + rate.removesuffix("/results"))
        question = member.get_by_role("group", name="How likely are you to recommend this community to a colleague?")
        expect(question).to_contain_text("0: Not at all likely")
        expect(question).to_contain_text("10: Extremely likely")
        question.get_by_label("0", exact=True).focus()
        for _step in range(9):  # arrows move through a radio group and choose as they go
            member.keyboard.press("ArrowRight")
        expect(question.get_by_label("9", exact=True)).to_be_checked()
        top = {v: question.get_by_label(v, exact=True).bounding_box()["y"] for v in ("0", "5", "6", "10")}
        assert top["0"] == top["5"] < top["6"] == top["10"], top  # two rows on a phone: 0-5 and 6-10
        assert member.evaluate("document.documentElement.scrollWidth <= document.documentElement.clientWidth")
        member.screenshot(path=str(tmp_path / "recommend-phone.png"), full_page=True)
        member.get_by_role("button", name="Send my answers").click()
        expect(member.get_by_text("Your answers were added to the totals")).to_be_visible(timeout=15_000)
        browser.close()

    # The mail, to every member (sent after the publication's commit, one by one), and the chat
    # post (the schedule).
    def summaries() -> dict:
        return {m["To"]: m for m in inbox.messages if "what we are doing" in m["Subject"]}

    seen, deadline = -1, time.monotonic() + 60
    while len(summaries()) != seen and time.monotonic() < deadline:
        seen = len(summaries())
        time.sleep(2)
    mails = summaries()
    assert "ines@climate.example" in mails and len(mails) > 30
    body = mails["ines@climate.example"].get_body(("plain",)).get_content()
    assert SUMMARY in body and ACTION in body and f"/c/{community}/rounds/" in body
    tick = subprocess.run([sys.executable, "-m", "safespace", "tick"], env=env, capture_output=True, text=True, timeout=120)
    assert tick.returncode == 0, tick.stderr
    posted = [p for p in receiver.posts if "what we are doing" in p["title"]]
    assert len(posted) == 1 and SUMMARY in posted[0]["message"] and ACTION in posted[0]["message"]
