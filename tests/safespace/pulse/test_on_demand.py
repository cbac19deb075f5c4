"""What the survey page says the schedule will do is what `tick` does; "open a round now" opens
one round, once, and the next scheduled round keeps its date."""

from __future__ import annotations

import re
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from safespace import clock, schedule
from safespace.privacy.crypto import Keyring
from safespace.pulse import services
from safespace.pulse.models import Round
from tests.helpers import make_community, post_form, sign_in

MADRID = ZoneInfo("Europe/Madrid")
NOW = datetime(2026, 3, 11, 15, 30, tzinfo=MADRID)  # a Wednesday afternoon
ROW = re.compile(r"<tr[^>]*><td>next</td><td>([\d-]+ [\d:]+)</td><td>([\d-]+ [\d:]+)</td><td>(.*?)</td>")


async def _survey(db: AsyncSession, every: str, first_day, open_days: int = 3):
    world = await make_community(db, teams={"Energy": [f"m{i}@x.org" for i in range(6)]})
    form = services.CadenceForm(every, first_day.weekday(), first_day.day, open_days, NOW.date().isoformat())
    survey = await services.create_survey(db, world.community.id, "Europe/Madrid", "Pulse", ["psychological_safety"], form)
    await db.commit()
    return world, survey


def _local(text: str) -> datetime:
    return datetime.strptime(text, "%Y-%m-%d %H:%M").replace(tzinfo=MADRID)


async def _planned(client, url: str) -> list[tuple[datetime, datetime, str]]:
    page = (await client.get(url)).text
    rows = [(_local(o), _local(c), re.sub(r"<[^>]+>", "", state)) for o, c, state in ROW.findall(page)]
    return sorted(rows)


async def _rounds(db: AsyncSession, survey_id) -> list[Round]:
    db.expire_all()
    return list(await db.scalars(select(Round).where(Round.survey_id == survey_id).order_by(Round.number)))


@pytest.mark.parametrize("every", ["weekly", "biweekly", "monthly", "quarterly"])
async def test_the_page_shows_what_tick_then_does(client, db: AsyncSession, engine, settings, monkeypatch, every) -> None:
    # The cadence's day is today: a round is due now, which the page said nothing about before
    # ("No round has opened yet", the first round a period away) while tick opened it.
    world, survey = await _survey(db, every, NOW.date())
    survey_id = survey.id
    monkeypatch.setattr(clock, "now", lambda: NOW.astimezone(MADRID))
    sessionmaker, keyring = async_sessionmaker(engine, expire_on_commit=False), Keyring.load(settings.encryption_key_path)
    await sign_in(client, db, world.facilitator)
    url = f"/c/{world.community.id}/surveys/{survey_id}"
    planned = await _planned(client, url)
    assert len(planned) == 3
    assert planned[0][0] == datetime.combine(NOW.date(), datetime.min.time(), MADRID)
    assert planned[0][2] == "due: opens at the scheduler's next pass"
    assert {state for _o, _c, state in planned[1:]} == {"scheduled"}
    # Tick at each planned moment (the first: now) opens exactly the rounds the page listed.
    for opens_at, closes_at, _state in planned:
        report = await schedule.tick(sessionmaker, keyring, None, moment=max(opens_at, NOW) + timedelta(seconds=30))
        assert report.opened == 1
        latest = (await _rounds(db, survey_id))[-1]
        assert (latest.opens_at, latest.closes_at) == (opens_at, closes_at)
        assert (await schedule.tick(sessionmaker, keyring, None, moment=closes_at)).closed == 1
    assert len(await _rounds(db, survey_id)) == 3


async def test_open_a_round_now_outside_the_schedule(client, db: AsyncSession, engine, settings, monkeypatch, inbox) -> None:
    # Weekly on Saturdays, open for five days; today is Wednesday: nothing is due until Saturday.
    saturday = NOW.date() + timedelta(days=3)
    world, survey = await _survey(db, "weekly", saturday, open_days=5)
    survey_id = survey.id
    monkeypatch.setattr(clock, "now", lambda: NOW.astimezone(MADRID))
    sessionmaker, keyring = async_sessionmaker(engine, expire_on_commit=False), Keyring.load(settings.encryption_key_path)
    await sign_in(client, db, world.facilitator)
    url = f"/c/{world.community.id}/surveys/{survey_id}"
    assert "Open a round now" in (await client.get(url)).text
    confirm = await client.get(f"{url}/open-round")
    assert confirm.status_code == 200
    assert "it opens now and closes on 2026-03-14 00:00" in confirm.text  # not after five days: Saturday keeps its round
    assert "The next scheduled round keeps its date: it opens on 2026-03-14 00:00." in confirm.text
    assert "each of the 7 members" in confirm.text
    inbox.messages.clear()
    opened = await post_form(client, f"{url}/open-round", {})
    assert opened.status_code == 303
    (round_,) = await _rounds(db, survey_id)
    assert round_.opens_at == NOW and round_.closes_at == datetime(2026, 3, 14, tzinfo=MADRID) and not round_.closed
    assert len(inbox.messages) == 7  # the invitations, sent after the commit
    page = (await client.get(url)).text
    assert "Round 1 is open; 7 invitations are on their way." in page and "Open a round now" not in page

    # Once: a second press while it is open opens nothing.
    await client.get(f"{url}/open-round")
    again = await post_form(client, f"{url}/open-round", {})
    assert again.status_code == 303 and len(await _rounds(db, survey_id)) == 1
    assert "A round is open already; close it before opening another." in (await client.get(url)).text
    # Tick mails no one twice, closes it at Saturday's midnight and opens Saturday's round on time.
    assert (await schedule.tick(sessionmaker, keyring, None, moment=NOW + timedelta(minutes=1))).opened == 0
    saturday_midnight = datetime(2026, 3, 14, tzinfo=MADRID)
    assert (await schedule.tick(sessionmaker, keyring, None, moment=saturday_midnight)).closed == 1
    assert (await schedule.tick(sessionmaker, keyring, None, moment=saturday_midnight + timedelta(minutes=1))).opened == 1
    scheduled = (await _rounds(db, survey_id))[-1]
    assert (scheduled.number, scheduled.opens_at) == (2, saturday_midnight)


async def test_open_now_refuses_when_the_next_round_is_hours_away_and_opens_a_due_one(client, db: AsyncSession, monkeypatch) -> None:
    late_friday = datetime(2026, 3, 13, 20, tzinfo=MADRID)
    world, survey = await _survey(db, "weekly", late_friday.date() + timedelta(days=1))
    survey_id = survey.id
    monkeypatch.setattr(clock, "now", lambda: late_friday)
    await sign_in(client, db, world.facilitator)
    url = f"/c/{world.community.id}/surveys/{survey_id}"
    refused = await client.get(f"{url}/open-round")
    assert refused.status_code == 303
    assert "The next scheduled round opens in less than a day; it opens on its own then." in (await client.get(url)).text
    assert await _rounds(db, survey_id) == []
    # Saturday, early: the scheduled round is due; opening now opens that one, with its dates.
    monkeypatch.setattr(clock, "now", lambda: late_friday + timedelta(hours=5))
    confirm = await client.get(f"{url}/open-round")
    assert "This is the scheduled round" in confirm.text
    assert (await post_form(client, f"{url}/open-round", {})).status_code == 303
    (round_,) = await _rounds(db, survey_id)
    assert (round_.opens_at, round_.closes_at) == (datetime(2026, 3, 14, tzinfo=MADRID), datetime(2026, 3, 17, tzinfo=MADRID))
