"""Private mode as members use it, in Chromium: no signed-in request near an anonymous one.

Every request each browser sends is recorded with its time and whether it carries the session
cookie. In every flow (home -> answer; the round mail's link straight to the answer page; a
sign-in link with next= to the answer page; sharing a story; two replies in a row; a send
with a spent token; a second device; a signed-in page opened in another tab just before Send), no
session-carrying request may fall within the quiet window (SAFESPACE_PRIVATE_WINDOW_SECONDS, 2 s
here) of an anonymous answer, story or reply, and those carry no cookie and no Referer.
"""

from __future__ import annotations

import asyncio
import json
import re
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from tests.e2e.conftest import CHROMIUM, PRIVATE_WINDOW
from tests.e2e.test_browser import OPEN_ROUND, _answer_demo_round, _database_after, community_path, tick

pytestmark = pytest.mark.e2e

WINDOW = float(PRIVATE_WINDOW)  # seconds: SAFESPACE_PRIVATE_WINDOW_SECONDS of the served app
SLACK = 0.1  # clock rounding; the gaps this must catch were 8-20 ms
ANONYMOUS = re.compile(r"(/api/v1/(answers|stories|replies)|^https?://[^/]+/stories/mine(/edit|/withdraw)?)$")  # /stories/mine: a receipt code


class Recorder:
    """Every request one browser (context) sends: when, what, and with which headers."""

    def __init__(self, context) -> None:
        self.seen: list[tuple[float, object]] = []
        context.on("request", lambda request: self.seen.append((time.time(), request)))

    def rows(self) -> list[tuple[float, str, str, dict[str, str]]]:
        """When the browser itself started each request (its own clock: this side hears of
        requests only when it next talks to the browser), with every header it sent."""
        rows = []
        for heard, request in self.seen:
            started = request.timing.get("startTime", -1)
            rows.append((started / 1000 if started > 0 else heard, request.method, request.url, request.all_headers()))
        return rows

    def check(self, flow: str) -> int:
        """Fails when a session-carrying request is within the window of an anonymous send; returns
        how many anonymous sends there were."""
        rows = self.rows()
        anonymous = [(at, url, headers) for at, method, url, headers in rows if method == "POST" and ANONYMOUS.search(url)]
        for _at, url, headers in anonymous:
            assert "cookie" not in headers, f"{flow}: {url} carried a cookie"
            assert "referer" not in headers, f"{flow}: {url} carried a Referer: {headers.get('referer')}"
            assert not any(name.startswith("x-") for name in headers), f"{flow}: custom headers on {url}: {headers}"
        signed_in = [(at, method, url) for at, method, url, headers in rows if "safespace_session=" in headers.get("cookie", "")]
        for at, url, _headers in anonymous:
            close = [(round(s_at - at, 3), method, s_url) for s_at, method, s_url in signed_in if abs(s_at - at) < WINDOW - SLACK]
            assert not close, f"{flow}: signed-in requests within {WINDOW} s of the anonymous {url}: {close}"
        return len(anonymous)


def _launch(playwright):
    return playwright.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox", "--disable-gpu"])


def _sign_in_link(env: dict[str, str], email: str, next_path: str | None = None) -> str:
    result = subprocess.run([sys.executable, "-m", "safespace", "login-link", email], env=env, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    link = re.search(r"(http\S+/signin/\S+)", result.stdout).group(1)
    return f"{link}?next={next_path}" if next_path else link


def _open_round(page) -> str:
    """The open round's answer path, from the home page's Answer link."""
    return page.locator(".round-card a", has_text="Answer now").first.get_attribute("href")


def _send_answers(page) -> None:
    from playwright.sync_api import expect

    _answer_demo_round(page)
    page.get_by_role("button", name="Send my answers").click()
    expect(page.get_by_text("Your answers were added to the totals with your token")).to_be_visible(timeout=15_000)


def test_no_signed_in_request_comes_near_an_anonymous_one_in_any_flow(served, served_env, tmp_path: Path) -> None:
    from playwright.sync_api import expect, sync_playwright

    base, links = served
    before = _database_after(served_env["SAFESPACE_DATABASE_URL"], OPEN_ROUND)["tallied"] or 0
    problems: list[str] = []
    with sync_playwright() as playwright:
        browser = _launch(playwright)

        def member(email: str | None = None, next_path: str | None = None, width: int = 1000):
            context = browser.new_context(viewport={"width": width, "height": 900})
            recorder = Recorder(context)
            page = context.new_page()
            page.on("pageerror", lambda error: problems.append(str(error)))
            page.on("console", lambda message: problems.append(message.text) if message.type == "error" else None)
            page.goto(_sign_in_link(served_env, email, next_path) if email else links["member"])
            page.get_by_role("button", name="Continue").click()
            return context, recorder, page

        # 1. Home, then the answer page, then on to another page at once.
        context, home_flow, page = member()
        expect(page.get_by_text("Your answer token for this round is ready in this browser")).to_be_visible()
        answer_path = _open_round(page)
        community = community_path(page)
        page.get_by_role("link", name="Answer now").click()
        _send_answers(page)
        page.get_by_role("link", name="Safespace").click()  # straight on: the page holds the member
        expect(page.locator("#quiet-hold")).to_contain_text("You can go on in")
        page.wait_for_url(re.compile(rf"/c/{community}$"))
        assert home_flow.check("home -> answer") == 1

        # 2. The round mail's link, straight to the answer page, answered at once.
        context, mail_flow, page = member("tomas@climate.example", "/profile")
        page.goto(base + answer_path)
        _answer_demo_round(page)
        page.get_by_role("button", name="Send my answers").click()
        expect(page.locator("#redeem-status")).to_contain_text("Sending without your name in")
        expect(page.get_by_text("Your answers were added to the totals with your token")).to_be_visible(timeout=15_000)
        assert mail_flow.check("mail link -> answer") == 1

        # 3. A sign-in link with next= to the answer page, on a phone.
        context, next_flow, page = member("kwame@climate.example", answer_path, width=390)
        expect(page.locator("form[data-redeem]")).to_be_visible()
        assert page.evaluate("document.documentElement.scrollWidth <= document.documentElement.clientWidth")
        _send_answers(page)
        assert next_flow.check("sign-in next= -> answer") == 1

        # 4. This browser's token was spent by a send whose answer never came back (here, from
        # outside the browser): the outbox's send is refused as spent and stops there. A second
        # token would count the member twice (tests/faults/test_private_crash.py).
        context, retry_flow, page = member("jonas@climate.example", answer_path)
        expect(page.locator("#key-fingerprint")).to_contain_text(re.compile(r"[0-9a-f]{4}-[0-9a-f]{4}"))  # the token is here
        stored = json.loads(page.evaluate("Object.entries(localStorage).find(([k]) => k.startsWith('safespace.token.'))[1]"))
        spent = httpx.post(f"{base}/api/v1/answers", json={"round_id": stored["roundId"], "key_id": stored["keyId"], "msg": stored["msg"],
                                                           "sig": stored["sig"], "answers": {}})  # fmt: skip
        assert spent.status_code == 201, spent.text
        _answer_demo_round(page)
        page.get_by_role("button", name="Send my answers").click()
        expect(page.get_by_text("This token has been used already: its answers are counted.")).to_be_visible(timeout=15_000)
        assert retry_flow.check("a spent token") == 1  # refused, and nothing sent again

        # 5. A second device: the token is in the laptop's browser; the phone answers.
        laptop, laptop_flow, laptop_page = member("aiko@climate.example")
        expect(laptop_page.get_by_text("Your answer token for this round is ready in this browser")).to_be_visible()
        phone, phone_flow, phone_page = member("aiko@climate.example", answer_path, width=390)
        expect(phone_page.locator("#token-elsewhere")).to_be_visible()
        expect(phone_page.get_by_text("You have already answered this round")).to_have_count(0)
        _send_answers(phone_page)
        assert phone_flow.check("second device") == 1 and laptop_flow.check("first device") == 0

        # 6. Another tab opens a signed-in page just before Send: the answers wait for it too.
        context, tabs_flow, page = member("mateo@climate.example", answer_path)
        _answer_demo_round(page)
        page.wait_for_timeout(WINDOW * 1000 + 500)  # the answer page's own load is out of the window
        other = context.new_page()
        other.goto(f"{base}/profile")
        page.get_by_role("button", name="Send my answers").click()
        expect(page.locator("#redeem-status")).to_contain_text("Sending without your name in")
        expect(page.get_by_text("Your answers were added to the totals with your token")).to_be_visible(timeout=15_000)
        assert tabs_flow.check("another tab") == 1

        # 7. Sharing a story, then two replies in a row on the wall.
        context, story_flow, page = member("lena@climate.example")
        page.goto(f"{base}/c/{community}/stories/new")
        page.get_by_label("Title").fill("The launch we rushed")
        page.get_by_label("What happened").fill("We shipped before the tests ran and spent a week on fixes.")
        page.get_by_role("button", name="Share my story").click()
        expect(page.locator("#receipt-code")).to_have_text(re.compile(r"^\S{4}-\S{4}-\S{4}-\S{4}$"), timeout=15_000)
        receipt = page.locator("#receipt-code").inner_text()
        assert story_flow.check("sharing a story") == 1

        # 8. Coming back with the receipt code: the code goes with no cookie, after the window.
        # (An address typed in the bar is not held by the page: the member comes back later.)
        page.wait_for_timeout(WINDOW * 1000 + 200)
        page.goto(f"{base}/c/{community}/stories/mine")
        page.get_by_label("Receipt code").fill(receipt)
        page.get_by_role("button", name="Open my story").click()
        expect(page.locator("#mine-status")).to_contain_text("Opening without your name in")
        expect(page.get_by_role("heading", name="The launch we rushed")).to_be_visible(timeout=15_000)
        page.get_by_text("Edit my story").click()
        page.get_by_label("Title").fill("The launch we rushed, again")
        page.get_by_role("button", name="Save my changes").click()
        expect(page.get_by_role("heading", name="The launch we rushed, again")).to_be_visible(timeout=15_000)
        assert story_flow.check("my story with the receipt") == 3  # the story, opening it, the edit

        context, reply_flow, page = member("priya@climate.example")
        page.goto(f"{base}/c/{community}/stories")
        story = page.locator("article").first
        for i in range(2):
            story.get_by_label("Reply without your name").fill(f"Reply {i}: it happened to us too.")
            story.get_by_role("button", name="Send reply").click()
            expect(story.locator(".token-sent")).to_contain_text("nothing links it to you", timeout=15_000)
            expect(story.get_by_label("Reply without your name")).to_have_value("")
        assert reply_flow.check("two replies in a row") == 2
        browser.close()
    # Each member counted once: six answers (one of them the spent token's); the refused send and
    # the outbox's waits added nothing.
    assert _database_after(served_env["SAFESPACE_DATABASE_URL"], OPEN_ROUND)["tallied"] == before + 6
    # The spent token's send was refused on purpose (409): Chromium logs that; nothing else may be.
    assert [p for p in problems if "status of 409" not in p] == [], problems

    # The second device took a second token: the results say so after close.
    asyncio.run(_close_open_round(served_env, tmp_path))
    tick(served_env)
    with sync_playwright() as playwright:
        browser = _launch(playwright)
        page = browser.new_page()
        page.goto(_sign_in_link(served_env, "hana@climate.example"))
        page.get_by_role("button", name="Continue").click()
        page.goto(base + answer_path + "/results")
        expect(page.locator("#reissued")).to_contain_text("Up to 1 of these answers may come from re-issued tokens")
        browser.close()


async def _close_open_round(env: dict[str, str], data_dir: Path) -> None:
    """What "Close the open round now" does, without a facilitator's browser."""
    from sqlalchemy import select
    from sqlalchemy.ext.asyncio import async_sessionmaker, create_async_engine

    from safespace import clock
    from safespace.privacy.crypto import Keyring
    from safespace.pulse import lifecycle
    from safespace.pulse.models import Round

    engine = create_async_engine(env["SAFESPACE_DATABASE_URL"])
    try:
        async with async_sessionmaker(engine)() as db:
            round_id = await db.scalar(select(Round.id).where(Round.closed.is_(False)))
            assert await lifecycle.close_round(db, Keyring.load(data_dir / "encryption.keys"), round_id, clock.now())
            await db.commit()
    finally:
        await engine.dispose()


def test_a_key_made_for_one_member_is_refused_in_the_browser(served, served_env) -> None:
    """The server (here, a route in between) hands the member another key than the one published to
    everyone: the browser notices before it blinds, says so, and takes no token."""
    from cryptography.hazmat.primitives.asymmetric import rsa
    from playwright.sync_api import expect, sync_playwright

    from safespace.privacy import blind

    tagged = rsa.generate_private_key(public_exponent=65537, key_size=2048).public_key()
    signed: list[str] = []
    with sync_playwright() as playwright:
        browser = _launch(playwright)
        page = browser.new_page()

        def substitute(route) -> None:
            key = route.fetch().json()
            key["jwk"], key["fingerprint"] = blind.public_jwk(tagged), blind.fingerprint(tagged)
            route.fulfill(json=key)

        page.route("**/rounds/*/token-key", substitute)
        page.on("request", lambda request: signed.append(request.url) if request.url.endswith("/token") else None)
        page.goto(_sign_in_link(served_env, "chloe@climate.example"))
        page.get_by_role("button", name="Continue").click()
        expect(page.locator(".token-status")).to_contain_text("not the one published for everyone")
        assert signed == []  # nothing was blinded or sent for signing
        assert page.evaluate("Object.keys(localStorage).filter(k => k.startsWith('safespace.token.')).length") == 0
        browser.close()
