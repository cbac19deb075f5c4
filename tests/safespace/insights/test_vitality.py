"""The vitality page of a real community: its charts start when the community did, and their
summaries say what the months held (issue 17 item 8)."""

from __future__ import annotations

import json
import uuid
from datetime import date, timedelta
from zoneinfo import ZoneInfo

from babel.dates import format_date
from sqlalchemy.ext.asyncio import AsyncSession

from safespace import clock
from safespace.privacy.crypto import Keyring, associated_data
from safespace.stories.models import Story
from tests.helpers import make_community, sign_in
from tests.safespace.insights.conftest import answered_round, form


def _month(day: date) -> str:
    return format_date(day, "MMM yy", locale="en")


async def test_a_community_created_this_month_charts_no_earlier_month(client, db: AsyncSession, engine, settings) -> None:
    """A new community showed eleven months of zeros from before it existed."""
    members = [f"m{i}@x.org" for i in range(6)]
    closed = await answered_round(client, db, engine, settings, {"Team": members}, {e: form(4) for e in members})
    community = closed.world.community
    today = clock.now().astimezone(ZoneInfo(community.time_zone)).date()
    await sign_in(client, db, "fac@x.org")

    vitality = (await client.get(f"{closed.base}/vitality.json")).json()
    assert [month["month"] for month in vitality["activity"]] == [today.strftime("%Y-%m")]
    founded = community.created_at.astimezone(ZoneInfo(community.time_zone)).date()
    assert all(date.fromisoformat(point["closed_on"]) >= founded for point in vitality["participation"])

    page = (await client.get(f"{closed.base}/vitality")).text
    for chart in ("vitality-stories", "vitality-replies", "vitality-reactions"):
        assert f'id="{chart}-svg"' in page, chart
    assert page.count(f">{_month(today)}<") >= 3  # one column per monthly chart, this month's
    earlier = _month(today.replace(day=1) - timedelta(days=1))
    assert f">{earlier}<" not in page, f"{earlier} is before the community existed"
    trend = (await client.get(f"{closed.base}/trend.json?survey={closed.survey_id}")).json()
    assert all(date.fromisoformat(p["closed_on"]) >= founded for i in trend["instruments"] for p in i["rounds"])


async def test_a_vitality_summary_counts_every_month_not_the_first_and_last(client, db: AsyncSession, settings) -> None:
    """Stories released last month and none yet this month read "Level: 0 at the start, 0 now"."""
    world = await make_community(db, teams={"Team": [f"m{i}@x.org" for i in range(6)]})
    community = world.community
    zone = ZoneInfo(community.time_zone)
    today = clock.now().astimezone(zone).date()
    community.created_at = clock.now() - timedelta(days=75)
    last_month = today.replace(day=1) - timedelta(days=3)
    keyring = Keyring.load(settings.encryption_key_path)
    for position in range(3):
        story_id = uuid.uuid4()
        text = json.dumps({"title": f"Story {position}", "happened": "-", "learned": "-", "differently": "-"})
        db.add(Story(id=story_id, community_id=community.id, status="released", released_on=last_month, position=position, tags=[],
                     body=keyring.seal(text, associated_data("story", "body", story_id)),
                     receipt_locator="ABCD", receipt_salt=b"s" * 16, receipt_hash=uuid.uuid4().bytes * 2))  # fmt: skip
    await db.commit()
    await sign_in(client, db, "fac@x.org")

    page = (await client.get(f"/c/{community.id}/insights/vitality")).text
    assert "Level: 0 at the start, 0 now" not in page
    first = _month(community.created_at.astimezone(zone).date())
    assert f"3 in all from {first} to {_month(today)}; the most in {_month(last_month)} (3); 0 so far in {_month(today)}." in page
    assert f"None yet since {first}." in page  # no replies, no reactions
