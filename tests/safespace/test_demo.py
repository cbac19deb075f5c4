"""The demo community shows what the insights can do (issue 17 item 8): teams side by side with
one hidden, the five keys of a community of practice, and summaries that say what the charts hold."""

from __future__ import annotations

import re
from collections import Counter

import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from safespace.demo import FACILITATOR, ensure_demo
from safespace.demo_rounds import SURVEY_TITLE
from safespace.identity.models import Community
from safespace.privacy.crypto import Keyring
from safespace.pulse.models import Round, Survey
from tests.helpers import sign_in


@pytest.fixture
async def demo(settings, db: AsyncSession, client) -> Community:
    """What `safespace demo` makes (in-process), and its facilitator signed in."""
    made = await ensure_demo(db, Keyring.load(settings.encryption_key_path))
    await db.commit()
    await sign_in(client, db, FACILITATOR[1])
    return made.community


async def test_the_demo_team_heatmap_shows_three_teams_and_hides_the_small_one(client, db: AsyncSession, demo: Community) -> None:
    """Both demo teams used to be too small to show in every round: the heatmap was all hatching."""
    weekly = await db.scalar(select(Survey.id).where(Survey.community_id == demo.id, Survey.title == SURVEY_TITLE))
    latest = await db.scalar(select(Round).where(Round.survey_id == weekly, Round.closed.is_(True)).order_by(Round.number.desc()).limit(1))
    response = await client.get(f"/api/v1/communities/{demo.id}/insights/rounds/{latest.id}/teams")
    assert response.status_code == 200, response.text
    rows = {row["name"]: row for row in response.json()[0]["rows"]}
    shown = sorted(name for name, row in rows.items() if all(v is not None for v in row["values"]))
    assert shown == ["Circular economy", "Energy", "Transport"]
    assert rows["Adaptation"]["values"] == [None] * len(rows["Adaptation"]["values"])
    assert set(rows["Adaptation"]["empty_because"]) == {"fewer_than_k"}  # four members: below k = 5
    means = [rows[name]["values"][-1] for name in shown]
    assert max(means) - min(means) > 0.1, "the teams should differ"

    # The page's teams × rounds heatmap (the last twelve rounds, one a holiday gap): the three
    # teams show in most rounds, and where one is hidden its cell says why.
    page = await client.get(f"/c/{demo.id}/insights/teams")
    assert page.status_code == 200
    cells = re.findall(r"<title>([^,<]+), \d+ \w+ \d+: ([^<]+)</title>", page.text)
    shown_in = Counter(team for team, text in cells if not text.startswith("hidden"))
    assert all(shown_in[team] >= 7 for team in shown), shown_in
    assert shown_in["Adaptation"] == 0 and sum(1 for team, _text in cells if team == "Adaptation") == 12


async def test_the_demo_vitality_has_the_five_keys_and_says_what_each_month_held(client, db: AsyncSession, demo: Community) -> None:
    vitality = (await client.get(f"/api/v1/communities/{demo.id}/insights/vitality")).json()
    keys = {key["key"]: key["mean"] for key in vitality["keys"]}
    assert len(keys) == 5 and all(mean is not None for mean in keys.values()), keys
    assert max(keys.values()) - min(keys.values()) > 1, "a strength and a weak point"
    assert sum(month["stories"] for month in vitality["activity"]) == 12
    assert sum(1 for month in vitality["activity"] if month["stories"]) >= 6, "stories are spread over the year"
    members = [point["members"] for point in vitality["participation"]]
    assert members[-1] > members[0], "the community grew"

    page = (await client.get(f"/c/{demo.id}/insights/vitality")).text
    assert "Level: 0 at the start, 0 now" not in page
    assert "12 in all from" in page  # the stories chart's summary counts every month
