"""The demo's pages under the app's Content-Security-Policy in Chromium: every page a facilitator or a
member can reach by following links loads with no policy violation, no console error or warning
(an unknown Permissions-Policy feature is a warning) and no script error."""

from __future__ import annotations

import re
import time
from urllib.parse import urljoin, urlsplit

import pytest

from tests.e2e.conftest import CHROMIUM

pytestmark = pytest.mark.e2e
# Not pages: sign-in tokens, actions, downloads, files, and the OpenAPI document.
SKIP = ("/signin/", "/signout", "/language/", "/static/", "/schema")
UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
WATCH = """
window.__violations = [];
document.addEventListener("securitypolicyviolation", (e) => {
  window.__violations.push(`${e.violatedDirective} blocked ${e.blockedURI || "inline"} at ${e.sourceFile}:${e.lineNumber}`);
});
"""


QUIET_MS = 150  # no request in flight for this long: the page's scripts have done their fetches


def settle(page, pending: set, limit_s: float = 15) -> None:
    """Playwright's "networkidle" with a shorter quiet time: it waits 500 ms with nothing in
    flight on every page, most of this crawl's time. The pages' own chains (the home page's key,
    published key, then token) follow each other within milliseconds."""
    deadline, quiet_since = time.monotonic() + limit_s, None
    while time.monotonic() < deadline:
        page.wait_for_timeout(25)  # Playwright delivers the request events meanwhile
        if pending:
            quiet_since = None
        elif quiet_since is None:
            quiet_since = time.monotonic()
        elif time.monotonic() - quiet_since >= QUIET_MS / 1000:
            return
    raise AssertionError(f"requests still in flight after {limit_s} s: {sorted(r.url for r in pending)}")


def crawl(browser, link: str, limit: int = 80) -> dict[str, list[str]]:
    """Sign in with the link, then visit every same-origin page linked from the pages seen."""
    context = browser.new_context(viewport={"width": 1100, "height": 900})
    context.add_init_script(WATCH)  # run by the browser's debugger: not itself subject to the policy
    page = context.new_page()
    pending: set = set()
    page.on("request", lambda request: pending.add(request))
    page.on("requestfinished", lambda request: pending.discard(request))
    page.on("requestfailed", lambda request: pending.discard(request))
    heard: list[str] = []
    page.on("console", lambda message: heard.append(f"{message.type}: {message.text}") if message.type in ("error", "warning") else None)
    page.on("pageerror", lambda error: heard.append(f"script error: {error}"))
    page.goto(link)
    page.get_by_role("button", name="Continue").click()
    page.wait_for_load_state()
    settle(page, pending)
    origin = "{0.scheme}://{0.netloc}".format(urlsplit(page.url))
    queue, seen, problems = [page.url], set(), {}
    while queue and len(seen) < limit:
        url = queue.pop(0)
        path = urlsplit(url).path
        shape = UUID.sub("{id}", path)  # one page per route: round 3's page is round 4's template
        if shape in seen or path.startswith(SKIP) or path.endswith((".csv", ".json")):
            continue
        seen.add(shape)
        heard.clear()
        response = page.goto(url)
        settle(page, pending)  # the home page's token fetch, the answer page's modules
        found = heard + page.evaluate("window.__violations")
        if response is None or response.status >= 400:
            found.append(f"status {response and response.status}")
        if found:
            problems[shape] = found
        for href in page.eval_on_selector_all("a[href]", "links => links.map(a => a.getAttribute('href'))"):
            target = urljoin(url, href).split("#", 1)[0]
            if target.startswith(origin + "/"):
                queue.append(target)
    # The listener hears a violation when there is one: an image from another host, added by hand.
    page.evaluate("() => { const i = new Image(); i.src = 'https://cdn.example.org/x.png'; document.body.append(i); }")
    page.wait_for_function("window.__violations.some(v => v.includes('cdn.example.org'))")
    context.close()
    assert len(seen) >= 8, sorted(seen)
    return problems


def test_demo_pages_load_with_no_csp_violation(served) -> None:
    from playwright.sync_api import sync_playwright

    base, links = served
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox", "--disable-gpu"])
        problems = {who: crawl(browser, links[who]) for who in ("facilitator", "member")}
        browser.close()
    assert problems == {"facilitator": {}, "member": {}}, problems
