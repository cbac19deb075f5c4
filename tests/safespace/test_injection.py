"""Hostile text in every field people can type into: stored exactly, shown as text, never run.

The corpus mixes XSS, SQL, template and header-injection payloads. Each field gets them, through
the same forms people use; then every page that shows the field is read. The browser half
(tests/e2e/test_injection.py) checks in Chromium that no dialog opened and no script ran.
"""

from __future__ import annotations

import re
from datetime import timedelta

import httpx
from markupsafe import escape
from sqlalchemy import select, text
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession

from safespace import clock
from safespace.identity.models import Community, Person, Team
from tests.helpers import post_form, sign_in
from tests.safespace.insights.conftest import answered_round, form

# Single-line payloads (names, titles, tags): one line each, as the forms keep them.
XSS = '<script>window.__pwned="script"</script>'
IMG = '"><img src=x onerror="window.__pwned=1">'
SVG = "<svg/onload=window.__pwned=2>"
SQL = "Robert'); DROP TABLE person; --"
TEMPLATE = "{{ 7*7 }} {% if true %}jinja{% endif %} ${7*7} #{7*7}"
QUOTES = "\"'`<>&amp;"
CORPUS = (XSS, IMG, SVG, SQL, TEMPLATE, QUOTES)
# Markup that would run if any of the above reached a page unescaped.
LIVE = ("<script>window.__pwned", "<img src=x onerror", "<svg/onload")


def assert_inert(body: str, where: str) -> None:
    for live in LIVE:
        assert live not in body, f"{where} shows {live!r} unescaped"
    # Evaluated, the template payload would leave "jinja" without its tags around it.
    assert body.count("jinja") == body.count("%}jinja{%"), f"{where} evaluated a template payload"


async def pages(client: httpx.AsyncClient, paths: list[str]) -> dict[str, str]:
    found = {}
    for path in paths:
        response = await client.get(path)
        assert response.status_code == 200, (path, response.status_code)
        found[path] = response.text
    return found


async def test_hostile_text_is_stored_exactly_and_shown_inert(client, db: AsyncSession, engine: AsyncEngine, settings) -> None:
    members = [f"m{i}@x.org" for i in range(10)]
    # A pulse round whose ten answers carry hostile comments (10 meet the comment threshold).
    closed = await answered_round(
        client, db, engine, settings, {"Energy": members}, {e: form(4, comment=CORPUS[i % len(CORPUS)]) for i, e in enumerate(members)}
    )
    community_id = closed.world.community.id
    base = f"/c/{community_id}"
    await sign_in(client, db, "fac@x.org")
    await client.get("/profile")
    assert (await post_form(client, "/profile", {"display_name": XSS, "language": "en"})).status_code == 303
    await client.get(f"{base}/settings")
    settings_form = {"name": SVG, "vision": "\n".join(CORPUS), "min_group_size": "5", "comment_threshold": "10", "time_zone": "Europe/Madrid"}
    assert (await post_form(client, f"{base}/settings", settings_form)).status_code == 303
    assert (await post_form(client, f"{base}/teams", {"name": IMG})).status_code in (200, 303)
    assert (await post_form(client, f"{base}/stories/review/topics", {"tags": "\n".join(CORPUS)})).status_code == 303
    assert (await post_form(client, f"{base}/insights/rounds/{closed.round.id}/notes", {"note": TEMPLATE})).status_code == 303
    due = (clock.now() + timedelta(days=30)).date().isoformat()
    objective = {"title": SQL, "metric": "stories_per_month", "direction": "raise", "target": "50", "baseline": "", "due_on": due}
    assert (await post_form(client, f"{base}/insights/objectives", objective)).status_code == 303

    # Three members share stories with the corpus in every part and every topic chosen.
    tags = list(CORPUS)
    for i, author in enumerate(members[:3]):
        client.cookies.clear()
        await sign_in(client, db, author)
        await client.get(f"{base}/stories/new")
        story = {"title": CORPUS[i], "happened": "\n".join(CORPUS), "learned": QUOTES, "differently": TEMPLATE, "tags": tags, "confirmed": "yes"}
        assert (await post_form(client, f"{base}/stories", story)).status_code == 200
    from tests.safespace.stories.test_stories import _release

    await _release(engine, settings)
    wall = await client.get(f"{base}/stories")
    story_id = re.search(r'id="s-([0-9a-f-]{36})"', wall.text).group(1)
    await post_form(client, f"{base}/stories/{story_id}/reply", {"reply": "\n".join(CORPUS)})
    for author in members[3:5]:
        client.cookies.clear()
        await sign_in(client, db, author)
        await post_form(client, f"{base}/stories/{story_id}/reply", {"reply": XSS})
    await _release(engine, settings)

    # Stored exactly (single-line fields as typed; multi-line ones with their lines).
    fac = await db.scalar(select(Person).where(Person.email == "fac@x.org"))
    await db.refresh(fac)
    community = await db.get_one(Community, community_id)
    await db.refresh(community)
    assert fac.display_name == XSS
    topics = [t[:40] for t in CORPUS]  # topics are kept to 40 characters, as the page says
    assert (community.name, community.vision, community.story_tags) == (SVG, "\n".join(CORPUS), topics)
    assert IMG in {t.name for t in await db.scalars(select(Team).where(Team.community_id == community_id))}
    async with engine.connect() as connection:  # the SQL payload did nothing to the schema
        assert (await connection.execute(text("SELECT count(*) FROM person"))).scalar() > 10

    # Shown inert everywhere, to members and facilitators alike.
    member_pages = [base, f"{base}/stories", f"{base}/stories/new", f"{base}/summary", f"{base}/rounds/{closed.round.id}/results", "/communities"]
    seen = await pages(client, member_pages)
    client.cookies.clear()
    await sign_in(client, db, "fac@x.org")
    facilitator_pages = [
        base, f"{base}/settings", f"{base}/teams", f"{base}/members", f"{base}/stories/review", f"{base}/insights",
        f"{base}/insights/rounds/{closed.round.id}", f"{base}/insights/rounds/{closed.round.id}/report",
        f"{base}/insights/teams", f"{base}/insights/objectives", "/profile",
    ]  # fmt: skip
    seen |= await pages(client, facilitator_pages)
    for path, body in seen.items():
        assert_inert(body, path)
    everything = "\n".join(seen.values())
    for payload in CORPUS:  # each payload is on some page, as text (escaped the way Jinja does)
        assert str(escape(payload)) in everything, payload
    assert str(escape(XSS)) in seen[f"{base}/insights/rounds/{closed.round.id}"]  # a released comment


async def test_header_injection_through_redirect_targets(client, db: AsyncSession) -> None:
    """A next= with a line break or another host never reaches a Location header."""
    for target in ("/x%0d%0aSet-Cookie:%20pwned=1", "//evil.example/", "/\\evil.example", "https://evil.example/"):
        response = await client.get(f"/signin?next={target}")
        assert response.status_code == 200
        assert "pwned" not in response.headers.get("set-cookie", "")
        assert "evil.example" not in response.text
