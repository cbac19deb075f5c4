"""P7: the served app's log, at DEBUG, through a member's whole visit, names nobody.

One member signs in, takes an answer token on the home page, answers the open round in private
mode, shares a story and replies with tokens; another answers, shares and replies with JavaScript
off (the signed-in forms). Their browser claims a documentation address through X-Forwarded-For
(uvicorn trusts the local proxy, so the app sees it as the client). Afterwards the log holds no IP
address, no person's id (dashed or hex), no email address, no session (cookie, stored hash or row
id) and no receipt code or token.
"""

from __future__ import annotations

import asyncio
import ipaddress
import re
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

from tests.e2e.conftest import CHROMIUM

pytestmark = pytest.mark.e2e
CLIENT_IP = "203.0.113.77"  # TEST-NET-3: would only be in the log if the app wrote the client's address
IPV4 = re.compile(r"(?<![\d.])(?:\d{1,3}\.){3}\d{1,3}(?![\d.])")
IPV6 = re.compile(r"(?<![\w:])[0-9a-f]{0,4}(?::[0-9a-f]{0,4}){2,7}(?![\w:])", re.IGNORECASE)
EMAIL = re.compile(r"[\w.+-]+@[\w-]+(?:\.[\w-]+)+")


@pytest.fixture
def served_env(served_env: dict[str, str]) -> dict[str, str]:
    return {**served_env, "SAFESPACE_LOG_LEVEL": "DEBUG"}


def is_ipv6(text: str) -> bool:
    """A real IPv6 address, written with "::" or in full (not a clock time like 08:45:32)."""
    try:
        ipaddress.IPv6Address(text)
    except ValueError:
        return False
    return "::" in text or text.count(":") == 7


def login_link(env: dict[str, str], email: str) -> str:
    result = subprocess.run([sys.executable, "-m", "safespace", "login-link", email], env=env, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    return result.stdout.strip().splitlines()[-1]


def identifying_values(database_url: str) -> dict[str, str]:
    """Every person's id and email, every session's id and token hash: value -> what it is."""
    from sqlalchemy import text
    from sqlalchemy.ext.asyncio import create_async_engine

    async def read() -> dict[str, str]:
        engine = create_async_engine(database_url)
        found: dict[str, str] = {}
        async with engine.connect() as connection:
            for person_id, email in (await connection.execute(text("SELECT id, email FROM person"))).all():
                person_id = uuid.UUID(str(person_id))
                found |= {str(person_id): f"id of {email}", person_id.hex: f"hex id of {email}", email: "an email"}
            for session_id, token_hash in (await connection.execute(text("SELECT id, token_hash FROM web_session"))).all():
                session_id = uuid.UUID(str(session_id))
                found |= {str(session_id): "a session id", session_id.hex: "a session id", bytes(token_hash).hex(): "a session hash"}
        await engine.dispose()
        return found

    return asyncio.run(read())


@pytest.mark.postgresql_too
def test_a_members_visit_leaves_nothing_identifying_in_the_log(served, served_env, tmp_path: Path) -> None:
    from playwright.sync_api import expect, sync_playwright

    from tests.e2e.test_browser import _answer_demo_round, community_path

    base, links = served
    secrets: dict[str, str] = {}
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox", "--disable-gpu"])
        forwarded = {"X-Forwarded-For": CLIENT_IP}

        # Ines: private mode throughout (tokens taken on the home page, spent without cookies).
        ines = browser.new_context(viewport={"width": 1000, "height": 900}, extra_http_headers=forwarded)
        page = ines.new_page()
        page.goto(links["member"])
        page.get_by_role("button", name="Continue").click()
        expect(page.get_by_text("Your answer token for this round is ready in this browser")).to_be_visible()
        community = community_path(page)
        page.get_by_role("link", name="Answer now").click()
        expect(page.locator("#answer-mode")).to_contain_text("Private mode")
        _answer_demo_round(page)
        page.get_by_role("button", name="Send my answers").click()
        expect(page.get_by_text("Your answers were added to the totals with your token")).to_be_visible()

        page.goto(f"{base}/c/{community}/stories/new")
        page.get_by_label("Title").fill("The pilot we never evaluated")
        page.get_by_label("What happened").fill("We ran a pilot and forgot to measure anything before it ended.")
        page.get_by_label("What you learned").fill("Decide what to measure before starting.")
        page.get_by_role("button", name="Share my story").click()
        expect(page.get_by_text("Sent in private mode")).to_be_visible(timeout=15_000)  # waits out the quiet window
        secrets[page.locator("#receipt-code").inner_text()] = "a receipt code"
        page.goto(f"{base}/c/{community}/stories")
        story = page.locator("article", has=page.get_by_role("heading", name="A model we trusted too much"))
        story.get_by_label("Reply without your name").fill("We trusted one too; a second opinion saved us.")
        story.get_by_role("button", name="Send reply").click()
        expect(story.locator(".token-sent")).to_contain_text("nothing links it to you", timeout=15_000)
        cookies = ines.cookies()

        # Hana: no JavaScript, so the signed-in forms.
        hana = browser.new_context(viewport={"width": 1000, "height": 900}, java_script_enabled=False, extra_http_headers=forwarded)
        page = hana.new_page()
        page.goto(login_link(served_env, "hana@climate.example"))
        page.get_by_role("button", name="Continue").click()
        page.get_by_role("link", name="Answer now").click()
        expect(page.locator("#answer-mode")).to_contain_text("Signed-in mode: JavaScript is off")
        questions = page.locator("fieldset.likert")
        for i in range(7):
            questions.nth(i).get_by_label("Disagree", exact=True).check()
        page.get_by_role("button", name="Send my answers").click()
        expect(page.get_by_text("Your answers were added to the totals")).to_be_visible()
        page.goto(f"{base}/c/{community}/stories/new")
        page.get_by_label("Title").fill("Two reports, one deadline")
        page.get_by_label("What happened").fill("We promised two reports for the same week and delivered neither well.")
        page.get_by_role("button", name="Share my story").click()
        expect(page.locator("#receipt-code")).to_be_visible()
        secrets[page.locator("#receipt-code").inner_text()] = "a receipt code"
        page.goto(f"{base}/c/{community}/stories")
        story = page.locator("article", has=page.get_by_role("heading", name="A model we trusted too much"))
        story.get_by_label("Reply without your name").fill("Same here: we now ask a colleague to check the inputs.")
        story.get_by_role("button", name="Send reply").click()
        cookies += hana.cookies()
        browser.close()

    for cookie in cookies:
        if cookie["value"]:
            secrets[cookie["value"]] = f"the {cookie['name']} cookie"
    secrets |= identifying_values(served_env["SAFESPACE_DATABASE_URL"])
    assert any(what == "a session id" for what in secrets.values())  # the visit did sign people in

    log = (tmp_path / "serve.log").read_text()
    assert re.search(r"^DEBUG ", log, flags=re.MULTILINE), "SAFESPACE_LOG_LEVEL=DEBUG took no effect:\n" + log
    # The server's own listening address (start-up banner) is the one address allowed.
    port = served_env["SAFESPACE_BASE_URL"].rsplit(":", 1)[1]
    scrubbed = log.replace(f"127.0.0.1:{port}", "<server>")
    problems = [f"{what}: {value}" for value, what in secrets.items() if value in log]
    problems += [f"an IP address: {ip}" for ip in IPV4.findall(scrubbed)]
    problems += [f"an IPv6 address: {ip}" for ip in IPV6.findall(scrubbed) if is_ipv6(ip)]
    problems += [f"an email address: {address}" for address in EMAIL.findall(log)]
    assert problems == [], "\n".join(problems) + "\n--- serve.log ---\n" + log
