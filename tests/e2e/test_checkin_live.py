"""A meeting check-in in Chromium: one facilitator and five members, each in a browser context
of their own, on a real server. The count stays hidden below k = 5 in every context, the reveal
is refused below k, the count appears at k in every context without reloading, and the reveal
reaches every member's page."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from sqlalchemy.ext.asyncio import AsyncSession

from safespace.identity import services as identity
from safespace.identity import signin
from tests.conftest import free_port
from tests.e2e.conftest import CHROMIUM
from tests.helpers import make_community, serving

pytestmark = pytest.mark.e2e

MEMBERS = [f"m{i}@x.org" for i in range(5)]
WAITING = "Waiting for at least 5 answers"


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
    }
    with serving(env, tmp_path / "serve.log", port) as base:
        async with async_playwright() as playwright:
            browser = await playwright.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox", "--disable-gpu"])
            pages = {}
            for email, link in links.items():
                context = await browser.new_context(base_url=base, viewport={"width": 390, "height": 844})
                page = await context.new_page()
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
                await page.get_by_role("button", name="Send my answer").click()
                await expect(page.locator("#counted")).to_be_visible()
                await page.evaluate("window.notReloaded = true")

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
            await host.get_by_role("button", name="Reveal the answers").click()
            await expect(host.get_by_text("Scale score").first).to_be_visible()
            for page in members:
                await expect(page.get_by_text("The facilitator revealed the answers")).to_be_visible(timeout=15_000)
                assert await page.evaluate("document.documentElement.scrollWidth") <= 390  # a phone, no sideways scroll
            await browser.close()
