"""Accessibility in a real browser: every demo page passes axe-core (WCAG 2.x A and AA, nothing
serious or critical) in English and Spanish at phone and desktop width, fits a 390 px phone (no
sideways scroll, no clipped table, chart text of 12 px or more), keeps keyboard focus clear of
sticky bars, and the answer form, the story form and the trend page work with the keyboard alone."""

from __future__ import annotations

import dataclasses
import re
from collections import Counter, defaultdict
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from tests.e2e.conftest import CHROMIUM

pytestmark = pytest.mark.e2e

AXE = Path(__file__).parent / "vendor" / "axe.min.js"  # axe-core from npm, see vendor/README.md
# Every context that injects axe is made with bypass_csp=True: the app's CSP (no inline script, no
# other host) rightly refuses our injected script. Only those contexts waive it; the keyboard test
# below runs with the CSP in force, and tests/safespace/test_headers.py checks the header itself.
WIDTHS = {"desktop": {"width": 1280, "height": 900}, "phone": {"width": 390, "height": 844}}
AXE_RUN = """() => axe.run(document, {
  runOnly: {type: "tag", values: ["wcag2a", "wcag2aa", "wcag21a", "wcag21aa", "wcag22aa"]},
  resultTypes: ["violations"],
}).then(result => result.violations
  .filter(v => v.impact === "serious" || v.impact === "critical")
  .flatMap(v => v.nodes.map(n =>
    ({rule: v.id, impact: v.impact, target: n.target.join(" "), help: v.help, url: v.helpUrl}))))"""
# Not pages: state changes (language, sign-out), files, the API and the static files.
NOT_PAGES = re.compile(r"^/(language/|signout|api/|static/|schema)|\.(csv|json)$")
ID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")


# At phone width (the audit's last): the page's sideways scroll, tables wider than their place with
# nothing to scroll them, and the smallest chart text as drawn (font size times the SVG's scale).
PHONE_FIT = """() => {
  const root = document.documentElement, problems = [];
  const name = e => e.tagName.toLowerCase() + (e.id ? "#" + e.id : "")
    + [...e.classList].map(c => "." + c).join("");
  if (root.scrollWidth > root.clientWidth)
    problems.push(`the page scrolls sideways by ${root.scrollWidth - root.clientWidth} px`);
  const scroller = e => { for (let p = e.parentElement; p && p !== document.body; p = p.parentElement)
    if (["auto", "scroll"].includes(getComputedStyle(p).overflowX)) return p; return null; };
  for (const table of document.querySelectorAll("table")) {
    if (!table.getClientRects().length) continue;  // not shown
    const box = table.getBoundingClientRect(), room = table.parentElement.getBoundingClientRect();
    const wide = table.scrollWidth > table.clientWidth || box.right > room.right + 1 || box.right > root.clientWidth;
    if (wide && !scroller(table)) problems.push(`table ${name(table)} ("${(table.caption || table.rows[0]).innerText
      .trim().slice(0, 40)}") is ${Math.round(box.width)} px wide in ${Math.round(room.width)} px with nothing to scroll it`);
  }
  let smallest = null;
  for (const svg of document.querySelectorAll("svg")) {
    let least = null;
    for (const text of svg.querySelectorAll("text")) {
      const m = text.getScreenCTM();
      if (!m || !text.getClientRects().length || !text.textContent.trim()) continue;
      const px = parseFloat(getComputedStyle(text).fontSize) * Math.hypot(m.a, m.b);
      if (least === null || px < least.px) least = {px, text: text.textContent.trim().slice(0, 30)};
    }
    if (least === null) continue;
    if (smallest === null || least.px < smallest) smallest = least.px;
    if (least.px < 12) problems.push(`chart ${name(svg)}: "${least.text}" is drawn at ${least.px.toFixed(1)} px`);
  }
  return {problems, smallest};
}"""


@dataclasses.dataclass
class Findings:
    """What the crawl found: axe's violations by (page, rule, target), what does not fit a phone by
    page, focus hidden under a sticky bar, and the smallest chart text drawn at 390 px."""

    axe: dict = dataclasses.field(default_factory=lambda: defaultdict(set))
    phone: dict[str, list[str]] = dataclasses.field(default_factory=dict)
    smallest_chart_text: float | None = None
    hidden_focus: list[str] = dataclasses.field(default_factory=list)
    focus_stops: dict[str, int] = dataclasses.field(default_factory=lambda: defaultdict(int))  # checked stops per width


def launch(playwright):
    return playwright.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox", "--disable-gpu"])


def audit(page, found: Findings, label: str) -> None:
    """axe on the page as it is now, at both widths, and at phone width whether it fits; what either
    finds goes into `found` under the label."""
    # After a click that navigates, the new page's text can be there before its stylesheet is: axe
    # would then judge the page unstyled (the skip link beside the header's links, all too close).
    page.wait_for_load_state("load")
    for width, viewport in WIDTHS.items():
        page.set_viewport_size(viewport)
        if not page.evaluate("typeof axe !== 'undefined'"):
            page.add_script_tag(path=str(AXE))
            # What a click would show (chart tables, the community menu, key lists) is checked too.
            page.evaluate("document.querySelectorAll('details').forEach(d => { d.open = true; })")
        for v in page.evaluate(AXE_RUN):
            found.axe[(label, v["rule"], v["target"])].add((width, v["impact"], v["help"], v["url"]))
    fit = page.evaluate(PHONE_FIT)  # the loop ends at phone width, details open
    if fit["problems"]:
        found.phone[label] = fit["problems"]
    if fit["smallest"] is not None:
        found.smallest_chart_text = min(fit["smallest"], found.smallest_chart_text or fit["smallest"])
    page.set_viewport_size(WIDTHS["desktop"])


STICKY = """() => [...document.body.querySelectorAll("*")].some(e =>
  ["sticky", "fixed"].includes(getComputedStyle(e).position) && e.getClientRects().length > 0)"""
# The focused element (once per element: a second visit means Tab went round the page), and whether
# what is drawn at the centre of its box is that element or its label rather than something over it.
UNCOVERED = """() => {
  const e = document.activeElement;
  if (!e || e === document.body) return null;
  const seen = window.tabbed || (window.tabbed = new WeakSet());
  if (seen.has(e)) return {again: true};
  seen.add(e);
  const name = x => x === null ? "nothing" : x.tagName.toLowerCase() + (x.id ? "#" + x.id : "")
    + [...x.classList].map(c => "." + c).join("");
  const box = e.getBoundingClientRect(), label = e.closest("label");
  const hit = document.elementFromPoint(box.left + box.width / 2, box.top + box.height / 2);
  return {again: false, what: `${name(e)} "${e.getAttribute("name") || e.innerText.trim().slice(0, 30)}"`,
    clear: hit !== null && (e.contains(hit) || (label !== null && label.contains(hit))), hit: name(hit)};
}"""


def check_focus_is_not_hidden(page, found: Findings, label: str) -> None:
    """On a page with a sticky or fixed part, Tab through every stop at both widths: the centre of
    each focused element shows that element or its label, not a bar over it (WCAG 2.2 SC 2.4.11)."""
    if not page.evaluate(STICKY):
        return
    for width, viewport in WIDTHS.items():
        page.set_viewport_size(viewport)
        page.reload()  # focus starts again from the top
        for _ in range(300):
            page.keyboard.press("Tab")
            stop = page.evaluate(UNCOVERED)
            if stop is None:
                continue
            if stop["again"]:
                break
            found.focus_stops[width] += 1
            if not stop["clear"]:
                found.hidden_focus.append(f"{label} at {width} width: {stop['what']} is under {stop['hit']}")
    page.evaluate("document.activeElement.blur()")  # the skip link Tab came round to would cover the header
    page.set_viewport_size(WIDTHS["desktop"])


SAME_SHAPE = 3  # pages of one shape (the same path but for ids: round 1, round 2...) audited at most


def crawl(page, base: str, start: str) -> Iterator[str]:
    """Every same-origin page reachable by links from `start`, breadth first, visiting each as it goes.
    A link with a query string only filters a page, so the page is visited once, without it. Of
    pages that differ only by ids (a year of rounds), the first SAME_SHAPE are visited: they are
    one template with other figures."""
    seen = {urlsplit(start).path}
    shapes = Counter([ID.sub("{id}", urlsplit(start).path)])
    queue = [start]
    while queue:
        url = queue.pop(0)
        page.goto(url)
        yield url
        for href in page.eval_on_selector_all("a[href]", "links => links.map(a => a.href)"):
            parts = urlsplit(href)
            shape = ID.sub("{id}", parts.path)
            if f"{parts.scheme}://{parts.netloc}" != base or parts.path in seen or NOT_PAGES.search(parts.path):
                continue
            if shapes[shape] >= SAME_SHAPE:
                continue
            seen.add(parts.path)
            shapes[shape] += 1
            queue.append(base + parts.path)


def sign_in(browser, link: str, found: Findings, covered: dict):
    """The sign-in link's page in Spanish, then in English, where the person signs in: an English page."""
    for language, locale in (("es", "es-ES"), ("en", "en-GB")):
        context = browser.new_context(bypass_csp=True, locale=locale, viewport=WIDTHS["desktop"])
        page = context.new_page()
        page.goto(link)  # showing the page does not use the link; its button does
        audit(page, found, f"/signin/{{token}} [{language}]")
        covered[language] += 1
        if language == "es":
            context.close()
    page.get_by_role("button", name="Continue").click()
    # Home takes this round's answer token; with it kept, the answer page shows its form to audit.
    page.wait_for_load_state("networkidle")
    return page


def audit_signed_out(browser, base: str, found: Findings, covered: dict) -> None:
    """Sign-in, its "check your inbox", an unknown link and a missing page, as a visitor."""
    for language, locale in (("en", "en-GB"), ("es", "es-ES")):
        context = browser.new_context(bypass_csp=True, locale=locale, viewport=WIDTHS["desktop"])
        page = context.new_page()
        for path in ("/signin/not-a-real-link", "/no-such-page", "/signin"):
            page.goto(base + path)
            assert page.locator("html").get_attribute("lang") == language
            audit(page, found, f"{path} [{language}]")
        page.locator("input[type=email]").fill("someone@example.org")
        with page.expect_navigation():
            page.locator("main form button[type=submit]").click()
        audit(page, found, f"/signin, sent [{language}]")
        covered[language] += 4
        context.close()


def audit_demo(browser, base: str, links: dict[str, str]) -> tuple[dict, dict]:
    """Every page each demo person reaches by links, then the pages their forms answer with, in
    English and in Spanish, at both widths. Returns what the audits found and the pages audited."""
    found = Findings()
    covered = {"en": 0, "es": 0}
    audit_signed_out(browser, base, found, covered)
    for role, link in links.items():
        page = sign_in(browser, link, found, covered)
        community = urlsplit(page.url).path.rstrip("/")  # home: /c/{id}
        urls = []
        for url in crawl(page, base, page.url):
            check_focus_is_not_hidden(page, found, f"{ID.sub('{id}', urlsplit(url).path)} ({role})")
            audit(page, found, f"{ID.sub('{id}', urlsplit(url).path)} ({role}) [en]")
            covered["en"] += 1
            urls.append(url)
        state = page.context.storage_state()
        page.context.close()
        for language, locale in (("es", "es-ES"), ("en", "en-GB")):
            # The same session in a browser of that language (the demo people follow the browser's).
            context = browser.new_context(bypass_csp=True, locale=locale, viewport=WIDTHS["desktop"], storage_state=state)
            page = context.new_page()
            if language == "es":
                for url in urls:
                    page.goto(url)
                    assert page.locator("html").get_attribute("lang") == "es", url
                    audit(page, found, f"{ID.sub('{id}', urlsplit(url).path)} ({role}) [es]")
                    covered["es"] += 1
            covered[language] += FORM_ANSWERS[role](page, base + community, found, f"({role}) [{language}]")
            context.close()
    return found, covered


# --- pages that answer a form -------------------------------------------------------------------
# No link leads to them, so the crawl cannot: a form sent empty (its errors), and what a member
# sees along the way of sharing a story and opening it again with the receipt code.


def send(page, form: str, fill: dict[str, str] | None = None) -> int:
    """Send the form matched by `form` (every text field emptied, then `fill`); the answer's status."""
    target = page.locator(form).first
    for field in target.locator("input[type=text], input[type=email], input[type=number], input:not([type]), textarea").all():
        field.fill("")
    for name, value in (fill or {}).items():
        target.locator(f"[name='{name}']").fill(value)
    with page.expect_navigation() as navigation:
        target.evaluate("f => f.requestSubmit([...f.querySelectorAll('button[type=submit]')].pop())")
    return navigation.value.status


FACILITATOR_FORMS = ("surveys", "instruments/new", "teams", "members", "settings", "insights/objectives")


def facilitator_form_answers(page, home: str, found: Findings, label: str) -> int:
    """Each of the facilitator's forms sent empty, and a note pinned empty to a round: the errors."""
    audited = 0
    for path in FACILITATOR_FORMS:
        page.goto(f"{home}/{path}")
        action = urlsplit(home).path + "/" + path.removesuffix("/new")
        assert send(page, f"main form[action='{action}']") == 422, path
        assert page.locator(".error, [aria-invalid=true]").count() > 0, path
        audit(page, found, f"/c/{{id}}/{path}, sent empty {label}")
        audited += 1
    page.goto(f"{home}/insights")
    page.goto(page.locator("a[href*='/insights/rounds/']").first.evaluate("a => a.href"))
    assert send(page, "main form[action$='/notes']") == 422
    audit(page, found, f"/c/{{id}}/insights/rounds/{{id}}, an empty note {label}")
    return audited + 1


def member_form_answers(page, home: str, found: Findings, label: str) -> int:
    """Sharing a story without JavaScript's private mode (our scripts are held back): the form's
    errors, the warning about identifying details, the receipt; then "My story" with a wrong code
    and with the right one."""
    page.context.route("**/static/*.js", lambda route: route.abort())
    page.goto(f"{home}/stories/new")
    assert send(page, "main form[action$='/stories']") == 422
    audit(page, found, f"/c/{{id}}/stories/new, sent empty {label}")
    story = {
        "title": "The survey we sent at the wrong time",
        "happened": "We sent it in the holidays; ask maria.lopez@example.org how few answered.",
        "learned": "Timing decides who answers.",
    }
    assert send(page, "main form[action$='/stories']", story) == 200
    assert page.locator("input[name=confirmed]").count() == 1  # the email address was flagged
    audit(page, found, f"/c/{{id}}/stories/new, identifying details {label}")
    with page.expect_navigation():
        page.locator("main form[action$='/stories'] button[type=submit]").last.click()
    code = page.locator("#receipt-code").inner_text()
    audit(page, found, f"/c/{{id}}/stories, receipt {label}")
    # My story: static/mine.js sends the code with no cookie after the quiet window and puts the
    # answer in place of the page's main part (no navigation).
    page.goto(f"{home}/stories/mine")
    page.locator("main form[action='/stories/mine'] [name=code]").fill("AAAA-BBBB-CCCC-DDDD")
    page.locator("main form[action='/stories/mine'] button[type=submit]").click()
    page.locator("main .error, main [aria-invalid=true]").first.wait_for(timeout=15_000)
    audit(page, found, f"/c/{{id}}/stories/mine, a wrong code {label}")
    page.locator("main form[action='/stories/mine'] [name=code]").fill(code)
    page.locator("main form[action='/stories/mine'] button[type=submit]").click()
    page.locator("main form[action='/stories/mine/withdraw'] button").wait_for(timeout=15_000)
    audit(page, found, f"/c/{{id}}/stories/mine, the story {label}")
    return 5


FORM_ANSWERS = {"facilitator": facilitator_form_answers, "member": member_form_answers}


def report(found: dict) -> str:
    lines = []
    for (label, rule, target), hits in sorted(found.items()):
        widths = "+".join(sorted({width for width, *_ in hits}))
        _, impact, help_text, url = sorted(hits)[0]
        lines.append(f"{label} at {widths} width: {rule} ({impact}) on `{target}`: {help_text} ({url})")
    return "\n".join(lines)


@pytest.fixture(scope="module")
def demo_crawl(served_once) -> Findings:
    """Every page, and the pages forms answer with, in English and Spanish at 1280 and 390 px, once
    for the tests below: one seeded app, one browser, about two minutes. The pages are the same HTML
    from either database, so the crawl runs on SQLite only (served_once)."""
    from playwright.sync_api import sync_playwright

    base, links = served_once
    with sync_playwright() as playwright:
        browser = launch(playwright)
        found, covered = audit_demo(browser, base, links)
        browser.close()
    # The crawl really went through the demo: 68 pages a language when written (SAME_SHAPE of each kind).
    assert covered["en"] > 60 and covered["es"] > 60, covered
    return found


def test_every_demo_page_passes_axe_in_both_languages_and_widths(demo_crawl: Findings) -> None:
    found = demo_crawl.axe
    assert not found, f"{len(found)} serious or critical axe violations:\n" + report(found)


def test_no_page_scrolls_sideways_clips_a_table_or_shrinks_chart_text_on_a_390px_phone(demo_crawl: Findings) -> None:
    assert demo_crawl.smallest_chart_text is not None  # the crawl met charts and measured them
    problems = "\n".join(f"{label}: {'; '.join(found)}" for label, found in sorted(demo_crawl.phone.items()))
    assert not demo_crawl.phone, (
        f"{len(demo_crawl.phone)} pages do not fit a 390 px phone (smallest chart text "
        f"{demo_crawl.smallest_chart_text:.1f} px):\n{problems}"
    )


def test_focus_on_the_answer_form_is_never_hidden_behind_the_send_bar(demo_crawl: Findings) -> None:
    stops = demo_crawl.focus_stops  # the answer form's, member's and facilitator's, at each width
    assert stops["desktop"] > 20 and stops["phone"] > 20, stops
    assert not demo_crawl.hidden_focus, f"{len(demo_crawl.hidden_focus)} focused elements are hidden:\n" + "\n".join(
        demo_crawl.hidden_focus
    )


# --- the keyboard alone --------------------------------------------------------------------------

FOCUSED = """() => {
  const e = document.activeElement;
  if (!e || e === document.body) return null;
  const ring = el => { const s = getComputedStyle(el);
    return (s.outlineStyle !== "none" && parseFloat(s.outlineWidth) > 0) || s.boxShadow !== "none"; };
  const label = e.closest("label");
  return {tag: e.tagName.toLowerCase(), type: e.type || "", name: e.getAttribute("name") || "", checked: !!e.checked,
    text: (e.closest("label") || e).innerText.trim().slice(0, 80), label: e.getAttribute("aria-label") || "",
    visible: e.matches(":focus-visible") && (ring(e) || (label !== null && ring(label)))};
}"""


def tab_to(page, wanted, limit: int = 120) -> dict:
    """Press Tab until the focused element satisfies `wanted`; every stop on the way shows its focus."""
    stops = []
    for _ in range(limit):
        page.keyboard.press("Tab")
        focused = page.evaluate(FOCUSED)
        if focused is None:
            continue
        stops.append(focused)
        assert focused["visible"], f"focus is not visible on {focused} (after {stops[-4:-1]})"
        if wanted(focused):
            return focused
    raise AssertionError(f"Tab never reached it in {limit} presses; last stops: {stops[-8:]}")


def keyboard_sign_in(page, link: str) -> None:
    page.goto(link)
    tab_to(page, lambda f: f["tag"] == "button" and f["text"] == "Continue")
    with page.expect_navigation():
        page.keyboard.press("Enter")


def follow(page, text: str) -> None:
    tab_to(page, lambda f: f["tag"] == "a" and f["text"] == text)
    with page.expect_navigation():
        page.keyboard.press("Enter")


def test_answer_form_story_form_and_trend_work_by_keyboard_alone(served) -> None:
    from playwright.sync_api import expect, sync_playwright

    base, links = served
    with sync_playwright() as playwright:
        browser = launch(playwright)
        page = browser.new_page(locale="en-GB", viewport=WIDTHS["desktop"])  # the app's CSP in force
        problems: list[str] = []
        page.on("pageerror", lambda error: problems.append(str(error)))
        keyboard_sign_in(page, links["member"])

        # The answer form: each statement is one Tab stop; Space picks, arrow keys move the choice.
        follow(page, "Answer now")
        expect(page.locator("summary", has_text="How your answers travel")).to_be_visible()  # the details, folded
        for _question in range(7):
            first = tab_to(page, lambda f: f["type"] == "radio")
            page.keyboard.press("Space")
            picked = page.evaluate(FOCUSED)
            for _ in range(8):  # along the scale from "Strongly disagree"
                if picked["text"] == "Agree":
                    break
                page.keyboard.press("ArrowRight")
                picked = page.evaluate(FOCUSED)
            assert picked["checked"] and picked["text"] == "Agree" and picked["name"] == first["name"], picked
        expect(page.locator("fieldset.likert input:checked")).to_have_count(7)
        tab_to(page, lambda f: f["tag"] == "textarea")
        page.keyboard.type("Say thank you for the bad news too.")
        tab_to(page, lambda f: f["tag"] == "button" and f["text"] == "Send my answers")
        page.keyboard.press("Enter")
        expect(page.locator("#redeemed")).to_contain_text("Your answers were added to the totals")
        assert page.evaluate("document.activeElement.id") == "redeemed"  # the thanks is read out where focus is

        # The story form: type into each field, Space ticks a topic, Enter on the button shares it.
        page.goto(base)
        follow(page, "Share a failure")
        expect(page.get_by_role("heading", name="Share a failure")).to_be_visible()
        for label, words in (
            ("Title", "The pilot we stopped too late"),
            ("What happened", "We kept a pilot running after the data said stop."),
            ("What you learned", "Set the stopping rule before starting."),
            ("What you would do differently", "Write the rule down and share it."),
        ):
            field = page.get_by_label(label, exact=True)
            name = field.get_attribute("name")
            tab_to(page, lambda f, name=name: f["name"] == name)
            page.keyboard.type(words)
        topic = tab_to(page, lambda f: f["type"] == "checkbox" and f["name"] == "tags")
        page.keyboard.press("Space")
        assert page.evaluate(FOCUSED)["checked"], topic
        tab_to(page, lambda f: f["tag"] == "button" and f["text"] == "Share my story")
        page.keyboard.press("Enter")
        expect(page.locator("#receipt-code")).to_have_text(re.compile(r"^\S{4}-\S{4}-\S{4}-\S{4}$"))
        page.context.clear_cookies()

        # The trend page: from the facilitator's home to a chart's numbers, opened with Enter.
        keyboard_sign_in(page, links["facilitator"])
        follow(page, "Insights")
        expect(page.get_by_role("heading", name="Psychological safety")).to_be_visible()
        tab_to(page, lambda f: f["tag"] == "summary" and f["text"] == "The numbers as a table")
        page.keyboard.press("Enter")
        table = page.locator("details.chart-data[open]").first
        expect(table.locator("table")).to_be_visible()
        region = tab_to(page, lambda f: f["tag"] == "div" or f["tag"] == "a")
        assert region["tag"] == "div" and region["label"], region  # the table itself, to scroll it on a phone
        assert problems == [], problems
        browser.close()
