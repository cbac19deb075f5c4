"""The answer form is read in one statement (pulse/answer_page.py): it must still answer only the
community's own members about the community's own rounds, and show the round as it stands."""

from __future__ import annotations

import uuid
from zoneinfo import ZoneInfo

from sqlalchemy.ext.asyncio import AsyncSession

from safespace.identity.models import Community
from tests.helpers import make_community, sign_in


async def test_the_form_is_only_for_members_and_only_for_the_communitys_rounds(client, db: AsyncSession, pulse) -> None:
    other = await make_community(db, name="Other", facilitator="m0@x.org", teams={"Solo": ["outsider@x.org"]})
    await sign_in(client, db, "m0@x.org")
    form = await client.get(pulse.url)
    assert form.status_code == 200 and "Prefer not to answer" in form.text
    assert (await client.get(f"/c/{other.community.id}/rounds/{pulse.round.id}")).status_code == 404  # another community's round
    assert (await client.get(f"/c/{pulse.world.community.id}/rounds/{uuid.uuid4()}")).status_code == 404
    client.cookies.clear()
    await sign_in(client, db, "outsider@x.org")
    stranger = await client.get(pulse.url)
    assert stranger.status_code == 404 and "Prefer not to answer" not in stranger.text


async def test_the_form_shows_the_closing_time_in_the_communitys_time_zone(client, db: AsyncSession, pulse) -> None:
    await sign_in(client, db, "m1@x.org")
    community = await db.get(Community, pulse.world.community.id)
    for zone in ("Pacific/Kiritimati", "America/Adak"):  # 24 hours apart
        community.time_zone = zone
        await db.commit()
        closes = pulse.round.closes_at.astimezone(ZoneInfo(zone)).strftime("%Y-%m-%d %H:%M %Z")
        assert f"open until {closes}" in (await client.get(pulse.url)).text
