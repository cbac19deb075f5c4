"""Live check-ins over HTTP, on SQLite and PostgreSQL: each rule a member or a facilitator
would check, including the event stream."""

from __future__ import annotations

import asyncio
import re
import subprocess
from datetime import timedelta
from pathlib import Path

import msgspec
import pytest
from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import async_sessionmaker

from safespace import clock, schedule
from safespace.checkin import live
from safespace.checkin.models import CheckIn, CheckInParticipation, CheckInTally
from safespace.db.engine import make_engine
from safespace.privacy.crypto import Keyring
from surveys import tally as tally_rules
from tests.safespace.checkin.conftest import MEMBERS, Meeting, open_stream, outsider, shown_count


async def _tally(meeting: Meeting) -> CheckInTally:
    meeting.db.expire_all()
    return await meeting.db.get(CheckInTally, meeting.checkin_id)


async def test_member_answers_and_sees_counted(meeting: Meeting) -> None:
    await meeting.start()
    page = await (await meeting.browser(MEMBERS[0])).get(meeting.join)
    assert page.status_code == 200 and "Send my answer" in page.text
    response = await meeting.answer(MEMBERS[0])
    assert response.status_code == 303
    page = await (await meeting.browser(MEMBERS[0])).get(meeting.join)
    assert "Counted." in page.text
    assert "Waiting for at least 5 answers" in page.text


async def test_count_is_hidden_below_k_on_every_page_and_stream_then_shown_at_k(meeting: Meeting) -> None:
    await meeting.start()
    stream = await open_stream(meeting, MEMBERS[5])
    first = await stream.next()
    assert first == {"state": "open", "count": None}
    for email in MEMBERS[:4]:
        assert (await meeting.answer(email)).status_code == 303
        for viewer, path in ((meeting.world.facilitator, meeting.page), (MEMBERS[0], meeting.join), (MEMBERS[5], meeting.join)):
            text = (await (await meeting.browser(viewer)).get(path)).text
            assert shown_count(text) is None, (viewer, path)
            assert "Waiting for at least 5 answers" in text
    await asyncio.sleep(0.2)
    assert stream.pending() == []  # not one message below k: a listener cannot even count them
    assert (await meeting.answer(MEMBERS[4])).status_code == 303
    assert await stream.next() == {"state": "open", "count": 5}
    assert shown_count((await (await meeting.browser(meeting.world.facilitator)).get(meeting.page)).text) == "5"
    assert shown_count((await (await meeting.browser(MEMBERS[0])).get(meeting.join)).text) == "5"
    await stream.close()


async def test_reveal_is_refused_below_k_and_works_at_k(meeting: Meeting) -> None:
    await meeting.start()
    for email in MEMBERS[:4]:
        await meeting.answer(email, 2)
    refused = await meeting.post(meeting.world.facilitator, f"{meeting.page}/reveal", {})
    assert refused.status_code == 409
    assert "Fewer than 5 people have answered" in refused.text
    assert (await meeting.reload()).state == "open"
    assert "Scale score" not in (await (await meeting.browser(MEMBERS[0])).get(meeting.join)).text
    stream = await open_stream(meeting, MEMBERS[0])
    assert (await stream.next())["count"] is None
    await meeting.answer(MEMBERS[4], 5)
    assert (await stream.next())["count"] == 5
    revealed = await meeting.post(meeting.world.facilitator, f"{meeting.page}/reveal", {})
    assert revealed.status_code == 303
    assert await stream.next() == {"state": "revealed", "count": 5}
    page = (await (await meeting.browser(MEMBERS[0])).get(meeting.join)).text
    assert "Scale score" in page and "Results per statement" in page
    # Answers per point of the 7-point scale, per statement: four answered 2, one answered 5.
    assert "0 · 4 · 0 · 0 · 1 · 0 · 0" in re.sub(r"<[^>]+>", "", page)
    late = await meeting.answer(MEMBERS[5], 1)
    assert late.status_code == 409 and "closed" in late.text
    await stream.close()


async def test_one_answer_per_member_and_a_change_moves_the_tally_without_a_second_count(meeting: Meeting, settings) -> None:
    await meeting.start()
    await meeting.answer(MEMBERS[0], 1)
    await meeting.answer(MEMBERS[0], 5)  # a change of answer, from the same browser
    keyring = Keyring.load(settings.encryption_key_path)
    from safespace.checkin.answering import read_tally

    row = await _tally(meeting)
    tally = read_tally(keyring, meeting.checkin_id, row.data)
    assert row.respondents == 1 and tally.respondents == 1
    assert tally.counts["s1"] == [0, 0, 0, 0, 1, 0, 0]
    # The same member in another browser has no receipt: refused, nothing counted twice.
    other = meeting.new_browser()
    from tests.helpers import csrf, sign_in

    await sign_in(other, meeting.db, MEMBERS[0])
    again = await other.post(meeting.join, data={"a.s1": "3", "a.s2": "3", "_csrf_token": csrf(other)})
    assert again.status_code == 409 and "already answered" in again.text
    assert (await _tally(meeting)).respondents == 1
    await other.aclose()


async def test_an_old_receipt_cannot_fold_an_answer_out_twice(meeting: Meeting, settings) -> None:
    await meeting.start()
    browser = await meeting.browser(MEMBERS[0])
    await meeting.answer(MEMBERS[0], 1)
    old = browser.cookies.get(f"checkin_{meeting.code}")
    await meeting.answer(MEMBERS[0], 2)
    browser.cookies.set(f"checkin_{meeting.code}", old, domain="testserver.local", path=meeting.join)
    replay = await meeting.answer(MEMBERS[0], 3)
    assert replay.status_code == 409
    from safespace.checkin.answering import read_tally

    tally = read_tally(Keyring.load(settings.encryption_key_path), meeting.checkin_id, (await _tally(meeting)).data)
    assert tally.respondents == 1 and tally.counts["s1"] == [0, 1, 0, 0, 0, 0, 0]


async def test_a_member_of_another_community_is_refused(meeting: Meeting) -> None:
    await meeting.start()
    stranger = await outsider(meeting)
    browser = await meeting.browser(stranger)
    assert (await browser.get(meeting.join)).status_code == 404
    assert (await meeting.answer(stranger)).status_code == 404
    stream = await open_stream(meeting, stranger)
    assert stream.status == 404
    assert (await browser.get(meeting.page)).status_code == 404
    assert (await _tally(meeting)).respondents == 0
    # Not signed in at all: sent to sign in, never a page of the check-in.
    anonymous = meeting.new_browser()
    assert (await anonymous.get(meeting.join)).status_code in (302, 303, 401)
    await anonymous.aclose()


async def test_a_member_cannot_run_the_check_in(meeting: Meeting) -> None:
    await meeting.start()
    for email in MEMBERS[:5]:
        await meeting.answer(email)
    assert (await meeting.post(MEMBERS[0], f"{meeting.page}/reveal", {})).status_code == 403
    assert (await meeting.reload()).state == "open"


async def test_left_open_it_closes_itself_at_tick_and_below_k_is_never_shown(meeting: Meeting, settings, engine) -> None:
    from sqlalchemy.ext.asyncio import async_sessionmaker

    await meeting.start()
    for email in MEMBERS[:3]:
        await meeting.answer(email)
    keyring = Keyring.load(settings.encryption_key_path)
    sessionmaker = async_sessionmaker(engine, expire_on_commit=False)
    early = await schedule.tick(sessionmaker, keyring, None, moment=clock.now() + timedelta(minutes=119))
    assert early.checkins_closed == 0
    report = await schedule.tick(sessionmaker, keyring, None, moment=clock.now() + timedelta(minutes=121))
    assert report.checkins_closed == 1
    assert (await meeting.reload()).state == "closed"
    late = await meeting.answer(MEMBERS[4])
    assert late.status_code == 409
    assert (await meeting.post(meeting.world.facilitator, f"{meeting.page}/reveal", {})).status_code == 409
    page = (await (await meeting.browser(MEMBERS[0])).get(meeting.join)).text
    assert "Fewer than 5 people answered, so nothing will be shown" in page and shown_count(page) is None


async def test_a_page_left_open_learns_the_close_by_time_without_reloading(meeting: Meeting, settings, monkeypatch) -> None:
    """The pass that closes a check-in past its time may run where it cannot publish to this
    process (SQLite's channels live in one process; `safespace tick` from cron): the open stream
    reads the state itself once the time is up, and tells the page."""
    await meeting.start()
    for email in MEMBERS[:5]:
        await meeting.answer(email)
    closes_at = clock.now() + timedelta(seconds=1)
    await meeting.db.execute(update(CheckIn).where(CheckIn.id == meeting.checkin_id).values(closes_at=closes_at))
    await meeting.db.commit()
    monkeypatch.setattr(live, "POLL_AFTER_DUE_SECONDS", 0.2)
    stream = await open_stream(meeting, MEMBERS[0])
    assert await stream.next() == {"state": "open", "count": 5}
    engine = make_engine(settings)  # the pass's own engine, as a `safespace tick` process has
    try:
        keyring = Keyring.load(settings.encryption_key_path)
        report = await schedule.tick(async_sessionmaker(engine, expire_on_commit=False), keyring, None, moment=closes_at + timedelta(seconds=1))
    finally:
        await engine.dispose()
    assert report.checkins_closed == 1
    assert await stream.next(timeout=15) == {"state": "closed", "count": 5}
    await stream.close()


async def test_closed_at_k_by_time_is_revealed_by_the_facilitator(meeting: Meeting, settings, engine) -> None:
    from sqlalchemy.ext.asyncio import async_sessionmaker

    await meeting.start()
    for email in MEMBERS[:5]:
        await meeting.answer(email)
    keyring = Keyring.load(settings.encryption_key_path)
    await schedule.tick(async_sessionmaker(engine, expire_on_commit=False), keyring, None, moment=clock.now() + timedelta(hours=3))
    assert (await meeting.reload()).state == "closed"
    assert "Scale score" not in (await (await meeting.browser(MEMBERS[0])).get(meeting.join)).text
    assert (await meeting.post(meeting.world.facilitator, f"{meeting.page}/reveal", {})).status_code == 303
    assert "Scale score" in (await (await meeting.browser(MEMBERS[0])).get(meeting.join)).text


async def test_free_text_is_shown_shuffled_only_at_the_comment_threshold(meeting: Meeting) -> None:
    meeting.world.community.comment_threshold = 5
    meeting.db.add(meeting.world.community)
    await meeting.db.commit()
    await meeting.start(prompt="One word for this meeting?")
    for n, email in enumerate(MEMBERS[:5]):
        await meeting.answer(email, comment=f"word{n}")
    await meeting.post(meeting.world.facilitator, f"{meeting.page}/reveal", {})
    page = (await (await meeting.browser(MEMBERS[0])).get(meeting.join)).text
    assert all(f"word{n}" in page for n in range(5))
    assert "In random order." in page


async def test_the_facilitator_page_shows_the_code_the_join_link_and_a_qr_code(meeting: Meeting) -> None:
    await meeting.start()
    page = (await (await meeting.browser(meeting.world.facilitator)).get(meeting.page)).text
    assert meeting.code in page
    assert f"http://testserver.local/checkin/{meeting.code}" in page
    assert '<svg' in page and 'class="qr"' in page
    assert '<noscript><meta http-equiv="refresh"' in page


async def _survey(meeting: Meeting) -> str:
    from safespace.pulse import services as pulse

    today = clock.now().date()
    cadence = pulse.CadenceForm("weekly", today.weekday(), 1, 3, today.isoformat())
    survey = await pulse.create_survey(meeting.db, meeting.community_id, "Europe/Madrid", "Pulse", ["psychological_safety"], cadence)
    await meeting.db.commit()
    return str(survey.id)


async def _revealed(meeting: Meeting, values: list[int]) -> None:
    await meeting.start()
    for email, value in zip(MEMBERS, values, strict=False):
        await meeting.answer(email, value)
    assert (await meeting.post(meeting.world.facilitator, f"{meeting.page}/reveal", {})).status_code == 303


async def test_a_check_in_kept_in_the_trend_shows_on_the_survey_marked_as_a_meeting_check_in(meeting: Meeting) -> None:
    survey_id = await _survey(meeting)
    await meeting.start()
    for email in MEMBERS[:5]:
        await meeting.answer(email)
    too_early = await meeting.post(meeting.world.facilitator, f"{meeting.page}/outcome", {"outcome": "trend", "survey": survey_id})
    assert too_early.status_code == 409  # not revealed yet
    await meeting.post(meeting.world.facilitator, f"{meeting.page}/reveal", {})
    kept = await meeting.post(meeting.world.facilitator, f"{meeting.page}/outcome", {"outcome": "trend", "survey": survey_id})
    assert kept.status_code == 303
    page = (await (await meeting.browser(meeting.world.facilitator)).get(f"/c/{meeting.community_id}/surveys/{survey_id}")).text
    assert "Meeting check-ins in this trend" in page and "meeting check-in</span>" in page
    assert meeting.checkin_id and str(meeting.checkin_id) in page


async def test_a_discarded_check_in_is_in_no_trend(meeting: Meeting) -> None:
    survey_id = await _survey(meeting)
    await _revealed(meeting, [4, 4, 4, 4, 4])
    assert (await meeting.post(meeting.world.facilitator, f"{meeting.page}/outcome", {"outcome": "discarded"})).status_code == 303
    assert (await meeting.reload()).outcome == "discarded"
    page = (await (await meeting.browser(meeting.world.facilitator)).get(f"/c/{meeting.community_id}/surveys/{survey_id}")).text
    assert "Meeting check-ins in this trend" not in page


async def test_a_free_question_with_a_fixed_answer_set(meeting: Meeting) -> None:
    await meeting.start(statements=[], question="I can say what I think in this meeting.")
    page = (await (await meeting.browser(MEMBERS[0])).get(meeting.join)).text
    assert "I can say what I think in this meeting." in page and "Strongly agree" in page
    assert (await meeting.post(MEMBERS[0], meeting.join, {"a.q1": "4"})).status_code == 303
    assert (await _tally(meeting)).respondents == 1


async def test_starting_needs_one_to_three_statements(meeting: Meeting) -> None:
    url = f"/c/{meeting.community_id}/checkins"
    none = await meeting.post(meeting.world.facilitator, url, {"prompt": ""})
    assert none.status_code == 422 and "Choose one to three statements" in none.text
    four = ["psychological_safety/ps_mistakes", "psychological_safety/ps_raise_issues", "psychological_safety/ps_difference", "trust/tr_open"]
    many = await meeting.post(meeting.world.facilitator, url, {"statement": four})
    assert many.status_code == 422 and "at most three" in many.text


async def test_the_raw_database_links_no_one_to_an_answer_after_a_change_and_after_close(meeting: Meeting, settings) -> None:
    """Attack: read every check-in table as the operator would, after a change of answer (while
    open) and after close; nothing pairs a member with what they answered."""
    await meeting.start(prompt="Anything else?")
    for email in MEMBERS[:4]:
        await meeting.answer(email, 3)
    await meeting.answer(MEMBERS[0], 1, comment="secret-word")
    await meeting.answer(MEMBERS[0], 5, comment="changed-word")  # the change
    await meeting.answer(MEMBERS[4], 3)
    dump = await _dump(meeting)
    ledger = dump["checkin_participation"]
    # Who, a receipt's hash, and private mode's token count: no answer, no time.
    assert {tuple(sorted(r)) for r in ledger} == {("checkin_id", "person_id", "receipt_hash", "token_request", "tokens")}
    tally_data = dump["checkin_tally"][0]["data"]
    assert not tally_data.startswith(b"{")  # sealed while open: old row versions do not open either
    blob = repr(dump).encode()
    assert b"secret-word" not in blob and b"changed-word" not in blob
    comments = dump["checkin_comment"]
    assert len(comments) == 1 and all(c["position"] is None for c in comments)  # the first comment is gone
    await meeting.post(meeting.world.facilitator, f"{meeting.page}/reveal", {})
    after = await _dump(meeting)
    assert after["checkin_participation"] == []  # the ledger is gone at close
    final = msgspec.json.decode(after["checkin_tally"][0]["data"], type=tally_rules.Tally)
    assert final.respondents == 5 and final.counts["s1"] == [0, 0, 4, 0, 1, 0, 0]
    from safespace.checkin.keys import checkin_keys

    assert not checkin_keys(Keyring.load(settings.encryption_key_path)).has(meeting.checkin_id)  # receipts never open again
    assert b"secret-word" not in repr(after).encode()


def _files_holding(folder: Path, values: list[bytes]) -> list[str]:
    """The files of the database's folder that hold any of the values, read raw by another process
    (as a copy of the live folder would be: reading them in this one would drop its SQLite locks)."""
    files = {path.name: subprocess.run(["cat", str(path)], capture_output=True, check=True).stdout for path in folder.iterdir()}
    return sorted({name for name, data in files.items() for value in values if value in data})


async def test_the_database_files_keep_no_ledger_row_once_a_check_in_is_closed(meeting: Meeting, settings) -> None:
    """Attack from the files: the ledger's receipt hashes (a member's row: who, and the receipt
    that changes their answer) read before the close, then looked for in every byte the database
    left on disk after the facilitator's close, as a copy of the live data directory would have
    them, for each way a check-in closes. The close deletes the rows; its scrub checkpoints the
    write-ahead log, which otherwise still holds the pages as they were (SQLite's secure_delete
    zeroes the database file only)."""
    if meeting.db.bind.dialect.name != "sqlite":
        pytest.skip("PostgreSQL: a plain VACUUM frees a deleted row's space without zeroing it, as for a round's ledger")
    folder = Path(meeting.db.bind.url.database).parent
    for closed_by in ("the facilitator", "the reveal", "the schedule"):
        await meeting.start()
        for email in MEMBERS[:5]:
            await meeting.answer(email, 3)
        where = CheckInParticipation.checkin_id == meeting.checkin_id
        ledger = list(await meeting.db.scalars(select(CheckInParticipation.receipt_hash).where(where)))
        await meeting.db.commit()
        assert len(ledger) == 5 and all(ledger)
        if closed_by != "the schedule":
            action = "close" if closed_by == "the facilitator" else "reveal"
            assert (await meeting.post(meeting.world.facilitator, f"{meeting.page}/{action}", {})).status_code == 303
        else:  # left open past its time
            keyring = Keyring.load(settings.encryption_key_path)
            report = await schedule.tick(async_sessionmaker(meeting.db.bind), keyring, None, moment=clock.now() + timedelta(hours=3))
            assert report.checkins_closed == 1
        assert any(path.name.endswith("-wal") for path in folder.iterdir())  # the log is there, live
        assert _files_holding(folder, ledger) == [], f"closed by {closed_by}: ledger rows of a closed check-in"


async def test_a_closer_that_dies_before_its_scrub_leaves_the_ledger_pages_one_pass_at_most(meeting: Meeting, settings, monkeypatch) -> None:
    """The close's transaction notes that a scrub is due; a process killed between its commit and
    its scrub (here: the route's scrub never runs) leaves the write-ahead log with the ledger's
    pages, and the schedule's next pass scrubs them and drops the note."""
    if meeting.db.bind.dialect.name != "sqlite":
        pytest.skip("the files are read on SQLite (see the test above)")
    from safespace.checkin import controllers
    from safespace.pulse.models import Lease

    folder = Path(meeting.db.bind.url.database).parent
    await meeting.start()
    for email in MEMBERS[:5]:
        await meeting.answer(email, 3)
    ledger = list(await meeting.db.scalars(select(CheckInParticipation.receipt_hash).where(CheckInParticipation.checkin_id == meeting.checkin_id)))
    await meeting.db.commit()

    async def died_first(*_args, **_kwargs) -> bool:
        return False

    monkeypatch.setattr(controllers.schedule, "scrub", died_first)
    assert (await meeting.post(meeting.world.facilitator, f"{meeting.page}/close", {})).status_code == 303
    monkeypatch.undo()

    async def notes() -> int:
        found = len(list(await meeting.db.scalars(select(Lease.name).where(Lease.name == schedule.SCRUB_DUE))))
        await meeting.db.commit()
        return found

    assert _files_holding(folder, ledger) == ["safespace.db-wal"] and await notes() == 1  # the pages are there, and so is the note
    await schedule.tick(async_sessionmaker(meeting.db.bind), Keyring.load(settings.encryption_key_path), None)
    assert _files_holding(folder, ledger) == [] and await notes() == 0


async def test_the_sealed_tally_is_as_long_whatever_was_answered(meeting: Meeting) -> None:
    """Attack: without the key, compare the lengths of the sealed tally states (the versions
    PostgreSQL's pages and WAL keep, each beside the ledger row its answer wrote). Unpadded, the
    first state alone told a 1 from a 5 (a sum gaining a digit); padded, every state is as long."""
    await meeting.start()
    lengths = set()
    for email, value in zip(MEMBERS[:5], (1, 5, 2, 4, 3), strict=True):
        await meeting.answer(email, value)
        lengths.add(len((await _tally(meeting)).data))
    await meeting.answer(MEMBERS[0], 5)  # a change of answer
    lengths.add(len((await _tally(meeting)).data))
    assert len(lengths) == 1


async def test_a_change_of_answer_publishes_nothing(meeting: Meeting, monkeypatch) -> None:
    from safespace.checkin import live

    sent = []
    monkeypatch.setattr(live, "publish", lambda channels, checkin, state: sent.append(state.count))
    await meeting.start()
    for email in MEMBERS[:5]:
        await meeting.answer(email, 3)
    await meeting.answer(MEMBERS[0], 5)  # a change: the count stays at 5
    await meeting.answer(MEMBERS[5], 2)
    assert sent == [None, None, None, None, 5, 6]  # one per new answer (none sent below k), none for the change


async def test_pending_comments_are_as_long_whatever_was_written_and_a_long_one_is_refused(meeting: Meeting) -> None:
    """Attack: a pending comment's sealed length, beside the ledger row written with it, would
    pair its author with the comment released at close; every pending one is as long."""
    meeting.world.community.comment_threshold = 5
    meeting.db.add(meeting.world.community)
    await meeting.db.commit()
    await meeting.start(prompt="Anything else?")
    await meeting.answer(MEMBERS[0], 3, comment="ok")
    await meeting.answer(MEMBERS[1], 3, comment="a much longer comment about the meeting, ñ and all " * 10)
    rows = (await _dump(meeting))["checkin_comment"]
    assert len(rows) == 2 and len({len(r["body"]) for r in rows}) == 1
    too_long = await meeting.answer(MEMBERS[2], 3, comment="x" * 1001)
    assert too_long.status_code == 422 and "Keep your comment to 1000 characters or fewer." in too_long.text
    for email in MEMBERS[2:5]:
        await meeting.answer(email, 3)
    await meeting.post(meeting.world.facilitator, f"{meeting.page}/reveal", {})
    shown = (await (await meeting.browser(MEMBERS[0])).get(meeting.join)).text
    assert "<li>ok</li>" in shown  # released without its padding


async def _dump(meeting: Meeting) -> dict[str, list[dict]]:
    from sqlalchemy import text

    meeting.db.expire_all()
    found = {}
    for table in ("checkin", "checkin_tally", "checkin_participation", "checkin_comment"):
        rows = (await meeting.db.execute(text(f"SELECT * FROM {table}"))).mappings().all()
        found[table] = [dict(r) for r in rows]
    await meeting.db.commit()
    return found


async def test_the_ledger_holds_one_row_per_member_who_answered(meeting: Meeting) -> None:
    await meeting.start()
    for email in MEMBERS[:3]:
        await meeting.answer(email)
    rows = list(await meeting.db.scalars(select(CheckInParticipation).where(CheckInParticipation.checkin_id == meeting.checkin_id)))
    assert len(rows) == 3


async def test_a_close_by_tick_reaches_open_pages_on_postgresql(meeting: Meeting, settings, engine) -> None:
    """On PostgreSQL the tick (cron's `safespace tick` too) tells the open streams through NOTIFY."""
    from sqlalchemy.ext.asyncio import async_sessionmaker

    if engine.dialect.name != "postgresql":
        return  # SQLite: one process, in-memory channels; an open page learns it at its next load
    await meeting.start()
    stream = await open_stream(meeting, MEMBERS[0])
    assert (await stream.next())["count"] is None
    for email in MEMBERS[:5]:
        await meeting.answer(email)
    assert await stream.next() == {"state": "open", "count": 5}
    keyring = Keyring.load(settings.encryption_key_path)
    await schedule.tick(async_sessionmaker(engine, expire_on_commit=False), keyring, None, moment=clock.now() + timedelta(hours=3))
    assert await stream.next() == {"state": "closed", "count": 5}
    await stream.close()


async def test_no_answer_is_taken_past_the_closing_time_even_before_the_tick(meeting: Meeting, monkeypatch) -> None:
    await meeting.start()
    await meeting.answer(MEMBERS[0])
    later = clock.now() + timedelta(minutes=121)
    monkeypatch.setattr(clock, "now", lambda: later)
    late = await meeting.answer(MEMBERS[1])
    assert late.status_code == 409 and "closed" in late.text
    assert (await _tally(meeting)).respondents == 1
