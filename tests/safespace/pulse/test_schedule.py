"""Rounds open, remind and close on their own; every step happens once, whoever runs it."""

from __future__ import annotations

import asyncio
import os
import random
import time
import uuid
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from safespace import clock, schedule
from safespace.app import create_app
from safespace.identity.models import Person
from safespace.mail import make_mailer
from safespace.privacy.crypto import Keyring
from safespace.pulse import lease, services
from safespace.pulse.mail import RoundMailer
from safespace.pulse.models import Lease, Participation, Round
from safespace.web.templates import template_environment
from tests.helpers import make_community, post_form, sign_in

MADRID = ZoneInfo("Europe/Madrid")


async def _survey(db: AsyncSession, start, every: str = "weekly", open_days: int = 3):
    world = await make_community(db, teams={"Energy": [f"m{i}@x.org" for i in range(6)]})
    form = services.CadenceForm(every, start.weekday(), start.day, open_days, start.isoformat())
    survey = await services.create_survey(db, world.community.id, "Europe/Madrid", "Pulse", ["psychological_safety"], form)
    await db.commit()
    return world, survey


def _mailer(settings) -> RoundMailer:
    return RoundMailer(make_mailer(settings), template_environment(), settings.base_url)


async def test_tick_opens_mails_reminds_and_closes_exactly_once(db: AsyncSession, engine, settings, inbox) -> None:
    start = datetime(2026, 3, 23, tzinfo=MADRID).date()  # a Monday; summer time starts on Sunday the 29th
    world, survey = await _survey(db, start)
    sessionmaker = async_sessionmaker(engine, expire_on_commit=False)
    keyring = Keyring.load(settings.encryption_key_path)
    mailer = _mailer(settings)
    monday_morning = datetime(2026, 3, 23, 9, tzinfo=MADRID)

    first = await schedule.tick(sessionmaker, keyring, mailer, moment=monday_morning)
    again = await schedule.tick(sessionmaker, keyring, mailer, moment=monday_morning + timedelta(minutes=1))
    assert (first.opened, again.opened) == (1, 0)
    round_ = await db.scalar(select(Round).where(Round.survey_id == survey.id))
    assert round_.opens_at == datetime(2026, 3, 23, tzinfo=MADRID)
    assert round_.closes_at == datetime(2026, 3, 26, tzinfo=MADRID)
    invited = {m["To"] for m in inbox.messages}
    assert invited == {world.facilitator} | set(world.members)  # every active member, once
    assert len(inbox.messages) == 7
    assert f"/c/{world.community.id}/rounds/{round_.id}" in inbox.messages[0].get_body(("plain",)).get_content()

    # Two members answered (the ledger says so); the reminder goes to the five others, once.
    for email in ("m0@x.org", "m1@x.org"):
        person = await db.scalar(select(Person).where(Person.email == email))
        db.add(Participation(round_id=round_.id, person_id=person.id))
    await db.commit()
    inbox.messages.clear()
    reminder_time = datetime(2026, 3, 25, 1, tzinfo=MADRID)
    reminded = await schedule.tick(sessionmaker, keyring, mailer, moment=reminder_time)
    await schedule.tick(sessionmaker, keyring, mailer, moment=reminder_time + timedelta(hours=2))
    assert reminded.reminded == 1
    assert {m["To"] for m in inbox.messages} == {world.facilitator} | set(world.members) - {"m0@x.org", "m1@x.org"}
    assert len(inbox.messages) == 5

    closed = await schedule.tick(sessionmaker, keyring, mailer, moment=datetime(2026, 3, 26, 0, 0, 1, tzinfo=MADRID))
    assert closed.closed == 1
    assert (await schedule.tick(sessionmaker, keyring, mailer, moment=datetime(2026, 3, 27, tzinfo=MADRID))).closed == 0
    # The next Monday (after the clock change to summer time) opens round 2 at local midnight.
    nxt = await schedule.tick(sessionmaker, keyring, mailer, moment=datetime(2026, 3, 30, 0, 30, tzinfo=MADRID))
    assert nxt.opened == 1
    second = await db.scalar(select(Round).where(Round.survey_id == survey.id, Round.number == 2))
    assert second.opens_at == datetime(2026, 3, 30, tzinfo=MADRID)
    assert second.opens_at.utcoffset() != round_.opens_at.astimezone(MADRID).utcoffset()


async def test_a_lease_keeps_two_replicas_from_doing_the_work_twice(db: AsyncSession, engine, settings) -> None:
    start = clock.now().astimezone(MADRID).date()
    _world, survey = await _survey(db, start)
    sessionmaker = async_sessionmaker(engine, expire_on_commit=False)
    keyring = Keyring.load(settings.encryption_key_path)
    moment = clock.now()
    # Another replica's pass is running (a lease row on SQLite, the advisory lock on PostgreSQL).
    async with sessionmaker() as other, lease.schedule_turn(other, "other-replica", moment) as running:
        assert running
        blocked = await schedule.tick(sessionmaker, keyring, None, moment=moment, holder="me")
    assert blocked.skipped and blocked.opened == 0
    if engine.dialect.name == "sqlite":  # a replica on another machine left its lease row behind
        db.add(Lease(name=lease.LEASE_NAME, holder="other-replica", expires_at=moment + timedelta(minutes=1)))
        await db.commit()
    # Two replicas at once after the lease expired: one does the work.
    later = moment + timedelta(minutes=2)
    reports = await asyncio.gather(
        schedule.tick(sessionmaker, keyring, None, moment=later, holder="a"),
        schedule.tick(sessionmaker, keyring, None, moment=later, holder="b"),
    )
    assert sum(r.opened for r in reports) == 1
    assert await db.scalar(select(func.count()).select_from(Round).where(Round.survey_id == survey.id)) == 1


async def test_paused_survey_opens_no_round(db: AsyncSession, engine, settings) -> None:
    _world, survey = await _survey(db, clock.now().astimezone(MADRID).date())
    survey.paused = True
    await db.commit()
    report = await schedule.tick(async_sessionmaker(engine), Keyring.load(settings.encryption_key_path), None)
    assert report.opened == 0


async def test_serve_runs_the_schedule_by_itself(db: AsyncSession, settings) -> None:
    from msgspec import structs

    from tests.conftest import running

    _world, survey = await _survey(db, clock.now().astimezone(MADRID).date())
    app = create_app(structs.replace(settings, schedule_interval_seconds=1))
    async with running(app):
        for _ in range(50):
            if await db.scalar(select(func.count()).select_from(Round).where(Round.survey_id == survey.id)):
                break
            await asyncio.sleep(0.1)
    assert await db.scalar(select(func.count()).select_from(Round).where(Round.survey_id == survey.id)) == 1


async def test_serve_stops_whatever_its_schedule_pass_is_doing(db: AsyncSession, settings) -> None:
    """`serve` stopped (SIGTERM: its lifespan cancels the schedule) at a random moment of a pass,
    over and over, each time with a new community whose round the pass opens. A cancel in the
    middle of a statement used to leave the pass's transaction broken; releasing the schedule's
    lease inside it raised PendingRollbackError in place of the cancel, the loop logged it as a
    failed pass and went on, and the shutdown waited forever (a test run hung for 25 minutes)."""
    from msgspec import structs

    from tests.conftest import running

    chance, today = random.Random(15), clock.now().astimezone(MADRID).date()
    app = create_app(structs.replace(settings, schedule_interval_seconds=0.02))  # back to back passes
    for attempt in range(15):
        world = await make_community(db, f"Community {attempt}", f"f{attempt}@x.org", teams={"All": [f"m{attempt}-{n}@x.org" for n in range(6)]})
        form = services.CadenceForm("weekly", today.weekday(), today.day, 3, today.isoformat())
        await services.create_survey(db, world.community.id, "Europe/Madrid", "Pulse", ["psychological_safety"], form)
        await db.commit()

        async def serve_a_moment() -> None:  # the app started again, as `serve` is after a stop
            async with running(app):
                await asyncio.sleep(chance.uniform(0, 0.25))

        serving = asyncio.create_task(serve_a_moment())
        stopped, _ = await asyncio.wait([serving], timeout=20)
        if not stopped:
            serving.cancel()  # a second cancel frees it, so the tests after this one can run
            await asyncio.wait([serving], timeout=10)
        assert stopped, f"the app did not stop (attempt {attempt})"
    # And the schedule still works after all that: served once more, it opens every survey's round.
    async with running(create_app(structs.replace(settings, schedule_interval_seconds=0.2))):
        for _ in range(100):
            if await db.scalar(select(func.count()).select_from(Round)) == 15:
                break
            await asyncio.sleep(0.1)
    assert await db.scalar(select(func.count()).select_from(Round)) == 15


async def test_facilitator_creates_pauses_reschedules_and_closes(client, db: AsyncSession, settings, engine) -> None:
    world = await make_community(db, teams={"Energy": [f"m{i}@x.org" for i in range(6)]})
    await sign_in(client, db, world.facilitator)
    base = f"/c/{world.community.id}/surveys"
    page = await client.get(base)
    assert "Psychological safety" in page.text and "Trust" in page.text
    today = clock.now().astimezone(MADRID).date()
    bad = await post_form(client, base, {"title": "", "every": "weekly", "weekday": "0", "day_of_month": "1",
                                         "open_days": "9", "start": today.isoformat()})
    assert bad.status_code == 422 and "title" in bad.text.lower() and "open_days" in bad.text
    created = await post_form(client, base, {
        "title": "Team pulse", "instruments": ["psychological_safety", "trust"], "every": "weekly",
        "weekday": str(today.weekday()), "day_of_month": "1", "open_days": "3", "start": today.isoformat(),
    })
    assert created.status_code == 303
    survey_url = created.headers["location"]
    await schedule.tick(async_sessionmaker(engine, expire_on_commit=False), Keyring.load(settings.encryption_key_path), None)
    schedule_page = await client.get(survey_url)
    assert "open" in schedule_page.text and "scheduled" in schedule_page.text  # the open round and the next ones

    paused = await post_form(client, f"{survey_url}/pause", {})
    assert paused.status_code == 303 and paused.headers["location"] == survey_url
    assert "Resume survey" in (await client.get(survey_url)).text
    await post_form(client, f"{survey_url}/resume", {})
    assert "Pause survey" in (await client.get(survey_url)).text
    wrong = await post_form(client, f"{survey_url}/schedule", {"every": "monthly", "weekday": "0", "day_of_month": "31",
                                                               "open_days": "0", "start": today.isoformat()})
    assert wrong.status_code == 422 and "Change the schedule" in wrong.text
    changed = await post_form(client, f"{survey_url}/schedule", {"every": "monthly", "weekday": "0",
                                                               "day_of_month": "31", "open_days": "5", "start": today.isoformat()})
    assert changed.status_code == 303
    # Closing early is final: the button leads to a page that says so and asks once more, and
    # nothing is closed until that page's form is sent.
    assert f'href="{survey_url}/close-round"' in (await client.get(survey_url)).text
    confirm = await client.get(f"{survey_url}/close-round")
    assert confirm.status_code == 200 and "This cannot be undone" in confirm.text and "Keep it open" in confirm.text
    round_ = await db.scalar(select(Round).order_by(Round.number))
    await db.refresh(round_)
    assert not round_.closed
    closing = await post_form(client, f"{survey_url}/close-round", {})
    assert closing.status_code == 303 and closing.headers["location"] == survey_url
    await db.refresh(round_)
    assert round_.closed and round_.closes_at <= clock.now()
    # The route scrubbed after its commit; the close's note makes the next pass scrub again, in
    # case the process died between the two.
    assert await db.scalar(select(func.count()).select_from(Lease).where(Lease.name == schedule.SCRUB_DUE)) == 1
    assert "Round closed. Its results are now final." in (await client.get(survey_url)).text
    # Nothing left to close: the confirmation page sends the facilitator back to the survey.
    assert (await client.get(f"{survey_url}/close-round")).headers["location"] == survey_url
    # Another community's survey, or none: 404 on every route.
    for route in ("pause", "resume", "schedule", "close-round"):
        assert (await post_form(client, f"{survey_url.rsplit('/', 1)[0]}/{uuid.uuid4()}/{route}", {})).status_code == 404


async def test_facilitator_builds_a_custom_instrument(client, db: AsyncSession) -> None:
    world = await make_community(db)
    await sign_in(client, db, world.facilitator)
    url = f"/c/{world.community.id}/instruments"
    await client.get(f"{url}/new")
    empty = await post_form(client, url, {"name": "Meetings", "points": "5"})
    assert empty.status_code == 422 and "at least one statement" in empty.text
    saved = await post_form(client, url, {
        "name": "Meetings", "points": "5", "item1": "Our meetings end with clear next steps.",
        "item2": "Meetings here are a waste of time.", "reverse2": "1", "free_text": "What would improve our meetings?",
    })
    assert saved.status_code == 303
    page = await client.get(f"/c/{world.community.id}/surveys")
    assert "Meetings" in page.text and "custom:" in page.text


async def test_a_refused_invitation_is_tried_again_and_a_sent_one_never(db: AsyncSession, engine, settings) -> None:
    """At most once for mail that went out; again (up to three times) for mail the server refused."""
    from safespace.mail import Message

    class FlakyMailer:
        def __init__(self) -> None:
            self.delivered: list[str] = []
            self.refuse = {"m0@x.org"}

        async def send(self, message: Message) -> None:
            if message.to in self.refuse:
                raise ConnectionRefusedError("mail server down")
            self.delivered.append(message.to)

    world, _survey_row = await _survey(db, clock.now().astimezone(MADRID).date())
    flaky = FlakyMailer()
    mailer = RoundMailer(flaky, template_environment(), settings.base_url)
    sessionmaker = async_sessionmaker(engine, expire_on_commit=False)
    keyring = Keyring.load(settings.encryption_key_path)
    await schedule.tick(sessionmaker, keyring, mailer)
    assert sorted(flaky.delivered) == sorted({world.facilitator} | set(world.members) - {"m0@x.org"})
    flaky.refuse.clear()
    await schedule.tick(sessionmaker, keyring, mailer)
    await schedule.tick(sessionmaker, keyring, mailer)
    assert flaky.delivered.count("m0@x.org") == 1
    assert len(flaky.delivered) == 7  # everyone exactly once


async def test_a_scrub_left_undone_by_a_killed_tick_is_done_by_the_next(db: AsyncSession, engine, settings, monkeypatch) -> None:
    """A tick that commits a close and dies before its scrub leaves a note; the next tick scrubs."""
    sessionmaker = async_sessionmaker(engine, expire_on_commit=False)
    keyring = Keyring.load(settings.encryption_key_path)
    db.add(Lease(name=schedule.SCRUB_DUE, holder="a tick that was killed", expires_at=clock.now()))
    await db.commit()
    scrubbed: list[tuple[str, ...]] = []
    real_scrub = schedule.scrub

    async def counting(session, tables=schedule.ANSWER_TABLES, rewrite=False):
        scrubbed.append(tables)
        return await real_scrub(session, tables, rewrite)

    monkeypatch.setattr(schedule, "scrub", counting)
    report = await schedule.tick(sessionmaker, keyring, None, moment=clock.now())
    assert not report.closed and not report.stories_released  # nothing of its own to scrub
    assert scrubbed == [schedule.ANSWER_TABLES + schedule.STORY_TABLES + schedule.CHECKIN_ANSWER_TABLES]
    assert await db.scalar(select(func.count()).select_from(Lease).where(Lease.name == schedule.SCRUB_DUE)) == 0
    await schedule.tick(sessionmaker, keyring, None, moment=clock.now())
    assert len(scrubbed) == 1  # done once


def test_a_lease_holder_that_is_a_zombie_counts_as_gone() -> None:
    """os.kill(pid, 0) succeeds on a killed process nobody has reaped yet: the state in
    /proc/<pid>/stat ("Z") says it has ended (issue 21 item 8)."""
    import signal
    import subprocess
    import sys

    def holder(pid: int) -> str:
        return f"{lease._HOST}:{pid}:{lease._pid_namespace()}:test"

    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        assert not lease._holder_gone(holder(child.pid))
        os.kill(child.pid, signal.SIGKILL)
        for _ in range(100):  # the kill lands a moment later
            if open(f"/proc/{child.pid}/stat").read().rpartition(")")[2].split()[0] == "Z":
                break
            time.sleep(0.01)
        assert lease._holder_gone(holder(child.pid))
        os.kill(child.pid, 0)  # still there: what the old check looked at
    finally:
        child.kill()
        child.wait()
    assert lease._holder_gone(holder(child.pid))  # reaped
    assert not lease._holder_gone(f"elsewhere:{child.pid}:{lease._pid_namespace()}:test")  # another machine's pid
