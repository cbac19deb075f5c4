"""Facilitators hear by mail what needs them: one digest an hour at most, in their language, with
no figure the results page would hide and no name."""

from __future__ import annotations

import os
from datetime import timedelta

from msgspec import structs
from sqlalchemy import func, select, update
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from safespace import clock, schedule
from safespace.identity.models import Membership, Person
from safespace.mail import make_mailer
from safespace.notifications.digest import DIGEST_WAIT, DigestMailer
from safespace.notifications.models import Notification
from safespace.privacy.crypto import Keyring
from safespace.pulse import services
from safespace.pulse.lifecycle import close_round
from safespace.pulse.models import Round
from safespace.stories import services as stories
from safespace.stories.models import Flag, Story
from safespace.web.templates import template_environment
from tests.conftest import free_port
from tests.helpers import make_community
from tests.safespace.insights.conftest import Closed, answered_round, form
from tests.safespace.pulse.conftest import post_as, session_cookie

FACILITATOR = "fac@x.org"


def _digests(settings, port: int | None = None) -> DigestMailer:
    if port is not None:
        settings = structs.replace(settings, smtp_port=port)
    return DigestMailer(make_mailer(settings), template_environment(), settings.base_url)


async def _round(client, db, engine, settings, answering: int, members: int = 6, k: int = 5) -> Closed:
    emails = [f"m{i}@x.org" for i in range(members)]
    return await answered_round(client, db, engine, settings, {"Energy": emails}, {e: form(5) for e in emails[:answering]}, k=k, close=False)


async def _tick(pulse: Closed, settings, moment, port: int | None = None) -> schedule.TickReport:
    return await schedule.tick(pulse.sessionmaker, pulse.keyring, None, moment=moment, digests=_digests(settings, port))


def _text(message) -> str:
    return message.get_body(("plain",)).get_content()


def _lines(message) -> list[str]:
    """The digest's items, without their links."""
    return [line for line in _text(message).splitlines() if line.startswith("- ")]


async def _stories_waiting(db: AsyncSession, pulse: Closed) -> None:
    """Two stories wait for review, and a shown story was reported once."""
    text = stories.StoryText("A title", "What happened", "", "")
    for _ in range(2):
        await stories.store_story(db, pulse.keyring, pulse.world.community.id, text, [], False, moderated=True)
    await stories.store_story(db, pulse.keyring, pulse.world.community.id, text, [], False, moderated=False)
    shown = await db.scalar(select(Story).where(Story.status == "pending"))
    shown.status, shown.released_on = "released", pulse.round.opens_at.date()
    db.add(Flag(story_id=shown.id, reply_id=None, marker=os.urandom(32)))
    await db.commit()


async def test_results_review_and_reports_arrive_in_one_digest_an_hour_later(client, db: AsyncSession, engine: AsyncEngine, settings, inbox) -> None:
    pulse = await _round(client, db, engine, settings, answering=5)
    await _stories_waiting(db, pulse)
    closing = pulse.round.closes_at + timedelta(seconds=1)
    report = await _tick(pulse, settings, closing)
    assert report.closed == 1 and not report.digests and not inbox.messages  # noted, not sent yet
    await _tick(pulse, settings, closing + DIGEST_WAIT - timedelta(minutes=1))
    assert not inbox.messages
    await _tick(pulse, settings, closing + DIGEST_WAIT)
    assert [m["To"] for m in inbox.messages] == [FACILITATOR]  # one mail for three events, to the facilitator only
    mail = inbox.messages[0]
    text = _text(mail)
    assert "The results of round 1 of “Pulse” are out: 5 people answered, 71% of 7 members." in text
    assert "2 stories wait for your review." in text
    assert "1 story or reply was reported and waits for your decision." in text
    assert f"/c/{pulse.world.community.id}/rounds/{pulse.round.id}/results" in text
    assert f"/c/{pulse.world.community.id}/notifications" in text
    assert "m0@x.org" not in mail.as_string() and "x.org" not in text  # names nobody
    # Sent once; the same items are not announced again, a new one is.
    await _tick(pulse, settings, closing + 3 * DIGEST_WAIT)
    assert len(inbox.messages) == 1
    await stories.store_story(db, pulse.keyring, pulse.world.community.id, stories.StoryText("Another", "x", "", ""), [], False, moderated=True)
    await db.commit()
    later = closing + 4 * DIGEST_WAIT
    await _tick(pulse, settings, later)  # noted as of the next full hour (noting.note_waiting)
    await _tick(pulse, settings, later + DIGEST_WAIT)
    assert len(inbox.messages) == 1
    await _tick(pulse, settings, later + 2 * DIGEST_WAIT)
    assert len(inbox.messages) == 2
    assert "3 stories wait for your review." in _text(inbox.messages[1])
    assert "results" not in _text(inbox.messages[1]).lower().split("choose")[0]


async def test_too_few_answered_says_so_without_the_count(client, db: AsyncSession, engine: AsyncEngine, settings, inbox) -> None:
    pulse = await _round(client, db, engine, settings, answering=3)
    closing = pulse.round.closes_at + timedelta(seconds=1)
    await _tick(pulse, settings, closing)
    await _tick(pulse, settings, closing + DIGEST_WAIT)
    [mail] = inbox.messages
    text = _text(mail)
    assert "Round 1 of “Pulse” has closed. Fewer than 5 people answered, so no results are shown" in text
    # Neither the count (3) nor the rate (43%) the results page hides: 1 is the round, 5 is k.
    [line] = _lines(mail)
    assert {c for c in line if c.isdigit()} == {"1", "5"}


async def test_low_participation_a_day_before_close_says_only_what_may_be_shown(client, db: AsyncSession, engine: AsyncEngine, settings, inbox) -> None:
    pulse = await _round(client, db, engine, settings, answering=2)
    reminder = pulse.round.closes_at - timedelta(days=1) + timedelta(minutes=1)
    report = await _tick(pulse, settings, reminder)
    assert report.reminded == 1
    await _tick(pulse, settings, reminder + DIGEST_WAIT)
    [mail] = inbox.messages
    text = _text(mail)
    assert "fewer than 5 people have answered so far: if it closed now, it would show no results." in text
    [line] = _lines(mail)  # 2 of 7 (29%) stays hidden: 1 is the round, 5 is k, the rest the date
    assert "%" not in line and " 2 " not in line and "29" not in line


async def test_low_participation_names_its_rule_below_half_or_below_the_previous_round(client, db: AsyncSession, engine: AsyncEngine, settings, inbox, monkeypatch) -> None:
    # k = 3: four of eleven answered is a rate the results page shows (36%), below half.
    pulse = await _round(client, db, engine, settings, answering=4, members=10, k=3)
    reminder = pulse.round.closes_at - timedelta(days=1) + timedelta(minutes=1)
    await _tick(pulse, settings, reminder)
    await _tick(pulse, settings, reminder + DIGEST_WAIT)
    text = _text(inbox.messages[-1])
    assert "and 36% of 11 members have answered so far." in text
    assert "That is low: fewer than half of the members." in text and "previous round" not in text
    # The round closes with 36%, which the results digest shows.
    closing = pulse.round.closes_at + timedelta(seconds=1)
    await _tick(pulse, settings, closing)
    await _tick(pulse, settings, closing + DIGEST_WAIT)
    assert "4 people answered, 36% of 11 members" in _text(inbox.messages[-1])
    inbox.messages.clear()
    today = closing.date()
    cadence = services.CadenceForm("weekly", today.weekday(), 1, 3, today.isoformat())
    other = await services.create_survey(db, pulse.world.community.id, "Europe/Madrid", "Check-in", ["psychological_safety"], cadence)
    await db.commit()
    opening = closing + 2 * DIGEST_WAIT
    assert (await _tick(pulse, settings, opening)).opened == 1
    second = await db.scalar(select(Round).where(Round.survey_id == other.id))
    url = f"/c/{pulse.world.community.id}/rounds/{second.id}"
    monkeypatch.setattr(clock, "now", lambda: opening + timedelta(minutes=1))  # the answers come in while it is open
    for email in [f"m{i}@x.org" for i in range(3)]:
        assert (await post_as(client, await session_cookie(db, email), url, form(4))).status_code == 303
    # 3 of 11 (27%) is below the previous round's 36% and below half: both are said.
    reminder = second.closes_at - timedelta(days=1) + timedelta(minutes=1)
    await _tick(pulse, settings, reminder)
    await _tick(pulse, settings, reminder + DIGEST_WAIT)
    text = _text(inbox.messages[-1])
    assert "Round 1 of “Check-in” closes on" in text and "27% of 11 members" in text
    assert "That is low: below the 36% of the community's previous round (round 1 of “Pulse”), and fewer than half of the members." in text


async def test_a_facilitator_turns_a_kind_off_and_on_for_one_community(client, db: AsyncSession, engine: AsyncEngine, settings, inbox) -> None:
    pulse = await _round(client, db, engine, settings, answering=5)
    session = await session_cookie(db, FACILITATOR)
    url = f"/c/{pulse.world.community.id}/notifications"
    page = await client.get(url, headers={"cookie": f"safespace_session={session}"})
    assert page.status_code == 200 and page.text.count("checked") == 4
    saved = await post_as(client, session, url, {"kinds": ["review", "reported", "low_participation"]})
    assert saved.status_code == 303
    page = await client.get(url, headers={"cookie": f"safespace_session={session}"})
    assert page.text.count("checked") == 3 and 'value="round_closed" >' in page.text
    # A member may not open the page.
    member = await session_cookie(db, "m0@x.org")
    assert (await client.get(url, headers={"cookie": f"safespace_session={member}"})).status_code == 403

    await _stories_waiting(db, pulse)
    closing = pulse.round.closes_at + timedelta(seconds=1)
    await _tick(pulse, settings, closing)
    await _tick(pulse, settings, closing + 2 * DIGEST_WAIT)  # stories are noted as of the next full hour
    [mail] = inbox.messages
    assert "2 stories wait for your review." in _text(mail) and "Pulse" not in _text(mail)  # no word of the round

    # Everything off: nothing is noted at all.
    await post_as(client, session, url, {})
    await stories.store_story(db, pulse.keyring, pulse.world.community.id, stories.StoryText("New", "x", "", ""), [], False, moderated=True)
    await db.commit()
    await _tick(pulse, settings, closing + 3 * DIGEST_WAIT)
    assert await db.scalar(select(func.count()).select_from(Notification)) == 0


async def test_a_refused_digest_is_sent_by_a_later_tick_exactly_once(client, db: AsyncSession, engine: AsyncEngine, settings, inbox, caplog) -> None:
    pulse = await _round(client, db, engine, settings, answering=5)
    closing = pulse.round.closes_at + timedelta(seconds=1)
    await _tick(pulse, settings, closing)
    nobody_listens = free_port()
    report = await _tick(pulse, settings, closing + DIGEST_WAIT, port=nobody_listens)
    assert len(report.digests) == 1 and not inbox.messages
    assert "refused" in caplog.text and FACILITATOR not in caplog.text  # the class, not the address (P7)
    waiting = list(await db.scalars(select(Notification)))
    assert [(n.failures, n.claimed_at) for n in waiting] == [(1, None)]
    # The server is back: the next tick sends it, and no tick after that sends it again.
    await _tick(pulse, settings, closing + DIGEST_WAIT + timedelta(minutes=1))
    await _tick(pulse, settings, closing + DIGEST_WAIT + timedelta(minutes=2))
    await _tick(pulse, settings, closing + 3 * DIGEST_WAIT)
    assert [m["To"] for m in inbox.messages] == [FACILITATOR]
    assert await db.scalar(select(func.count()).select_from(Notification)) == 0


async def test_a_digest_comes_in_the_facilitators_language_and_only_while_they_facilitate(client, db: AsyncSession, engine: AsyncEngine, settings, inbox) -> None:
    pulse = await _round(client, db, engine, settings, answering=5)
    await db.execute(update(Person).where(Person.email == FACILITATOR).values(language="es"))
    second = await db.scalar(select(Person).where(Person.email == "m5@x.org"))
    await db.execute(update(Membership).where(Membership.person_id == second.id).values(role="facilitator"))
    await db.commit()
    closing = pulse.round.closes_at + timedelta(seconds=1)
    await _tick(pulse, settings, closing)
    # Before the digest goes, m5 is a member again: their digest is dropped.
    await db.execute(update(Membership).where(Membership.person_id == second.id).values(role="member"))
    await db.commit()
    await _tick(pulse, settings, closing + DIGEST_WAIT)
    [mail] = inbox.messages
    assert mail["To"] == FACILITATOR and "Los resultados de la ronda 1 de «Pulse»" in _text(mail)
    assert await db.scalar(select(func.count()).select_from(Notification)) == 0


async def test_a_round_closed_early_by_a_facilitator_is_noted_too(db: AsyncSession, engine: AsyncEngine, settings) -> None:
    world = await make_community(db, teams={"Energy": [f"m{i}@x.org" for i in range(6)]})
    today = clock.now().date()
    cadence = services.CadenceForm("weekly", today.weekday(), 1, 3, today.isoformat())
    survey = await services.create_survey(db, world.community.id, "Europe/Madrid", "Pulse", ["psychological_safety"], cadence)
    await db.commit()
    keyring = Keyring.load(settings.encryption_key_path)
    await schedule.tick(async_sessionmaker(engine, expire_on_commit=False), keyring, None, moment=clock.now())
    round_ = await db.scalar(select(Round).where(Round.survey_id == survey.id))
    assert await close_round(db, keyring, round_.id, clock.now())
    await db.commit()
    noted = list(await db.scalars(select(Notification)))
    assert [(n.kind, n.round_id) for n in noted] == [("round_closed", round_.id)]
