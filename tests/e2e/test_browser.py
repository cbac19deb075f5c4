"""A real browser (Debian's Chromium, driven by Playwright) against the app served by uvicorn."""

from __future__ import annotations

import re
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

from safespace.demo_rounds import PAST_ROUNDS
from tests.e2e.conftest import CHROMIUM

pytestmark = pytest.mark.e2e
OPEN_ROUND = PAST_ROUNDS + 1  # the demo's open round of its weekly pulse


def test_member_signs_in_and_switches_to_spanish(served, tmp_path: Path) -> None:
    from playwright.sync_api import expect, sync_playwright

    base, links = served
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=CHROMIUM,
            args=["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update"],
        )
        page = browser.new_page(locale="en-GB", viewport={"width": 1100, "height": 800})
        dialogs: list[str] = []
        page.on("dialog", lambda dialog: (dialogs.append(dialog.message), dialog.dismiss()))

        page.goto(links["member"])
        expect(page.get_by_role("heading", name="Join Climate Policy Practitioners")).to_be_visible()
        page.get_by_role("button", name="Continue").click()
        expect(page.get_by_role("heading", name="Climate Policy Practitioners", level=1)).to_be_visible()
        expect(page.get_by_text("We help each other design climate policy")).to_be_visible()
        page.screenshot(path=str(tmp_path / "home.png"), full_page=True)

        page.get_by_role("link", name="Ines Duarte").click()
        expect(page.get_by_role("heading", name="Your profile")).to_be_visible()
        page.get_by_label("Español").check()
        page.get_by_role("button", name="Save profile").click()

        expect(page.get_by_role("heading", name="Tu perfil")).to_be_visible()
        expect(page.get_by_text("Se ha guardado tu perfil.")).to_be_visible()
        assert page.locator("html").get_attribute("lang") == "es"
        page.get_by_role("link", name="Safespace", exact=True).click()
        expect(page.get_by_role("heading", name="Nuestra visión")).to_be_visible()
        page.screenshot(path=str(tmp_path / "home-es.png"), full_page=True)

        page.get_by_role("button", name="Cerrar sesión").click()
        # Signed out, the page follows the browser's language again.
        expect(page.get_by_role("heading", name="Sign in")).to_be_visible()
        assert dialogs == []
        browser.close()


def test_facilitator_invites_from_the_roster(served, tmp_path: Path) -> None:
    from playwright.sync_api import expect, sync_playwright

    base, links = served
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox", "--disable-gpu"])
        page = browser.new_page(viewport={"width": 390, "height": 844})  # a phone
        page.goto(links["facilitator"])
        page.get_by_role("button", name="Continue").click()
        page.get_by_role("link", name="Members").click()
        expect(page.locator("td[data-label]", has_text=re.compile(r"^hana@climate\.example$"))).to_be_visible()
        page.get_by_label("Email addresses").fill("new.person@climate.example, not-an-address")
        page.get_by_label("Team for this batch").select_option(label="Energy")
        page.get_by_role("button", name="Send invitations").click()
        expect(page.get_by_text("1 invitation sent.")).to_be_visible()
        expect(page.locator("#f-addresses-error")).to_contain_text("not-an-address")
        expect(page.locator("td[data-label]", has_text=re.compile(r"^new\.person@climate\.example$"))).to_be_visible()
        page.screenshot(path=str(tmp_path / "members-phone.png"), full_page=True)
        browser.close()


def _answer_demo_round(page) -> None:
    from playwright.sync_api import expect

    expect(page.get_by_text("0 of 7 answered")).to_be_visible()
    questions = page.locator("fieldset.likert")
    expect(questions).to_have_count(7)
    for i in range(7):
        questions.nth(i).get_by_label("Agree", exact=True).check()
    questions.nth(4).get_by_label("Prefer not to answer").check()
    expect(page.get_by_text("7 of 7 answered")).to_be_visible()
    page.get_by_label("What one thing would make it safer").fill("Celebrate the lessons, not only the wins.")


def _database_after(database_url: str, round_number: int) -> dict:
    """What the open demo round holds now: ledger, tally, spent tokens, and every table's rows."""
    import asyncio

    from sqlalchemy import text
    from sqlalchemy.ext.asyncio import create_async_engine

    async def read() -> dict:
        engine = create_async_engine(database_url)
        async with engine.connect() as connection:
            round_id = (await connection.execute(text("SELECT id FROM round WHERE number = :n"), {"n": round_number})).scalar()
            counts = {
                name: (await connection.execute(text(f"SELECT count(*) FROM {name} WHERE round_id = :r"), {"r": round_id})).scalar()
                for name in ("participation", "spent_token", "pending_comment")
            }
            counts["tallied"] = (
                await connection.execute(
                    text("SELECT max(respondents) FROM tally WHERE round_id = :r AND group_key = 'community'"), {"r": round_id}
                )
            ).scalar()
            counts["ines"] = str((await connection.execute(text("SELECT id FROM person WHERE email = 'ines@climate.example'"))).scalar())
            names = (await connection.execute(text(
                "SELECT name FROM sqlite_master WHERE type = 'table'" if engine.dialect.name == "sqlite"
                else "SELECT tablename FROM pg_tables WHERE schemaname = 'public'"
            ))).scalars().all()  # fmt: skip
            counts["tables"] = {name: repr((await connection.execute(text(f"SELECT * FROM {name}"))).all()) for name in names}
        await engine.dispose()
        return counts

    return asyncio.run(read())


@pytest.mark.postgresql_too
def test_member_answers_later_in_private_mode(served, served_env, tmp_path: Path) -> None:
    """Home fetches the token; the member closes the tab, comes back and answers with it, without
    cookies. The tally counts one more, the spent table has one more hash, and no table row or
    log line holds both the member and that hash."""
    import base64
    import hashlib
    import json

    from playwright.sync_api import expect, sync_playwright

    base, links = served
    before = _database_after(served_env["SAFESPACE_DATABASE_URL"], OPEN_ROUND)
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox", "--disable-gpu"])
        context = browser.new_context(viewport={"width": 1000, "height": 900})
        page = context.new_page()
        problems: list[str] = []
        page.on("console", lambda message: problems.append(message.text) if message.type == "error" else None)
        page.on("pageerror", lambda error: problems.append(str(error)))
        page.goto(links["member"])
        page.get_by_role("button", name="Continue").click()
        expect(page.get_by_text("Your answer token for this round is ready in this browser")).to_be_visible()
        fingerprint = re.search(r"key ([0-9a-f-]{19})", page.locator(".token-status").text_content()).group(1)
        page.get_by_text("Answer-token keys of this round").click()
        expect(page.locator(".round-keys code", has_text=fingerprint)).to_be_visible()  # the published list
        page.close()

        later = context.new_page()  # the tab was closed; the token waited in the browser
        later.on("console", lambda message: problems.append(message.text) if message.type == "error" else None)
        later.goto(base)
        later.get_by_role("link", name="Answer now").click()
        expect(later.locator("#answer-mode")).to_contain_text("Private mode")
        expect(later.locator("#key-fingerprint")).to_contain_text(fingerprint)
        _answer_demo_round(later)
        stored = later.evaluate("Object.entries(localStorage).find(([k]) => k.startsWith('safespace.token.'))[1]")
        token = json.loads(stored)
        later.screenshot(path=str(tmp_path / "answer-private.png"), full_page=True)
        requests: list = []
        later.on("request", lambda request: requests.append(request) if request.url.endswith("/api/v1/answers") else None)
        later.get_by_role("button", name="Send my answers").click()
        expect(later.get_by_text("Your answers were added to the totals with your token")).to_be_visible(timeout=15_000)
        assert requests and "cookie" not in {k.lower() for k in requests[0].all_headers()}  # credentials: "omit"
        assert later.evaluate("Object.keys(localStorage).filter(k => k.startsWith('safespace.token.')).length") == 0
        assert problems == [], problems
        browser.close()

    after = _database_after(served_env["SAFESPACE_DATABASE_URL"], OPEN_ROUND)
    assert after["tallied"] == (before["tallied"] or 0) + 1
    assert after["spent_token"] == before["spent_token"] + 1
    assert after["participation"] == before["participation"] + 1  # the token's issue, hours earlier
    msg = base64.urlsafe_b64decode(token["msg"] + "=" * (-len(token["msg"]) % 4))
    token_hash = hashlib.sha256(msg).digest()
    member_id = str(uuid.UUID(after["ines"]))
    holders = [name for name, dump in after["tables"].items() if repr(token_hash)[2:-1] in dump or token_hash.hex() in dump]
    assert holders == ["spent_token"], holders
    assert member_id not in after["tables"]["spent_token"] and uuid.UUID(member_id).hex not in after["tables"]["spent_token"]
    log = (tmp_path / "serve.log").read_text()
    for secret in (member_id, uuid.UUID(member_id).hex, "ines@climate.example", token["msg"], token["sig"], token_hash.hex()):
        assert secret not in log, secret


def test_member_answers_without_javascript(served, served_env, tmp_path: Path) -> None:
    """No JavaScript: the signed-in form, and the page says what that mode means."""
    from playwright.sync_api import expect, sync_playwright

    base, links = served
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox", "--disable-gpu"])
        page = browser.new_page(viewport={"width": 1000, "height": 900}, java_script_enabled=False)
        page.goto(links["member"])
        page.get_by_role("button", name="Continue").click()
        page.get_by_role("link", name="Answer now").click()
        expect(page.locator("#answer-mode")).to_contain_text("Signed-in mode: JavaScript is off")
        questions = page.locator("fieldset.likert")
        for i in range(7):
            questions.nth(i).get_by_label("Agree", exact=True).check()
        page.get_by_role("button", name="Send my answers").click()
        expect(page.get_by_text("Your answers were added to the totals")).to_be_visible()
        expect(page.get_by_text("You have answered this round")).to_be_visible()
        # Earlier rounds' results are one click away, computed from tallies only.
        page.get_by_role("link", name=f"Weekly pulse: round {PAST_ROUNDS}").click()
        expect(page.locator("dl.figures dt", has_text="Scale score").first).to_be_visible()
        browser.close()


def test_member_shares_a_story_and_finds_it_with_the_receipt(served, served_env, tmp_path: Path) -> None:
    """Write a story that names a member, see the warning, edit, share, keep the receipt, read it back."""
    from playwright.sync_api import expect, sync_playwright

    base, links = served
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox", "--disable-gpu"])
        page = browser.new_page(viewport={"width": 1000, "height": 900})
        page.goto(links["member"])
        page.get_by_role("button", name="Continue").click()
        page.get_by_role("link", name="Read the stories").click()
        expect(page.get_by_role("heading", name="A model we trusted too much")).to_be_visible()
        page.get_by_role("link", name="Share a failure").first.click()
        # The private-mode script runs once the page has loaded; a Share pressed before that is the
        # signed-in form (the fallback without JavaScript), as a slow machine showed.
        page.wait_for_load_state("load")
        page.get_by_label("Title").fill("The workshop I ran alone")
        page.get_by_label("What happened").fill("Sofia offered to help and I said no; the workshop ran over by an hour.")
        page.get_by_label("What you learned").fill("Accepting help is part of the job.")
        page.get_by_role("button", name="Share my story").click()
        # Private mode: the story goes with a token and no cookies; the server's check answers first.
        expect(page.locator("#live-findings")).to_contain_text("a member's name", timeout=15_000)
        expect(page.locator("#live-findings")).not_to_contain_text("Sofia")  # the anonymous check names no one
        page.get_by_label("What happened").fill("A colleague offered to help and I said no; the workshop ran over by an hour.")
        page.get_by_role("button", name="Share it as it is").click()
        expect(page.locator("#receipt-code")).to_have_text(re.compile(r"^\S{4}-\S{4}-\S{4}-\S{4}$"), timeout=15_000)
        code = page.locator("#receipt-code").inner_text()
        assert len(code) == 19 and code.count("-") == 3
        page.screenshot(path=str(tmp_path / "receipt.png"))
        page.get_by_role("link", name="Back to the stories").click()
        expect(page.get_by_text("The workshop I ran alone")).to_have_count(0)  # waits for its batch
        page.get_by_role("link", name="My story (with a receipt code)").click()
        page.get_by_label("Receipt code").fill(code.lower())
        page.get_by_role("button", name="Open my story").click()  # sent with no cookie, after the quiet window
        expect(page.get_by_text("Waiting for release with the next batch.")).to_be_visible(timeout=15_000)
        expect(page.get_by_role("heading", name="The workshop I ran alone")).to_be_visible()

        # Two more stories make a batch of three; the schedule releases it.
        for title in ("Budget lines we misread", "The survey we sent in August"):
            page.goto(f"{base}/c/{community_path(page)}/stories/new")
            page.get_by_label("What happened").fill(f"{title}: it went wrong and we learned.")
            page.get_by_label("Title").fill(title)
            page.get_by_role("button", name="Share my story").click()
            expect(page.locator("#receipt-code")).to_be_visible(timeout=15_000)
            expect(page.get_by_text("Sent in private mode")).to_be_visible(timeout=15_000)
        tick(served_env)
        page.goto(f"{base}/c/{community_path(page)}/stories")
        story = page.locator("article", has=page.get_by_role("heading", name="The workshop I ran alone"))
        expect(story).to_be_visible()
        # Three members' replies go out together with the next pass.
        for i in range(3):
            story.get_by_label("Reply without your name").fill(f"Reply number {i}: same thing happened to us.")
            story.get_by_role("button", name="Send reply").click()
            # Sent with a reply token and no cookies: the form empties and says thanks in place. The
            # third waits for a token taken after the quiet window, then for the window again.
            expect(story.get_by_label("Reply without your name")).to_have_value("", timeout=15_000)
            expect(story.locator(".token-sent")).to_contain_text("nothing links it to you", timeout=15_000)
        tick(served_env)
        page.get_by_role("link", name="My story (with a receipt code)").click()
        page.get_by_label("Receipt code").fill(code)
        page.get_by_role("button", name="Open my story").click()
        expect(page.get_by_text("Reply number 2: same thing happened to us.")).to_be_visible()
        page.screenshot(path=str(tmp_path / "my-story.png"), full_page=True)
        browser.close()


def community_path(page) -> str:
    return re.search(r"/c/([0-9a-f-]{36})", page.url).group(1)


def tick(env: dict[str, str]) -> None:
    result = subprocess.run([sys.executable, "-m", "safespace", "tick"], env=env, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr


def test_trend_charts_at_desktop_and_phone_width(served, tmp_path: Path) -> None:
    """The demo's trend over its last 26 weeks: 25 points and one labelled gap (a holiday week),
    three notes; at 390 px the page does not scroll sideways. Screenshots are kept in the test's folder."""
    from playwright.sync_api import expect, sync_playwright

    base, links = served
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox", "--disable-gpu"])
        page = browser.new_page(viewport={"width": 1280, "height": 900})
        problems: list[str] = []
        page.on("console", lambda message: problems.append(message.text) if message.type == "error" else None)
        page.goto(links["facilitator"])
        page.get_by_role("button", name="Continue").click()
        page.get_by_role("link", name="Insights").click()
        expect(page.get_by_role("heading", name="Psychological safety")).to_be_visible()
        score = page.locator("figure.chart").first.locator("svg")
        expect(score).to_have_attribute("role", "img")
        assert score.locator("circle.point").count() == 25  # the last 26 closed rounds, one below k
        gap = score.locator("g.gap")
        assert gap.count() == 1 and "fewer than 5" in gap.locator("title").text_content()
        assert score.locator("g.note").count() == 3
        expect(page.locator(".chart-notes").first).to_contain_text("Holiday week")
        page.screenshot(path=str(tmp_path / "trend-1280.png"), full_page=True)

        page.set_viewport_size({"width": 390, "height": 844})
        page.reload()
        expect(page.get_by_role("heading", name="Psychological safety")).to_be_visible()
        assert page.evaluate("document.documentElement.scrollWidth") <= 390
        page.screenshot(path=str(tmp_path / "trend-390.png"), full_page=True)

        page.get_by_role("link", name="Vitality").click()
        expect(page.get_by_role("heading", name="Is the community alive?")).to_be_visible()
        page.get_by_role("link", name="Objectives").click()
        expect(page.get_by_role("heading", name="Everyone feels able to raise a problem")).to_be_visible()
        assert problems == []  # no CSP violation, no script error
        browser.close()


def test_a_token_whose_answer_was_lost_is_asked_for_again(served, tmp_path: Path) -> None:
    """The server signed, but the browser never saw the answer (the member left the page): on the
    next visit the browser sends the same blinded request, gets the same signature, and answers."""
    from playwright.sync_api import expect, sync_playwright

    base, links = served
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox", "--disable-gpu"])
        context = browser.new_context(viewport={"width": 1000, "height": 900})
        page = context.new_page()
        lost: list[int] = []

        def sign_then_lose(route) -> None:
            lost.append(route.fetch().status)  # the server signs and records the token...
            route.abort()  # ...and the answer never reaches the page

        page.route("**/rounds/*/token", sign_then_lose)
        page.goto(links["member"])
        page.get_by_role("button", name="Continue").click()
        expect(page.locator(".token-status")).to_be_visible()  # the failed fetch says so
        assert lost == [200]
        page.unroute("**/rounds/*/token")
        assert page.evaluate("Object.keys(localStorage).filter(k => k.startsWith('safespace.token.')).length") == 0

        page.goto(base)  # back later: the ledger says "has a token", the browser asks again
        expect(page.get_by_text("Your answer token for this round is ready in this browser")).to_be_visible()
        page.get_by_role("link", name="Answer now").click()
        _answer_demo_round(page)
        page.get_by_role("button", name="Send my answers").click()
        expect(page.get_by_text("Your answers were added to the totals with your token")).to_be_visible(timeout=15_000)
        browser.close()
