"""A closed round's figures, grids and charts are worked out once per process: the pages must still
follow everything they are drawn from (language, time zone, the round closing, how many comments)."""

from __future__ import annotations

from datetime import timedelta
from zoneinfo import ZoneInfo

from sqlalchemy.ext.asyncio import AsyncSession

from safespace import clock, schedule
from safespace.identity.models import Community
from safespace.insights.team_figures import format_day
from safespace.pulse.results import round_result
from tests.helpers import sign_in
from tests.safespace.insights.conftest import answered_round, form
from tests.safespace.pulse.conftest import PS

STATEMENT = {language: PS.items[0].text.get(language) for language in ("en", "es")}


async def _closed(client, db: AsyncSession, engine, settings, members: int = 6, comment: str | None = None, close: bool = True):
    emails = [f"m{i}@x.org" for i in range(members)]
    answers = {e: form(3 + i % 3, comment=comment and f"{comment} {i}") for i, e in enumerate(emails)}
    return await answered_round(client, db, engine, settings, {"Team": emails}, answers, close=close)


async def test_a_closed_rounds_pages_follow_the_viewers_language_after_they_were_kept(client, db: AsyncSession, engine, settings) -> None:
    closed = await _closed(client, db, engine, settings)
    await sign_in(client, db, "fac@x.org")
    pages = (f"{closed.base}/rounds/{closed.round.id}", f"/c/{closed.world.community.id}/rounds/{closed.round.id}/results")
    for page in pages:
        english = (await client.get(page, headers={"accept-language": "en"})).text
        spanish = (await client.get(page, headers={"accept-language": "es"})).text
        again = (await client.get(page, headers={"accept-language": "en"})).text
        assert STATEMENT["en"] in english and STATEMENT["es"] not in english, page
        assert STATEMENT["es"] in spanish and STATEMENT["en"] not in spanish, page
        assert "Seguridad psicológica" in spanish and "Seguridad psicológica" not in again, page
        assert again == english, page


async def test_round_results_appear_when_it_closes_after_being_seen_open(client, db: AsyncSession, engine, settings) -> None:
    """An open round is never kept: the figures seen before the close must not stick."""
    opened = await _closed(client, db, engine, settings, close=False)
    await sign_in(client, db, "fac@x.org")
    pages = (f"{opened.base}/rounds/{opened.round.id}", f"/c/{opened.world.community.id}/rounds/{opened.round.id}/results")
    for page in pages:
        before = (await client.get(page)).text
        assert "Results appear when the round closes" in before and STATEMENT["en"] not in before
    report = await schedule.tick(opened.sessionmaker, opened.keyring, None, moment=opened.round.closes_at + timedelta(seconds=1))
    assert report.closed == 1
    for page in pages:
        after = (await client.get(page)).text
        assert "Results appear when the round closes" not in after and STATEMENT["en"] in after, page


async def test_a_closed_rounds_page_dates_follow_the_communitys_time_zone_after_it_was_kept(client, db: AsyncSession, engine, settings) -> None:
    closed = await _closed(client, db, engine, settings)
    await sign_in(client, db, "fac@x.org")
    page = f"{closed.base}/rounds/{closed.round.id}"
    community = await db.get(Community, closed.world.community.id)
    shown = lambda zone: f"– {format_day(closed.round.closes_at.astimezone(ZoneInfo(zone)).date(), 'en')}"  # noqa: E731
    first = (await client.get(page)).text
    assert shown(community.time_zone) in first
    zone = next(z for z in ("Etc/GMT-14", "Etc/GMT+12") if shown(z) != shown(community.time_zone))  # one is another day
    community.time_zone = zone
    await db.commit()
    after = (await client.get(page)).text
    assert shown(zone) in after and shown("Europe/Madrid") not in after


async def test_the_first_comments_and_all_comments_are_kept_apart(client, db: AsyncSession, engine, settings) -> None:
    closed = await _closed(client, db, engine, settings, members=10, comment="More time to talk")
    first = await round_result(db, closed.keyring, closed.round, "en", clock.now(), 3)
    every = await round_result(db, closed.keyring, closed.round, "en", clock.now(), None)
    again = await round_result(db, closed.keyring, closed.round, "en", clock.now(), 3)
    assert len(first.instruments[0].comments) == 3 and first.instruments[0].comments_total == 10
    assert len(every.instruments[0].comments) == 10 and set(first.instruments[0].comments) <= set(every.instruments[0].comments)
    assert again == first
