"""The comment threshold (P5): a community setting, never below k, locked when a round opens."""

from __future__ import annotations

from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from safespace import clock, schedule
from safespace.errors import InvalidInput
from safespace.identity import services as identity
from safespace.privacy.crypto import Keyring
from safespace.pulse import results, services
from safespace.pulse.models import ReleasedComment, Round
from tests.helpers import make_community, sign_in
from tests.safespace.pulse.conftest import Pulse, after_close, answers, open_pulse, post_as, session_cookie


async def _ten_comments(client, db: AsyncSession, pulse: Pulse) -> int:
    for i in range(10):
        response = await post_as(client, await session_cookie(db, f"m{i}@x.org"), pulse.url, answers(5, comment=f"thought {i}"))
        assert response.status_code == 303
    assert (await pulse.tick(after_close(pulse))).closed == 1
    return await db.scalar(select(func.count()).select_from(ReleasedComment).where(ReleasedComment.round_id == pulse.round.id))


async def test_a_threshold_below_k_is_refused_with_the_reason(db: AsyncSession) -> None:
    world = await make_community(db, name="Threshold check", facilitator="t@x.org", k=6)
    with pytest.raises(InvalidInput) as refused:
        await identity.update_community(db, world.community, "Threshold check", "", 6, "Europe/Madrid", comment_threshold=5)
    assert "minimum group size (6)" in refused.value.errors["comment_threshold"]
    # Raising k above the threshold raises the threshold with it.
    await identity.update_community(db, world.community, "Threshold check", "", 12, "Europe/Madrid")
    assert world.community.comment_threshold == 12
    await db.rollback()


async def test_ten_answers_miss_a_threshold_of_eleven(client, db: AsyncSession, engine, settings) -> None:
    world = await make_community(db, teams={"Energy": [f"m{i}@x.org" for i in range(10)]})
    await identity.update_community(db, world.community, world.community.name, "", 5, "Europe/Madrid", comment_threshold=11)
    today = clock.now().astimezone(ZoneInfo("Europe/Madrid")).date()
    form = services.CadenceForm("weekly", today.weekday(), 1, 3, today.isoformat())
    survey = await services.create_survey(db, world.community.id, "Europe/Madrid", "Pulse", ["psychological_safety"], form)
    await db.commit()
    keyring = Keyring.load(settings.encryption_key_path)
    sessionmaker = async_sessionmaker(engine, expire_on_commit=False)
    assert (await schedule.tick(sessionmaker, keyring, None, moment=clock.now())).opened == 1
    round_ = await db.scalar(select(Round).where(Round.survey_id == survey.id))
    assert round_.comment_threshold == 11
    assert await _ten_comments(client, db, Pulse(world, survey.id, round_, keyring, sessionmaker)) == 0


async def test_a_round_keeps_the_threshold_it_opened_with(client, db: AsyncSession, engine, settings) -> None:
    pulse = await open_pulse(db, engine, settings, members=10)
    community = pulse.world.community
    await identity.update_community(db, community, community.name, "", 5, "Europe/Madrid", comment_threshold=11)
    await db.commit()
    assert await _ten_comments(client, db, pulse) == 10


async def test_a_long_list_of_comments_shows_its_first_part_and_a_link_to_every_one(client, db: AsyncSession, engine, settings, monkeypatch) -> None:
    """A big community's round releases hundreds of comments: the results pages decrypt and show
    the first COMMENTS_SHOWN (in their random order) with a link to all; "all", the printable
    report and the JSON export hold every one."""
    monkeypatch.setattr(results, "COMMENTS_SHOWN", 4)
    pulse = await open_pulse(db, engine, settings, members=10)
    assert await _ten_comments(client, db, pulse) == 10
    shown = lambda body: sum(f"<li>thought {i}</li>" in body for i in range(10))  # noqa: E731
    insights = f"/c/{pulse.world.community.id}/insights/rounds/{pulse.round.id}"
    for who, page in (("m0@x.org", f"{pulse.url}/results"), ("fac@x.org", insights)):
        client.cookies.clear()
        await sign_in(client, db, who)
        first = (await client.get(page)).text
        assert shown(first) == 4 and "The first 4 of 10, in random order." in first
        assert '<a href="?comments=all#comments-psychological_safety">Show all 10 comments</a>' in first
        every = (await client.get(f"{page}?comments=all")).text
        assert shown(every) == 10 and "Show all" not in every and "In random order." in every
    assert shown((await client.get(f"{insights}/report")).text) == 10
    exported = (await client.get(f"{insights}/results.json")).json()
    assert len(exported["instruments"][0]["comments"]) == 10 and exported["instruments"][0]["comments_total"] == 10
