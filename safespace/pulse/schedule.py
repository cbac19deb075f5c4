"""Rounds open, remind and close on their own: `safespace tick` and the periodic task of `serve`.

Every step is idempotent and runs in its turn (pulse/lease.py), so cron every minute plus several
app replicas never open a round twice, close it twice, or mail anyone twice.
"""

from __future__ import annotations

import asyncio
import logging
import random
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timedelta

import msgspec
from sqlalchemy import delete, func, or_, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from safespace import clock
from safespace.db.upsert import insert_once
from safespace.identity.models import Community, Membership, Person
from safespace.identity.signin import forget_old_sign_ins
from safespace.privacy.crypto import Keyring, associated_data
from safespace.privacy.round_keys import is_sealed
from safespace.pulse import tokens
from safespace.pulse.lease import holder_name, schedule_turn
from safespace.pulse.mail import RoundMailer
from safespace.pulse.models import (
    Lease,
    Participation,
    PendingComment,
    ReleasedComment,
    Round,
    RoundKey,
    RoundMail,
    SpentToken,
    Survey,
    Tally,
)
from safespace.pulse.services import COMMUNITY, available_instruments, bump_trend, read_tally, survey_cadence
from safespace.stories import services as stories
from surveys import cadence as cadence_rules
from surveys import disclosure
from surveys import tally as tally_rules
from surveys.instrument import instrument_to_dict

log = logging.getLogger(__name__)
REMIND_BEFORE_CLOSE = timedelta(days=1)
MAX_MAIL_FAILURES = 3


@dataclass
class TickReport:
    opened: int = 0
    closed: int = 0
    reminded: int = 0
    mails: list[tuple[str, uuid.UUID, uuid.UUID]] = field(default_factory=list)  # (kind, round, person)
    skipped: bool = False
    stories_released: int = 0


async def open_round(
    db: AsyncSession, survey: Survey, window: cadence_rules.Window, keyring: Keyring | None, token_key_bits: int | None = 2048
) -> Round:
    """Open a round: lock k, snapshot the instruments and who may answer, create empty tallies and
    every answer-token key of the round. All keys exist from the start: a key that appeared when a
    team's first member opened the home page would tell a watching facilitator that someone of
    that team is active right now (issue 22 item 3). With no keyring or `token_key_bits=None` no
    keys are made here: for a round that is closed at once (the demo's history), or seeded by a
    benchmark without the server's keyring (tokens.key_for_group then makes them on first use)."""
    community = await db.get_one(Community, survey.community_id)
    available = await available_instruments(db, survey.community_id)
    instruments = [available[key] for key in survey.instruments if key in available]
    members = (
        await db.execute(
            select(Membership.team_id, func.count())
            .where(Membership.community_id == survey.community_id, Membership.status == "active")
            .group_by(Membership.team_id)
        )
    ).all()
    population = {COMMUNITY: sum(n for _team, n in members)}
    k = disclosure.effective_k(community.min_group_size)
    # A team smaller than k can never be shown: its members count in the community tally only.
    population |= {str(team): n for team, n in members if team is not None and n >= k}
    number = (await db.scalar(select(func.max(Round.number)).where(Round.survey_id == survey.id)) or 0) + 1
    round_ = Round(
        survey_id=survey.id,
        community_id=survey.community_id,
        number=number,
        opens_at=window.opens_at,
        closes_at=window.closes_at,
        closed=False,
        min_group_size=community.min_group_size,
        comment_threshold=community.comment_threshold,
        instruments=[instrument_to_dict(i) for i in instruments],
        population=population,
        reminder_sent=False,
    )
    db.add(round_)
    await db.flush()
    for instrument in instruments:
        empty = tally_rules.new_tally(instrument.item_keys, instrument.reverse_keys, instrument.scale.points)
        for group in population:
            db.add(
                Tally(
                    round_id=round_.id,
                    instrument=instrument.key,
                    group_key=group,
                    respondents=0,
                    data=msgspec.json.encode(empty),
                )
            )
    await db.flush()
    for group in population if keyring and token_key_bits else ():
        await tokens.key_for_group(db, keyring, round_, group, token_key_bits)
    return round_


async def close_round(db: AsyncSession, keyring: Keyring, round_id: uuid.UUID, moment: datetime) -> bool:
    """Freeze a round and remove everything that could pair people with answers (P4 after release).

    - the ledger is re-inserted in a shuffled order in this one transaction (no insertion order,
      and on PostgreSQL one transaction id for all rows);
    - tallies of groups below k, or that would let a small group be recovered by subtraction,
      are deleted: a closed round keeps no tally about fewer than k people;
    - pending comments are opened, deleted and re-inserted as released comments in a shuffled
      order under new random ids (re-sealed for their new row); comments that could never be
      shown (the round missed the comment threshold) are deleted instead;
    - the round's mail ledger is deleted (reminder rows would tell who answered late).
    Returns False if the round was closed already (by another replica or a facilitator).
    """
    round_ = await db.scalar(select(Round).where(Round.id == round_id).with_for_update())
    if round_ is None or round_.closed:
        return False
    round_.closed = True
    await bump_trend(db, round_.survey_id)
    if round_.closes_at > moment:
        round_.closes_at = moment  # closed early
    random_order = random.SystemRandom()

    ledger = (await db.execute(select(Participation.person_id, Participation.reissued).where(Participation.round_id == round_id))).all()
    people = [person for person, _reissued in ledger]
    round_.reissued = sum(1 for _person, reissued in ledger if reissued)  # shown beside the results
    await db.execute(delete(Participation).where(Participation.round_id == round_id))
    random_order.shuffle(people)
    db.add_all([Participation(round_id=round_id, person_id=person) for person in people])

    tallies = list(await db.scalars(select(Tally).where(Tally.round_id == round_id)))
    # Who answered is what the tallies counted: with answer tokens the ledger also holds members
    # who took a token and never used it, so it can only overstate.
    answered = max((t.respondents for t in tallies if t.group_key == COMMUNITY), default=0)
    team_counts = {t.group_key: t.respondents for t in tallies if t.group_key != COMMUNITY}
    keep = disclosure.groups_to_keep(answered, team_counts, round_.min_group_size) if answered >= round_.min_group_size else set()
    if answered >= disclosure.effective_k(round_.min_group_size):
        keep.add(COMMUNITY)
    # Why each dropped team is hidden, in insights.services' words (its tally is deleted below).
    round_.hidden_teams = {
        team: "fewer_than_k" if answered < round_.min_group_size or n < round_.min_group_size else "protects_a_smaller_group"
        for team, n in team_counts.items()
        if team not in keep
    }
    if any(is_sealed(t.data) for t in tallies) and not keyring.rounds.has(round_id):
        # A database restored from a backup taken while the round was open, after its key was
        # destroyed: what was answered cannot be opened by anyone. Close it without results
        # rather than fail every tick.
        log.error("round %s closes without results: its key is missing from %s (restored from an older backup?)",
                  round_id, keyring.rounds.folder)  # fmt: skip
        keep = set()
        answered = 0
    # The final aggregate goes in the clear; every earlier state stays sealed under the round's
    # key, which is destroyed once this commits (forget_round_keys). Hidden groups' states are
    # never written in the clear.
    kept = [
        (t.instrument, t.group_key, t.respondents, msgspec.json.encode(read_tally(keyring, round_id, t.instrument, t.group_key, t.data)))
        for t in tallies
        if t.group_key in keep
    ]
    await db.execute(delete(Tally).where(Tally.round_id == round_id))
    db.add_all([Tally(round_id=round_id, instrument=i, group_key=g, respondents=n, data=d) for i, g, n, d in kept])

    pending = list(await db.scalars(select(PendingComment).where(PendingComment.round_id == round_id)))
    texts = []
    if disclosure.comments_visible(answered, round_.min_group_size, round_.comment_threshold):
        texts = [
            (
                c.instrument,
                c.group_key if c.group_key in keep else COMMUNITY,  # no pointer to a hidden team
                _pending_text(keyring, round_id, c),
            )
            for c in pending
        ]
    await db.execute(delete(PendingComment).where(PendingComment.round_id == round_id))
    random_order.shuffle(texts)
    for position, (instrument, group_key, text) in enumerate(texts):
        comment_id = uuid.uuid4()
        db.add(
            ReleasedComment(
                id=comment_id,
                round_id=round_id,
                instrument=instrument,
                group_key=group_key,
                position=position,
                body=keyring.seal(text, associated_data("released_comment", "body", f"{round_id}/{comment_id}")),
            )
        )
    await db.execute(delete(RoundMail).where(RoundMail.round_id == round_id))
    # No token of the round can verify again, and the spent list is no longer needed.
    await db.execute(delete(RoundKey).where(RoundKey.round_id == round_id))
    await db.execute(delete(SpentToken).where(SpentToken.round_id == round_id))
    await db.flush()
    return True


def _pending_text(keyring: Keyring, round_id: uuid.UUID, comment: PendingComment) -> str:
    aad = associated_data("pending_comment", "body", f"{round_id}/{comment.id}")
    if is_sealed(comment.body):  # under the round's key (pulse/services.fold_into_tallies)
        return keyring.rounds.open(round_id, comment.body, aad).decode()
    return keyring.open(comment.body, aad)  # sealed before round keys existed


async def forget_round_keys(db: AsyncSession, keyring: Keyring) -> int:
    """Destroy the keys of closed rounds (and of rounds that no longer exist), after the close is
    committed: their sealed per-answer states never open again. Idempotent; every tick runs it, so
    a close whose process died before this step is finished by the next tick."""
    held = keyring.rounds.held()
    if not held:
        return 0
    still_open = set(await db.scalars(select(Round.id).where(Round.id.in_(held), Round.closed.is_(False))))
    for round_id in held - still_open:
        keyring.rounds.destroy(round_id)
    return len(held - still_open)


SCRUB_DUE = "scrub-due"  # a lease row that is a note: old row versions wait to be scrubbed
ANSWER_TABLES = ("participation", "tally", "pending_comment", "released_comment", "round_mail", "round_key", "spent_token")
STORY_TABLES = ("story", "story_quota", "reply", "flag", "reaction")


async def scrub(db: AsyncSession, tables: tuple[str, ...] = ANSWER_TABLES) -> None:
    """After a close is committed, drop the old row versions the database still keeps.

    SQLite's write-ahead log holds every committed page image until a checkpoint; PostgreSQL
    keeps dead row versions until VACUUM. Either would let someone with the files replay the
    round answer by answer.
    """
    engine = db.bind
    async with engine.connect() as connection:
        if engine.dialect.name == "sqlite":
            await connection.exec_driver_sql("PRAGMA wal_checkpoint(TRUNCATE)")
        else:
            autocommit = await connection.execution_options(isolation_level="AUTOCOMMIT")
            await autocommit.exec_driver_sql(f"VACUUM {', '.join(tables)}")


async def _members_to_mail(db: AsyncSession, round_: Round, kind: str, unanswered_only: bool) -> list[Person]:
    query = (
        select(Person)
        .join(Membership, Membership.person_id == Person.id)
        .where(Membership.community_id == round_.community_id, Membership.status == "active")
        .where(~select(RoundMail).where(RoundMail.round_id == round_.id, RoundMail.person_id == Person.id, RoundMail.kind == kind).exists())
    )
    if unanswered_only:
        # Skipped: members the server saw answer (the signed-in form). A member who took a token
        # may or may not have used it (a spent token names no one): they are reminded, in words
        # that fit both (mail/round_reminder).
        answered = select(Participation).where(
            Participation.round_id == round_.id,
            Participation.person_id == Person.id,
            or_(Participation.token_request.is_(None), Participation.reissued & Participation.second_request.is_(None)),
        )
        query = query.where(~answered.exists())
    return list(await db.scalars(query))


async def _note_mails(db: AsyncSession, report: TickReport, round_: Round, kind: str, unanswered_only: bool) -> None:
    for person in await _members_to_mail(db, round_, kind, unanswered_only):
        db.add(RoundMail(round_id=round_.id, person_id=person.id, kind=kind))
        report.mails.append((kind, round_.id, person.id))


async def _retry_refused_mails(db: AsyncSession, report: TickReport, round_: Round) -> None:
    refused = await db.scalars(
        select(RoundMail).where(
            RoundMail.round_id == round_.id, RoundMail.failures > 0, RoundMail.failures < MAX_MAIL_FAILURES
        )
    )
    for mail in refused:
        report.mails.append((mail.kind, round_.id, mail.person_id))


async def run_schedule(
    db: AsyncSession,
    keyring: Keyring,
    moment: datetime,
    session_idle: timedelta = timedelta(days=3),
    story_release: tuple[int, int] = (0, 9),
    token_key_bits: int = 2048,
) -> TickReport:
    """One pass: open due rounds, remind, close; release story batches. Mails are only noted here."""
    report = TickReport()
    # This write also opens the transaction, so on SQLite the savepoints below nest inside it.
    await forget_old_sign_ins(db, session_idle)
    try:
        async with db.begin_nested():
            report.stories_released = await stories.release_due(db, keyring, moment, *story_release)
    except Exception:
        log.exception("schedule: story release skipped this pass")
    for survey in list(await db.scalars(select(Survey))):
        try:
            # A savepoint per survey: one broken survey (say, a comment sealed with a lost key)
            # must not stop rounds opening and closing in every other community.
            async with db.begin_nested():
                await _advance(db, keyring, survey, moment, report, token_key_bits)
        except Exception:
            log.exception("schedule: survey %s skipped this pass", survey.id)
    return report


async def _advance(
    db: AsyncSession, keyring: Keyring, survey: Survey, moment: datetime, report: TickReport, token_key_bits: int = 2048
) -> None:
    last = await db.scalar(select(Round).where(Round.survey_id == survey.id).order_by(Round.number.desc()).limit(1))
    if last is not None and not last.closed:
        if moment < last.closes_at:
            await _retry_refused_mails(db, report, last)
        if moment >= last.closes_at:
            if await close_round(db, keyring, last.id, moment):
                report.closed += 1
        elif (
            not last.reminder_sent
            and moment >= last.closes_at - REMIND_BEFORE_CLOSE
            and last.closes_at - last.opens_at > REMIND_BEFORE_CLOSE  # no reminder on the heels of the invitation
        ):
            last.reminder_sent = True
            await _note_mails(db, report, last, "reminder", unanswered_only=True)
            report.reminded += 1
        return
    if survey.paused:
        return
    window = cadence_rules.window_at(survey_cadence(survey), moment)
    if window is None or (last is not None and window.opens_at < last.closes_at):
        return
    round_ = await open_round(db, survey, window, keyring, token_key_bits)
    await _note_mails(db, report, round_, "invitation", unanswered_only=False)
    report.opened += 1


async def tick(
    sessionmaker: async_sessionmaker[AsyncSession],
    keyring: Keyring,
    mailer: RoundMailer | None,
    moment: datetime | None = None,
    holder: str | None = None,
    session_idle: timedelta = timedelta(days=3),
    story_release: tuple[int, int] = (0, 9),
    token_key_bits: int = 2048,
) -> TickReport:
    moment = moment or clock.now()
    holder = holder or holder_name()
    async with sessionmaker() as db:
        async with schedule_turn(db, holder, moment) as mine:
            if not mine:
                return TickReport(skipped=True)
            try:
                report = await run_schedule(db, keyring, moment, session_idle, story_release, token_key_bits)
                if report.closed or report.stories_released:
                    # Noted in the same transaction: a tick killed before its scrub leaves the note,
                    # and the next tick scrubs (old row versions must not outlive a close).
                    await insert_once(db, Lease, {"name": SCRUB_DUE, "holder": holder, "expires_at": moment}, ["name"])
                await db.commit()  # the mail ledger is written before any mail goes out
            except Exception:
                await db.rollback()
                raise
        await forget_round_keys(db, keyring)  # closed rounds' keys: after the close committed, before the scrub
        if await db.get(Lease, SCRUB_DUE) is not None:
            await scrub(db)
            await scrub(db, STORY_TABLES)
            await db.execute(delete(Lease).where(Lease.name == SCRUB_DUE))
            await db.commit()
    if mailer is not None:
        await mailer.send_all(sessionmaker, report.mails)
    return report


async def run_periodically(
    sessionmaker: async_sessionmaker[AsyncSession],
    keyring: Keyring,
    mailer: RoundMailer,
    every: float,
    session_idle: timedelta,
    story_release: tuple[int, int],
    token_key_bits: int = 2048,
) -> None:
    """The periodic task inside `safespace serve`."""
    while True:
        try:
            report = await tick(
                sessionmaker, keyring, mailer, session_idle=session_idle, story_release=story_release, token_key_bits=token_key_bits
            )
            if report.opened or report.closed or report.reminded:
                log.info("schedule: opened %d, closed %d, reminded %d", report.opened, report.closed, report.reminded)
        except Exception:
            log.exception("schedule pass failed")
        await asyncio.sleep(every * random.uniform(0.9, 1.1))
