"""A meeting check-in in Chromium: one facilitator and five members, each in a browser context
of their own, on a real server. The count stays hidden below k = 5 in every context, the reveal
is refused below k, the count appears at k in every context without reloading, and the reveal
reaches every member's page.

The members answer in private mode, as any browser with scripts does: the token is taken when
the page opens, the answer goes with it and no cookie, and no request that carries the session
comes within the quiet window of it (every request of every member is recorded). A change of
answer counts nobody twice; a second browser of a member who answered takes one more token, and
the reveal says how many answers may come from such re-issued tokens."""

from __future__ import annotations

import os
import re
import time
from pathlib import Path

import pytest
from sqlalchemy.ext.asyncio import AsyncSession

from safespace.identity import services as identity
from safespace.identity import signin
from tests.conftest import free_port
from tests.e2e.conftest import CHROMIUM, PRIVATE_WINDOW
from tests.helpers import make_community, serving

pytestmark = pytest.mark.e2e

MEMBERS = [f"m{i}@x.org" for i in range(5)]
WAITING = "Waiting for at least 5 answers"
WINDOW = float(PRIVATE_WINDOW)
ANSWERS = re.compile(r"/api/v1/checkin-answers$")


# Elements reaching past a 390 px phone's width, for the message of a failed check.
WIDE = """() => [...document.querySelectorAll("body *")].filter((e) => e.getBoundingClientRect().right > 391)
  .map((e) => `${e.tagName}#${e.id}.${e.className} ${Math.round(e.getBoundingClientRect().right)}`).slice(0, 8)"""


async def fits_a_phone(page) -> None:
    """No sideways scroll on a 390 px phone, once the page has settled (read again for up to 5 s: a
    layout read while the page is still changing, on a loaded machine, is not what a member sees)."""
    for _ in range(50):
        if await page.evaluate("document.documentElement.scrollWidth") <= 390:
            return
        await page.wait_for_timeout(100)
    raise AssertionError(f"wider than 390 px: {await page.evaluate(WIDE)}")


class Recorder:
    """Every request one browser context sends, with the browser's own start time."""

    def __init__(self, context) -> None:
        self.seen: list[tuple[float, object]] = []
        context.on("request", lambda request: self.seen.append((time.time(), request)))

    async def check(self, who: str) -> int:
        """Fails on a session-carrying request within the window of an anonymous answer, or on an
        anonymous request (answer, live count) that carries a cookie or a Referer; returns how
        many answers went without a session."""
        rows = []
        for heard, request in self.seen:
            started = request.timing.get("startTime", -1)
            rows.append((started / 1000 if started > 0 else heard, request.method, request.url, await request.all_headers()))
        anonymous = [(at, url) for at, method, url, headers in rows if method == "POST" and ANSWERS.search(url)]
        for _at, _method, url, headers in rows:
            if ANSWERS.search(url) or "/events?key=" in url:
                assert "cookie" not in headers and "referer" not in headers, f"{who}: {url} carried {headers}"
        signed_in = [(at, url) for at, _method, url, headers in rows if "safespace_session=" in headers.get("cookie", "")]
        for at, url in anonymous:
            close = [(round(s_at - at, 3), s_url) for s_at, s_url in signed_in if abs(s_at - at) < WINDOW - 0.1]
            assert not close, f"{who}: signed-in requests within {WINDOW} s of {url}: {close}"
        return len(anonymous)


async def _link(db: AsyncSession, email: str) -> str:
    person = await identity.find_person(db, email)
    token = await signin.issue_link(db, person.id)
    await db.commit()
    return f"/signin/{token}"


@pytest.mark.postgresql_too
async def test_six_browsers_see_the_count_only_from_k_and_the_reveal(settings, db: AsyncSession, tmp_path: Path) -> None:
    from playwright.async_api import async_playwright, expect

    world = await make_community(db, teams={"All": MEMBERS}, k=5)
    links = {email: await _link(db, email) for email in [world.facilitator, *MEMBERS]}
    port = free_port()
    env = {
        **os.environ,
        "SAFESPACE_DATA_DIR": str(tmp_path),
        "SAFESPACE_DATABASE_URL": settings.database_url,
        "SAFESPACE_SCHEDULE_INTERVAL_SECONDS": "0",
        "SAFESPACE_PRIVATE_WINDOW_SECONDS": PRIVATE_WINDOW,  # short for tests: members would wait 30 s
    }
    with serving(env, tmp_path / "serve.log", port) as base:
        async with async_playwright() as playwright:
            browser = await playwright.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox", "--disable-gpu"])
            pages, recorders, problems = {}, {}, []
            for email, link in links.items():
                context = await browser.new_context(base_url=base, viewport={"width": 390, "height": 844})
                recorders[email] = Recorder(context)
                page = await context.new_page()
                page.on("pageerror", lambda error: problems.append(str(error)))
                await page.goto(link)
                await page.get_by_role("button", name="Continue").click()
                await page.wait_for_url(f"{base}/c/**")
                pages[email] = page
            host = pages[world.facilitator]
            await host.goto(f"/c/{world.community.id}/surveys")
            await host.get_by_role("link", name="Start a meeting check-in").click()
            boxes = host.locator("input[name=statement]")
            await boxes.nth(0).check()
            await boxes.nth(1).check()
            await host.get_by_role("button", name="Start the check-in").click()
            code = (await host.locator("#join-code").inner_text()).strip()
            await expect(host.locator("svg.qr")).to_be_visible()
            members = [pages[email] for email in MEMBERS]
            for page in members:
                await page.goto(f"/checkin/{code}")
            for page in pages.values():  # a mark that a reload would wipe
                await page.evaluate("window.notReloaded = true")

            async def answer(page, label: str) -> None:
                for fieldset in await page.locator("fieldset.likert").all():
                    await fieldset.get_by_label(label, exact=True).check()
                await expect(page.locator("#key-fingerprint")).to_contain_text("Key fingerprint")  # the token is here
                await page.locator("details.mode-note summary").click()  # "How your answers travel", open
                await expect(page.locator("#key-fingerprint")).to_be_visible()
                await fits_a_phone(page)  # the fingerprint wraps
                await page.get_by_role("button", name="Send my answer").click()
                await expect(page.locator("#counted-here")).to_be_visible(timeout=15_000)
                assert await page.evaluate("window.notReloaded === true")  # sent by the script, not the form
                await expect(page.get_by_role("button", name="Change my answer")).to_be_visible()

            for page in members[:4]:
                await answer(page, "Agree")
                for other in pages.values():
                    await expect(other.locator("#live")).to_contain_text(WAITING)
                    assert "people have answered" not in await other.locator("#live").inner_text()
            await host.get_by_role("button", name="Reveal the answers").click()
            await expect(host.locator("#refused")).to_contain_text("Fewer than 5 people have answered")
            await host.evaluate("window.notReloaded = true")
            await answer(members[4], "Disagree")
            for page in pages.values():
                await expect(page.locator("#live")).to_contain_text("5 people have answered.", timeout=15_000)
                assert await page.evaluate("window.notReloaded === true")  # it came live, not by reloading
            # A change of answer, without a session again: the count stays at 5.
            for fieldset in await members[0].locator("fieldset.likert").all():
                await fieldset.get_by_label("Disagree", exact=True).check()
            # Waited for by its answer: the send may first wait out the quiet window, and until it
            # says so the status line is hidden already (on a loaded machine the check passed early).
            async with members[0].expect_response(
                lambda r: r.request.method == "POST" and ANSWERS.search(r.url) is not None, timeout=15_000
            ):
                await members[0].get_by_role("button", name="Change my answer").click()
            await expect(members[0].locator("#redeem-status")).to_be_hidden(timeout=15_000)
            assert not await members[0].locator("#redeem-problems").is_visible()
            # The same member on a second device: never told they answered; one more token, counted as re-issued.
            phone = await browser.new_context(base_url=base, viewport={"width": 390, "height": 844})
            recorders["second device"] = Recorder(phone)
            second = await phone.new_page()
            await second.goto(await _link(db, MEMBERS[1]))
            await second.get_by_role("button", name="Continue").click()
            await second.goto(f"/checkin/{code}")
            await expect(second.locator("#token-elsewhere")).to_be_visible()
            await expect(second.locator("#key-fingerprint")).to_contain_text("Key fingerprint")
            await expect(second.locator("#token-elsewhere")).to_be_visible()  # still: it may have answered there
            for page in pages.values():
                await expect(page.locator("#live")).to_contain_text("5 people have answered.")
            await host.get_by_role("button", name="Reveal the answers").click()
            await expect(host.get_by_text("Scale score").first).to_be_visible()
            await expect(host.locator("#reissued")).to_contain_text("Up to 1 of these answers may come from re-issued tokens")
            for page in members:
                await expect(page.get_by_text("The facilitator revealed the answers")).to_be_visible(timeout=15_000)
                await fits_a_phone(page)  # a phone, no sideways scroll
            assert [await recorders[email].check(email) for email in MEMBERS] == [2, 1, 1, 1, 1]  # member 0 changed once
            assert await recorders["second device"].check("second device") == 0
            await browser.close()
    assert not problems, problems
