"""In Chromium: hostile text typed into the demo's forms opens no dialog and runs no script.

The in-process half (tests/safespace/test_injection.py) puts the corpus in every field and checks
storage and escaping; here a real browser renders the pages that show it.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.e2e.conftest import CHROMIUM

pytestmark = pytest.mark.e2e

PAYLOADS = (
    "<script>alert('script')</script>",
    '"><img src=x onerror="alert(\'img\');window.__pwned=1">',
    "<svg/onload=alert('svg')>",
    "javascript:alert('link')",
    "{{ 7*7 }}{% if true %}jinja{% endif %}",
    "'; DROP TABLE person; --",
)


def test_hostile_text_runs_nowhere(served, tmp_path: Path) -> None:
    from playwright.sync_api import expect, sync_playwright

    base, links = served
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox", "--disable-gpu"])
        page = browser.new_page(viewport={"width": 1100, "height": 900})
        dialogs: list[str] = []
        page.on("dialog", lambda dialog: (dialogs.append(dialog.message), dialog.dismiss()))
        page.goto(links["facilitator"])
        page.get_by_role("button", name="Continue").click()
        community = page.url.rstrip("/")

        page.goto(f"{base}/profile")
        page.get_by_label("Display name").fill(PAYLOADS[0])
        page.get_by_role("button", name="Save profile").click()
        page.goto(f"{community}/settings")
        page.get_by_label("Vision statement").fill("\n\n".join(PAYLOADS))
        page.get_by_role("button", name="Save settings").click()
        page.goto(f"{community}/teams")
        page.get_by_label("Team name", exact=True).fill(PAYLOADS[1])
        page.get_by_role("button", name="Add team").click()
        page.goto(f"{community}/stories/review")
        page.get_by_label("One topic per line").fill("\n".join(PAYLOADS))
        page.get_by_role("button", name="Save topics").click()

        shown = 0
        for path in ("", "/settings", "/teams", "/members", "/stories", "/stories/new", "/insights", "/insights/teams", "/summary"):
            page.goto(f"{community}{path}")
            page.wait_for_load_state("load")
            shown += page.get_by_text("jinja", exact=False).count()
            assert page.evaluate("window.__pwned") is None, path
        page.goto(f"{base}/profile")
        expect(page.get_by_label("Display name")).to_have_value(PAYLOADS[0])  # stored exactly
        expect(page.locator("header")).to_contain_text("<script>alert('script')</script>")  # shown as text
        assert shown > 0, "the template payload should be on the pages, as text"
        assert dialogs == [], dialogs
        page.screenshot(path=str(tmp_path / "hostile-home.png"), full_page=True)
        browser.close()
