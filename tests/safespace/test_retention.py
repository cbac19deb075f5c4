"""Retention (issue 20 item 4), as a facilitator sets it and the schedule applies it, on both
databases: what is older than the chosen age goes from every page and from the database's files;
what is newer stays; the page says beforehand what the next pass deletes."""

from __future__ import annotations

import re
import subprocess
from datetime import timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

from sqlalchemy import func, select, text
from sqlalchemy.ext.asyncio import async_sessionmaker

from safespace import clock, retention, schedule
from safespace.checkin.models import CheckIn
from safespace.privacy.crypto import Keyring
from safespace.pulse import services as pulse_services
from safespace.pulse.models import ReleasedComment, Round, Tally
from safespace.stories.models import Reply, Story
from tests.helpers import sign_in
from tests.safespace.checkin.conftest import MEMBERS, Meeting
from tests.safespace.pulse.conftest import answers

STORY = {"happened": "We announced the consultation too late.", "learned": "Start outreach a month before.", "differently": "Ask first."}
TITLES = [f"The story numbered {n}" for n in range(3)]


async def _tick(meeting: Meeting, engine, settings, moment) -> schedule.TickReport:
    sessionmaker = async_sessionmaker(engine, expire_on_commit=False)
    local = moment.astimezone(ZoneInfo("Europe/Madrid"))
    # The weekly story slot is the hour after `moment`: not due, so three stories go out as a batch.
    slot = (local.weekday(), local.hour + 1) if local.hour < 23 else (local.weekday() + 1, 0)
    return await schedule.tick(sessionmaker, Keyring.load(settings.encryption_key_path), None, moment=moment, story_release=slot)


async def _a_year_of_it(meeting: Meeting, engine, settings) -> Round:
    """A closed round answered by five with comments, three released stories (one with a released
    reply), a revealed check-in: all from today."""
    cid = meeting.community_id
    today = clock.now().astimezone(ZoneInfo("Europe/Madrid")).date()
    form = pulse_services.CadenceForm("weekly", today.weekday(), 1, 3, today.isoformat())
    await pulse_services.create_survey(meeting.db, cid, "Europe/Madrid", "Pulse", ["psychological_safety"], form)
    await meeting.db.commit()
    assert (await _tick(meeting, engine, settings, clock.now())).opened == 1
    round_ = await meeting.db.scalar(select(Round).where(Round.community_id == cid))
    for i, email in enumerate(MEMBERS[:5]):
        sent = await meeting.post(email, f"/c/{cid}/rounds/{round_.id}", answers(2 + i, comment=f"retained comment {i}"))
        assert sent.status_code == 303, sent.text
    for email, title in zip(MEMBERS, TITLES, strict=False):
        assert (await meeting.post(email, f"/c/{cid}/stories", STORY | {"title": title})).status_code == 200
    assert (await _tick(meeting, engine, settings, clock.now())).stories_released == 3
    await meeting.start()
    for email in MEMBERS[:5]:
        assert (await meeting.answer(email)).status_code == 303
    assert (await meeting.post(meeting.world.facilitator, f"{meeting.page}/reveal", {})).status_code == 303
    assert (await _tick(meeting, engine, settings, round_.closes_at + timedelta(seconds=1))).closed == 1
    return round_


async def _count(meeting: Meeting, model, *where) -> int:
    return await meeting.db.scalar(select(func.count()).select_from(model).where(*where)) or 0


async def test_old_results_and_stories_go_from_every_page_and_newer_ones_stay(meeting: Meeting, engine, settings, monkeypatch) -> None:
    round_ = await _a_year_of_it(meeting, engine, settings)
    cid, fac = meeting.community_id, meeting.world.facilitator
    settings_page = await (await meeting.browser(fac)).get(f"/c/{cid}/settings")
    assert "Now: kept until someone deletes them." in settings_page.text
    saved = await meeting.post(fac, f"/c/{cid}/settings/retention", {"retention_days": "91"})
    assert saved.status_code == 303  # nothing is 91 days old yet: no question asked
    page = await (await meeting.browser(fac)).get(f"/c/{cid}/settings")
    assert "Now: kept for 91 days." in page.text and "Nothing is old enough to be deleted yet." in page.text

    # 92 days on, signed in afresh: the page says what the next pass deletes, and the pass does it.
    later = round_.closes_at + timedelta(days=92)
    monkeypatch.setattr(clock, "now", lambda: later)
    facilitator = meeting.new_browser()
    await sign_in(facilitator, meeting.db, fac)
    page = await facilitator.get(f"/c/{cid}/settings")
    assert "The next pass deletes 1 closed round, 1 check-in, 3 stories." in re.sub(r"\s+", " ", page.text)
    report = await _tick(meeting, engine, settings, later)
    assert report.expired == retention.Expired(rounds=1, checkins=1, stories=3)
    assert (await facilitator.get(f"/c/{cid}/rounds/{round_.id}/results")).status_code == 404
    assert (await facilitator.get(meeting.page)).status_code == 404
    wall = await facilitator.get(f"/c/{cid}/stories")
    assert wall.status_code == 200 and not any(title in wall.text for title in TITLES)
    assert await _count(meeting, Tally, Tally.round_id == round_.id) == 0
    assert await _count(meeting, ReleasedComment, ReleasedComment.round_id == round_.id) == 0
    assert await _count(meeting, Story) == await _count(meeting, Reply) == await _count(meeting, CheckIn) == 0
    log = (await facilitator.get(f"/c/{cid}/audit")).text
    assert "deleted 1 round, 1 check-in, 3 stories older than 91 days" in log and "retention off -&gt; 91 days" in log
    assert await _count(meeting, Round, Round.id == round_.id) == 0
    # Done once: the next pass finds nothing more to delete.
    assert (await _tick(meeting, engine, settings, later + timedelta(minutes=1))).expired == retention.Expired()


async def test_an_age_that_deletes_something_is_asked_again_and_a_bad_one_refused(meeting: Meeting, engine, settings, monkeypatch) -> None:
    round_ = await _a_year_of_it(meeting, engine, settings)
    cid, fac = meeting.community_id, meeting.world.facilitator
    later = round_.closes_at + timedelta(days=200)
    monkeypatch.setattr(clock, "now", lambda: later)
    facilitator = meeting.new_browser()
    await sign_in(facilitator, meeting.db, fac)
    await facilitator.get(f"/c/{cid}/settings")
    token = facilitator.cookies["safespace_csrf"]
    asked = await facilitator.post(f"/c/{cid}/settings/retention", data={"retention_days": "182", "_csrf_token": token})
    assert asked.status_code == 200
    words = re.sub(r"\s+", " ", asked.text)
    assert "Keeping 182 days deletes, at the next pass of the schedule: 1 closed round, 1 check-in, 3 stories." in words
    assert await retention.days_of(meeting.db, cid) is None  # nothing set until confirmed
    for bad in ("12", "90", "forever", "99999"):
        refused = await facilitator.post(f"/c/{cid}/settings/retention", data={"retention_days": bad, "_csrf_token": token})
        assert refused.status_code == 303
        assert "from 91 to 3650 days" in (await facilitator.get(f"/c/{cid}/settings")).text
    assert await retention.days_of(meeting.db, cid) is None
    member = meeting.new_browser()  # signed in after the clock moved, as the facilitator
    await sign_in(member, meeting.db, MEMBERS[0])
    await member.get("/profile")
    denied = await member.post(f"/c/{cid}/settings/retention", data={"retention_days": "91", "confirm": "yes", "_csrf_token": member.cookies["safespace_csrf"]})
    assert denied.status_code in (403, 404)
    confirmed = await facilitator.post(f"/c/{cid}/settings/retention", data={"retention_days": "182", "confirm": "yes", "_csrf_token": token})
    assert confirmed.status_code == 303 and await retention.days_of(meeting.db, cid) == 182
    assert (await _tick(meeting, engine, settings, later)).expired == retention.Expired(rounds=1, checkins=1, stories=3)
    turned_off = await facilitator.post(f"/c/{cid}/settings/retention", data={"retention_days": "off", "_csrf_token": token})
    assert turned_off.status_code == 303 and await retention.days_of(meeting.db, cid) is None


async def _database_files(meeting: Meeting, database_url: str) -> list[Path]:
    """Every file of the database: SQLite's folder (the database, its -wal and -shm), or the
    PostgreSQL database's own folder under base/ after a checkpoint has written its pages out."""
    if database_url.startswith("sqlite"):
        folder = Path(database_url.split("///", 1)[1]).parent
    else:
        await meeting.db.commit()
        await meeting.db.execute(text("CHECKPOINT"))
        datadir = await meeting.db.scalar(text("SHOW data_directory"))
        oid = await meeting.db.scalar(text("SELECT oid FROM pg_database WHERE datname = current_database()"))
        await meeting.db.commit()
        folder = Path(datadir) / "base" / str(oid)
    return [path for path in folder.iterdir() if path.is_file()]


def _read(paths: list[Path]) -> bytes:
    """The files' bytes, read by another process: closing a descriptor of an SQLite file in the
    process that holds it open drops that process's POSIX locks on it (the next statements then
    fail with "disk I/O error"), so the test never opens one itself."""
    return subprocess.run(["cat", *map(str, paths)], capture_output=True, check=True).stdout


async def test_deleted_results_are_not_left_in_the_database_files(meeting: Meeting, engine, settings, database_url, monkeypatch) -> None:
    """Read raw: after the pass, the deleted round's kept tallies are in no file of the database.
    SQLite deletes with secure_delete and the pass checkpoints its write-ahead log; on PostgreSQL the
    pass rewrites the tables (a plain VACUUM leaves the freed rows' bytes in the pages). What the
    PostgreSQL write-ahead log keeps is THREAT_MODEL.md's to say."""
    # Earlier tests' rows, deleted between tests, may still be in the pages: rewrite them out first.
    await schedule.scrub(meeting.db, schedule.RETENTION_TABLES, rewrite=True)
    round_ = await _a_year_of_it(meeting, engine, settings)
    tallies = list(await meeting.db.scalars(select(Tally.data).where(Tally.round_id == round_.id)))
    assert tallies and all(len(data) > 200 for data in tallies)
    # A newer round, kept: its tallies sit after the deleted ones, so the pages that held those are
    # not the table's last and cannot simply be cut off the end of its file (as VACUUM does).
    newer = (round_.closes_at + timedelta(days=91)).astimezone(ZoneInfo("Europe/Madrid"))  # still open at the pass
    form = pulse_services.CadenceForm("weekly", newer.weekday(), 1, 3, newer.date().isoformat())
    await pulse_services.create_survey(meeting.db, meeting.community_id, "Europe/Madrid", "Later", ["psychological_safety"], form)
    await meeting.db.commit()
    assert (await _tick(meeting, engine, settings, newer.replace(hour=12))).opened >= 1
    # Answered, so its key is held: the pass reads the open rounds for it just before the rewrite,
    # which must not wait for a lock of that pass's own (PostgreSQL).
    monkeypatch.setattr(clock, "now", lambda: newer.replace(hour=13))
    member = meeting.new_browser()
    await sign_in(member, meeting.db, MEMBERS[0])
    await member.get("/profile")
    later_round = await meeting.db.scalar(select(Round.id).where(Round.closed.is_(False)).order_by(Round.opens_at.desc()).limit(1))
    sent = await member.post(f"/c/{meeting.community_id}/rounds/{later_round}", data=answers(3) | {"_csrf_token": member.cookies["safespace_csrf"]})
    assert sent.status_code == 303, sent.text
    before = _read(await _database_files(meeting, database_url))
    assert all(data in before for data in tallies)  # the probe finds them while they are kept
    await retention.set_days(meeting.db, meeting.world.community, 91, "fac@x.org")
    await meeting.db.commit()
    report = await _tick(meeting, engine, settings, round_.closes_at + timedelta(days=92))
    assert report.expired.rounds == 1
    assert await _count(meeting, Tally) > 0  # the newer round's
    after = _read(await _database_files(meeting, database_url))
    assert not [data for data in tallies if data in after]
