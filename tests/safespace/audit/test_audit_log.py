"""The audit log: each kind of facilitator and operator act is logged, who, what, when, and shown
to the community's facilitators; nothing a member does (answer, share, react, reply, read) is."""

from __future__ import annotations

import csv
import io

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession

from safespace import clock
from safespace.audit import entries as audit
from safespace.audit.models import AuditEntry
from safespace.identity.models import Membership, Person
from safespace.stories import services as stories
from safespace.stories.models import Story
from tests.helpers import api, app_routes, make_community, minimal_body, post_form, sign_in, url_for
from tests.safespace.insights.conftest import answered_round, form, route_values
from tests.safespace.test_cli import run

MEMBERS = [f"m{i}@x.org" for i in range(6)]
STORY = {"title": "The consultation nobody came to", "happened": "We announced it too late.",
         "learned": "Start outreach a month before.", "differently": "Ask the groups when they can meet."}  # fmt: skip


async def entries(db: AsyncSession) -> list[AuditEntry]:
    return list(await db.scalars(select(AuditEntry).order_by(AuditEntry.at).execution_options(populate_existing=True)))


async def logged(db: AsyncSession, kind: str) -> list[AuditEntry]:
    return [e for e in await entries(db) if e.kind == kind]


async def test_no_member_act_on_any_route_writes_an_entry(client, db: AsyncSession, engine: AsyncEngine, settings) -> None:
    """A member answers, shares, reacts, replies and reads; then calls every route of the app."""
    pulse = await answered_round(client, db, engine, settings, {"Team": MEMBERS}, {"m0@x.org": form(4, "fine")}, close=False)
    community = pulse.world.community
    for n in range(stories.BATCH_SIZE):
        await stories.store_story(db, pulse.keyring, community.id, stories.StoryText(f"t{n}", "h", "l", "d"), [], False, False)
    await stories.release_due(db, pulse.keyring, clock.now(), 0, 0)
    story_id = await db.scalar(select(Story.id).where(Story.community_id == community.id, Story.status == "released"))
    member_id = await db.scalar(select(Membership.id).join(Person).where(Person.email == "m1@x.org"))
    await db.commit()
    await sign_in(client, db, "m0@x.org")
    wall = f"/c/{community.id}/stories"
    assert (await post_form(client, wall, STORY | {"confirmed": "yes"})).status_code == 200
    await post_form(client, f"{wall}/{story_id}/react", {"kind": "helps_me"})
    await post_form(client, f"{wall}/{story_id}/reply", {"reply": "Same here."})
    assert (await client.get(f"/c/{community.id}/summary")).status_code == 200
    values = route_values(pulse, story_id=story_id, membership_id=member_id)
    for method, template in sorted(app_routes(client.app), key=lambda route: route == ("POST", "/signout")):
        url = url_for(client.app, method, template, values)
        if method == "GET":
            await client.get(url)
        elif url.startswith("/api/"):
            await api(client, method, url, minimal_body(client.app, method, template))
        else:
            await post_form(client, url, {})
    written = await entries(db)
    assert not [e for e in written if "m0@x.org" in e.actor or "m0@x.org" in e.detail], [(e.kind, e.actor, e.detail) for e in written]
    assert written == [], "a member's calls wrote audit entries"


async def test_k_change_is_logged_and_shown_to_facilitators(client, db: AsyncSession) -> None:
    world = await make_community(db, teams={"Team": MEMBERS})
    await sign_in(client, db, world.facilitator)
    settings_url = f"/c/{world.community.id}/settings"
    saved = await post_form(client, settings_url, {"name": world.community.name, "vision": "v", "min_group_size": "7",
                                                   "comment_threshold": "10", "time_zone": "Europe/Madrid"})  # fmt: skip
    assert saved.status_code == 303, saved.text
    [entry] = await logged(db, "settings")
    assert entry.actor == world.facilitator and "k 5 → 7" in entry.detail
    page = await client.get(f"/c/{world.community.id}/audit")
    assert page.status_code == 200 and "k 5 → 7" in page.text and world.facilitator in page.text
    exported = await client.get(f"/c/{world.community.id}/audit/export.csv")
    rows = list(csv.reader(io.StringIO(exported.text)))
    assert rows[0] == ["when_utc", "who", "what", "detail"] and any(r[2] == "settings" and "k 5 → 7" in r[3] for r in rows[1:])
    await sign_in(client, db, MEMBERS[0])
    assert (await client.get(f"/c/{world.community.id}/audit")).status_code == 403


async def test_deactivation_and_role_change_are_logged(client, db: AsyncSession) -> None:
    world = await make_community(db, teams={"Team": MEMBERS})
    ids = dict((await db.execute(select(Person.email, Membership.id).join(Membership))).all())
    await sign_in(client, db, world.facilitator)
    await post_form(client, f"/c/{world.community.id}/members/{ids['m1@x.org']}", {"action": "deactivate"})
    await post_form(client, f"/c/{world.community.id}/members/{ids['m2@x.org']}", {"action": "make_facilitator"})
    assert [e.detail for e in await logged(db, "member")] == ["deactivate m1@x.org"]
    assert [e.detail for e in await logged(db, "role")] == ["make_facilitator m2@x.org"]


async def test_the_api_logs_member_changes_in_the_pages_words(client, db: AsyncSession) -> None:
    world = await make_community(db, teams={"Team": MEMBERS})
    ids = dict((await db.execute(select(Person.email, Membership.id).join(Membership))).all())
    await sign_in(client, db, world.facilitator)
    url = f"/api/v1/communities/{world.community.id}/members/{ids['m1@x.org']}"
    assert (await api(client, "PATCH", url, {"status": "deactivated"})).status_code == 200
    assert (await api(client, "PATCH", url, {"status": "active", "role": "facilitator"})).status_code == 200
    assert [e.detail for e in await logged(db, "member")] == ["deactivate m1@x.org", "reactivate m1@x.org"]
    assert [(e.actor, e.detail) for e in await logged(db, "role")] == [(world.facilitator, "make_facilitator m1@x.org")]


async def test_survey_schedule_and_early_close_are_logged(client, db: AsyncSession, engine: AsyncEngine, settings) -> None:
    pulse = await answered_round(client, db, engine, settings, {"Team": MEMBERS}, {}, close=False)
    community_id, survey_url = pulse.world.community.id, f"/c/{pulse.world.community.id}/surveys/{pulse.survey_id}"
    await sign_in(client, db, pulse.world.facilitator)
    await post_form(client, f"{survey_url}/pause", {})
    today = clock.now().date().isoformat()
    schedule = {"every": "monthly", "weekday": "0", "day_of_month": "15", "open_days": "5", "start": today}
    assert (await post_form(client, f"{survey_url}/schedule", schedule)).status_code == 303
    closed = await post_form(client, f"{survey_url}/close-round", {})
    assert closed.status_code == 303
    assert [e.detail for e in await logged(db, "survey")] == [
        "paused “Pulse”", f"schedule of “Pulse”: every monthly, weekday 0, day_of_month 15, open_days 5, start {today}"]
    [early] = await logged(db, "round-closed")
    assert early.actor == pulse.world.facilitator and early.detail == "round 1 of “Pulse”"
    assert all(e.detail != "" for e in await entries(db)) and community_id


async def test_a_custom_instrument_is_logged(client, db: AsyncSession) -> None:
    world = await make_community(db)
    await sign_in(client, db, world.facilitator)
    await client.get(f"/c/{world.community.id}/instruments/new")
    made = await post_form(client, f"/c/{world.community.id}/instruments", {"name": "Meetings", "kind": "agreement", "points": "5", "item1": "Our meetings end with next steps."})
    assert made.status_code == 303, made.text
    [entry] = await logged(db, "survey")
    assert entry.actor == world.facilitator and entry.detail == "instrument “Meetings” created"


async def test_moderation_decision_is_logged(client, db: AsyncSession) -> None:
    world = await make_community(db, teams={"Team": MEMBERS})
    await sign_in(client, db, world.facilitator)
    await post_form(client, f"/c/{world.community.id}/stories/review/moderation/on", {})
    assert [(e.actor, e.detail) for e in await logged(db, "moderation")] == [(world.facilitator, "moderation on")]


async def test_export_download_is_logged(client, db: AsyncSession, engine: AsyncEngine, settings) -> None:
    pulse = await answered_round(client, db, engine, settings, {"Team": MEMBERS}, {m: form(4) for m in MEMBERS})
    await sign_in(client, db, pulse.world.facilitator)
    download = await client.get(f"/c/{pulse.world.community.id}/insights/rounds/{pulse.round.id}/results.csv")
    assert download.status_code == 200
    [entry] = await logged(db, "export")
    assert entry.actor == pulse.world.facilitator and entry.detail == "round 1 results (csv)"


async def test_key_rotation_and_backup_are_logged_for_every_community(client, db: AsyncSession, settings, tmp_path) -> None:
    world = await make_community(db)
    assert run(settings, "keys", "rotate").returncode == 0
    backup = run(settings, "backup", str(tmp_path / "copy.backup"))
    assert backup.returncode == 0, backup.stderr
    assert [(e.actor, e.community_id) for e in await logged(db, "keys")] == [("operator", None)]
    assert [(e.actor, e.community_id) for e in await logged(db, "backup")] == [("operator", None)]
    await sign_in(client, db, world.facilitator)
    page = (await client.get(f"/c/{world.community.id}/audit")).text
    assert "keys" in page and "backup" in page


async def test_requiring_single_sign_on_is_logged(client, db: AsyncSession, settings) -> None:
    world = await make_community(db)
    await sign_in(client, db, world.facilitator)
    # No provider is configured here: the request is refused, and a refusal is not an act.
    await post_form(client, f"/c/{world.community.id}/settings/sso", {"require": "yes"})
    assert await logged(db, "sso") == []
    await post_form(client, f"/c/{world.community.id}/settings/sso", {"require": "no"})
    assert [(e.actor, e.detail) for e in await logged(db, "sso")] == [(world.facilitator, "optional")]


async def test_the_log_is_paginated_newest_first(client, db: AsyncSession) -> None:
    world = await make_community(db)
    for n in range(120):
        await audit.record(db, world.community.id, world.facilitator, "settings", f"change {n:03}")
    await db.commit()
    await sign_in(client, db, world.facilitator)
    first = (await client.get(f"/c/{world.community.id}/audit")).text
    third = (await client.get(f"/c/{world.community.id}/audit?p=3")).text
    assert first.count('class="audit-detail"') == 50 and "Page 1 of 3" in first and "?p=2" in first
    assert third.count('class="audit-detail"') == 20 and "Page 3 of 3" in third and "?p=2" in third and "?p=4" not in third
