"""A closed round's page is kept rendered (insights/round_page.py). Each thing on it that can still
change after the close is changed here after the page was kept, and the page is read again over
HTTP: it must show the change. Nothing of one viewer may reach another: the CSRF field is each
viewer's own, and members and strangers get no kept page."""

from __future__ import annotations

import re
import uuid
from datetime import timedelta

from sqlalchemy.ext.asyncio import AsyncSession

from safespace import clock
from safespace.identity import services as identity
from safespace.identity.models import Community
from tests.helpers import make_community, post_form, sign_in
from tests.safespace.insights.conftest import answered_round, form
from tests.safespace.pulse.conftest import PS

MEMBERS = [f"m{i}@x.org" for i in range(6)]
STATEMENT = next(item for item in PS.items if not item.reverse)
CSRF_FIELD = re.compile(r'name="_csrf_token" value="([^"]*)"')


async def _closed(client, db: AsyncSession, engine, settings):
    answers = {e: form(3 + i % 3) for i, e in enumerate(MEMBERS)}
    closed = await answered_round(client, db, engine, settings, {"Estuary": MEMBERS}, answers)
    await sign_in(client, db, closed.world.facilitator)
    page = f"{closed.base}/rounds/{closed.round.id}"
    assert (await client.get(page)).status_code == 200  # kept from here on
    return closed, page


async def test_a_kept_round_page_shows_notes_pinned_and_removed(client, db: AsyncSession, engine, settings) -> None:
    closed, page = await _closed(client, db, engine, settings)
    assert (await post_form(client, f"{page}/notes", {"note": "Reorganisation announced"})).status_code == 303
    shown = (await client.get(page)).text
    assert "Reorganisation announced" in shown
    note_id = re.search(r"/notes/([0-9a-f-]{36})/delete", shown).group(1)
    assert (await post_form(client, f"{page}/notes/{note_id}/delete", {})).status_code == 303
    assert "Reorganisation announced" not in (await client.get(page)).text


async def test_a_kept_round_page_shows_actions_their_status_and_the_summary(client, db: AsyncSession, engine, settings) -> None:
    closed, page = await _closed(client, db, engine, settings)
    community = closed.world.community
    about = {"round": str(closed.round.id), "instrument": "psychological_safety", "item": STATEMENT.key, "owner": "Ana"}
    due = (clock.now() + timedelta(days=30)).date().isoformat()
    made = await post_form(client, f"/c/{community.id}/insights/actions/", about | {"title": "Retros open with failures", "due_on": due})
    assert made.status_code == 303
    shown = (await client.get(page)).text
    assert "Retros open with failures · planned" in shown
    assert (await post_form(client, made.headers["location"], {"status": "in_progress", "text": "Two done"})).status_code == 303
    shown = (await client.get(page)).text
    assert "Retros open with failures · in progress" in shown and "Retros open with failures · planned" not in shown
    publish = f"/c/{community.id}/insights/actions/summaries/{closed.round.id}"
    assert 'name="summary"' in shown
    assert (await post_form(client, publish, {"summary": "Facilitators will speak first."})).status_code == 303
    shown = (await client.get(page)).text
    assert "Facilitators will speak first." in shown and 'name="summary"' not in shown


async def test_a_kept_round_page_follows_the_team_and_community_names(client, db: AsyncSession, engine, settings) -> None:
    closed, page = await _closed(client, db, engine, settings)
    community_id, team_id = closed.world.community.id, closed.world.teams["Estuary"]
    assert "Estuary" in (await client.get(page)).text
    assert (await post_form(client, f"/c/{community_id}/teams/{team_id}", {"name": "Harbour"})).status_code == 303
    shown = (await client.get(page)).text
    assert "Harbour" in shown and "Estuary" not in shown
    community = await db.get(Community, community_id)
    community.name = "Riverside Planners"
    await db.commit()
    shown = (await client.get(page)).text
    assert "<h1>Riverside Planners</h1>" in shown and "Coastal Planners" not in shown


async def test_each_facilitator_gets_their_own_csrf_field_in_a_kept_round_page(client, db: AsyncSession, engine, settings) -> None:
    closed, page = await _closed(client, db, engine, settings)
    first = (await client.get(page)).text
    first_tokens = set(CSRF_FIELD.findall(first))
    assert len(CSRF_FIELD.findall(first)) >= 3 and first_tokens == {client.cookies["safespace_csrf"]}  # every form, the header's too
    assert "\x00" not in first
    assert '<a href="/profile">fac</a>' in first
    second, _ = await identity.get_or_create_person(db, "cofac@x.org")
    identity.add_membership(db, closed.world.community.id, second.id, None, "active").role = "facilitator"
    await db.commit()
    client.cookies.clear()
    await sign_in(client, db, "cofac@x.org")
    other = (await client.get(page)).text
    assert set(CSRF_FIELD.findall(other)) == {client.cookies["safespace_csrf"]} and not first_tokens & set(CSRF_FIELD.findall(other))
    assert '<a href="/profile">cofac</a>' in other and '<a href="/profile">fac</a>' not in other  # the header is the viewer's own
    # The kept page's form works with the field it was given.
    assert (await post_form(client, f"{page}/notes", {"note": "From the second facilitator"})).status_code == 303


async def test_members_and_other_communities_get_no_kept_round_page(client, db: AsyncSession, engine, settings) -> None:
    closed, page = await _closed(client, db, engine, settings)
    other = await make_community(db, name="Other", facilitator=closed.world.facilitator, teams={"Solo": []})
    assert (await client.get(f"/c/{other.community.id}/insights/rounds/{closed.round.id}")).status_code == 404
    assert (await client.get(f"{closed.base}/rounds/{uuid.uuid4()}")).status_code == 404
    client.cookies.clear()
    await sign_in(client, db, MEMBERS[0])
    refused = await client.get(page)
    assert refused.status_code == 403 and STATEMENT.text.get("en") not in refused.text
