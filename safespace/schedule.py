"""The schedule: rounds open, remind and close on their own, story batches are released, old
sign-ins forgotten and, where a community set a retention, old results and stories deleted.
`safespace tick` runs one pass; `serve` runs one every SAFESPACE_SCHEDULE_INTERVAL_SECONDS.

Every step is idempotent and runs in its turn (pulse/lease.py), so cron every minute plus several
app replicas never open a round twice, close it twice, or mail anyone twice.
"""

from __future__ import annotations

import asyncio
import logging
import random
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from sqlalchemy import delete, select
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from safespace import clock
from safespace.chat import services as chat
from safespace.chat.delivery import ChatDelivery
from safespace.checkin import lifecycle as checkin_lifecycle
from safespace.db.upsert import insert_once
from safespace.identity.signin import forget_old_sign_ins
from safespace.notifications import noting as notifications
from safespace.notifications.digest import Digest, DigestMailer, claim_due
from safespace.notifications.models import LOW_PARTICIPATION
from safespace.privacy.crypto import Keyring
from safespace.pulse.lease import SCRUB_DUE, holder_name, schedule_turn
from safespace.pulse.lifecycle import Mail, close_round, due_window, forget_round_keys, note_mails, open_round, refused_mails
from safespace.pulse.mail import RoundMailer
from safespace.pulse.models import Lease, Survey
from safespace.pulse.services import last_round
from safespace.retention import CHECKIN_TABLES, Expired
from safespace.retention import apply as apply_retention
from safespace.stories import services as stories
from safespace.webhooks import services as webhooks
from safespace.webhooks.delivery import WebhookSender

log = logging.getLogger(__name__)
REMIND_BEFORE_CLOSE = timedelta(days=1)


@dataclass
class TickReport:
    opened: int = 0
    closed: int = 0
    reminded: int = 0
    mails: list[Mail] = field(default_factory=list)
    skipped: bool = False
    stories_released: int = 0
    digests: list[Digest] = field(default_factory=list)  # facilitators' digests, sent after the commit
    chat_delivered: int = 0
    webhooks_delivered: int = 0
    checkins_closed: int = 0  # meeting check-ins left open past their time
    expired: Expired = field(default_factory=Expired)  # deleted under a community's retention


ANSWER_TABLES = ("participation", "tally", "pending_comment", "released_comment", "round_mail", "round_key", "spent_token")
STORY_TABLES = ("story", "story_quota", "reply", "flag", "reaction")
# What a check-in's close deletes or rewrites: its ledger (who joined), private mode's spent tokens
# and key, the pending comments re-inserted shuffled, the tally written in the clear.
CHECKIN_ANSWER_TABLES = ("checkin_tally", "checkin_participation", "checkin_comment", "checkin_spent_token", "checkin_key")
SCRUB_FULL_DUE = "scrub-full-due"  # a note as SCRUB_DUE (pulse/lease.py): retention deleted rows, whose tables are rewritten
# What retention deletes from. A plain VACUUM frees a deleted row's space in its page without
# overwriting it (seen on PostgreSQL 15: every deleted value still in the heap file); VACUUM FULL
# writes the table's live rows to a new file and removes the old one.
REWRITE_LOCK_WAIT = "5s"
RETENTION_TABLES = ("round", "tally", "released_comment", "round_note", "round_summary", *CHECKIN_TABLES, *STORY_TABLES)


async def scrub(db: AsyncSession, tables: tuple[str, ...] = ANSWER_TABLES, rewrite: bool = False) -> bool:
    """After a close is committed, drop the old row versions the database still keeps.

    SQLite's write-ahead log holds every committed page image until a checkpoint; PostgreSQL
    keeps dead row versions until VACUUM. Either would let someone with the files replay the
    round answer by answer. `rewrite`: on PostgreSQL, VACUUM FULL (each table locked while it is
    rewritten), for deleted rows that must leave the files; SQLite's secure_delete already zeroes them.
    False: a table stayed locked by another transaction past REWRITE_LOCK_WAIT, and nothing was rewritten.
    """
    engine = db.bind
    async with engine.connect() as connection:
        if engine.dialect.name == "sqlite":
            await connection.exec_driver_sql("PRAGMA wal_checkpoint(TRUNCATE)")
            return True
        autocommit = await connection.execution_options(isolation_level="AUTOCOMMIT")
        if not rewrite:
            await autocommit.exec_driver_sql(f"VACUUM {', '.join(tables)}")
            return True
        # VACUUM FULL waits for every transaction that has read a table; queued, it holds up every
        # later reader of it (answers included). It gives up after a few seconds instead, and the
        # note that asked for it stays for the next pass.
        await autocommit.exec_driver_sql(f"SET lock_timeout = '{REWRITE_LOCK_WAIT}'")
        try:
            await autocommit.exec_driver_sql(f"VACUUM FULL {', '.join(tables)}")
        except DBAPIError as error:
            log.warning("schedule: the rewrite after a retention delete waits for the next pass (%s)", str(error.orig).splitlines()[0][:200])
            return False
        return True


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
    try:
        async with db.begin_nested():
            await notifications.note_waiting(db, moment)  # stories waiting for review, new reports
    except Exception:
        log.exception("schedule: facilitators' notifications of stories skipped this pass")
    try:
        async with db.begin_nested():
            report.expired = await apply_retention(db, moment)
    except Exception:
        log.exception("schedule: retention skipped this pass")
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
    last = await last_round(db, survey.id)
    if last is not None and not last.closed:
        if moment < last.closes_at:
            report.mails += await refused_mails(db, last)
        if moment >= last.closes_at:
            if await close_round(db, keyring, last.id, moment):
                report.closed += 1
                await chat.note_post(db, survey.community_id, "results", last.id, moment)
                await webhooks.note(db, survey.community_id, "round.closed", moment, last.id)
        elif (
            not last.reminder_sent
            and moment >= last.closes_at - REMIND_BEFORE_CLOSE
            and last.closes_at - last.opens_at > REMIND_BEFORE_CLOSE  # no reminder on the heels of the invitation
        ):
            last.reminder_sent = True
            if await notifications.low_participation(db, last) is not None:
                await notifications.note(db, survey.community_id, LOW_PARTICIPATION, moment, last.id)
            report.mails += await note_mails(db, last, "reminder", unanswered_only=True)
            report.reminded += 1
            await chat.note_post(db, survey.community_id, "reminder", last.id, moment)
        return
    window = due_window(survey, last, moment)
    if window is None:
        return
    round_ = await open_round(db, survey, window, keyring, token_key_bits)
    report.mails += await note_mails(db, round_, "invitation", unanswered_only=False)
    report.opened += 1
    await chat.note_post(db, survey.community_id, "invitation", round_.id, moment)
    await webhooks.note(db, survey.community_id, "round.opened", moment, round_.id)


async def tick(
    sessionmaker: async_sessionmaker[AsyncSession],
    keyring: Keyring,
    mailer: RoundMailer | None,
    moment: datetime | None = None,
    holder: str | None = None,
    session_idle: timedelta = timedelta(days=3),
    story_release: tuple[int, int] = (0, 9),
    token_key_bits: int = 2048,
    chat_delivery: ChatDelivery | None = None,
    digests: DigestMailer | None = None,
    webhook_sender: WebhookSender | None = None,
) -> TickReport:
    moment = moment or clock.now()
    holder = holder or holder_name()
    async with sessionmaker() as db:
        async with schedule_turn(db, holder, moment) as mine:
            if not mine:
                return TickReport(skipped=True)
            try:
                report = await run_schedule(db, keyring, moment, session_idle, story_release, token_key_bits)
                if report.stories_released:
                    # Noted in the same transaction: a tick killed before its scrub leaves the note,
                    # and the next tick scrubs (a close notes it itself: pulse/lease.note_scrub_due).
                    await insert_once(db, Lease, {"name": SCRUB_DUE, "holder": holder, "expires_at": moment}, ["name"])
                if report.expired:
                    await insert_once(db, Lease, {"name": SCRUB_FULL_DUE, "holder": holder, "expires_at": moment}, ["name"])
                if digests is not None:
                    report.digests = await claim_due(db, moment)  # claimed in this transaction, sent after it
                await db.commit()  # the mail ledger is written before any mail goes out
            except Exception:
                await db.rollback()
                raise
        # Check-ins left open past their time, each in its own transaction, noting the scrub below.
        report.checkins_closed = await checkin_lifecycle.close_due(sessionmaker, keyring, moment)
        await forget_round_keys(db, keyring)  # closed rounds' keys: after the close committed, before the scrub
        notes = set(await db.scalars(select(Lease.name).where(Lease.name.in_((SCRUB_DUE, SCRUB_FULL_DUE)))))
        await db.rollback()  # no transaction of this pass may hold a table the scrub rewrites
        noted = ANSWER_TABLES + STORY_TABLES + CHECKIN_ANSWER_TABLES  # a close by a request or a pass, or a release
        done = {SCRUB_DUE} if SCRUB_DUE in notes and await scrub(db, noted) else set()
        if SCRUB_FULL_DUE in notes and await scrub(db, RETENTION_TABLES, rewrite=True):
            done.add(SCRUB_FULL_DUE)
        if done:
            await db.execute(delete(Lease).where(Lease.name.in_(done)))
            await db.commit()
    if mailer is not None:
        await mailer.send_all(sessionmaker, report.mails)
    if digests is not None and report.digests:
        # A refused digest is released for the next tick (notifications/digest.py).
        try:
            await digests.send_all(sessionmaker, report.digests)
        except Exception:
            log.exception("schedule: facilitators' digests wait for the next pass")
    if chat_delivery is not None:
        # After the commit and the mails: a slow or failing chat holds up neither.
        try:
            report.chat_delivered = await chat_delivery.deliver_due(sessionmaker, keyring, moment)
        except Exception:
            log.exception("schedule: chat posts wait for the next pass")
    if webhook_sender is not None:
        # Likewise: a receiver that fails or never answers holds up nothing above.
        try:
            report.webhooks_delivered = await webhook_sender.deliver_due(sessionmaker, keyring, moment)
        except Exception:
            log.exception("schedule: webhook deliveries wait for the next pass")
    return report


async def run_periodically(
    sessionmaker: async_sessionmaker[AsyncSession],
    keyring: Keyring,
    mailer: RoundMailer,
    every: float,
    session_idle: timedelta,
    story_release: tuple[int, int],
    token_key_bits: int = 2048,
    chat_delivery: ChatDelivery | None = None,
    digests: DigestMailer | None = None,
    webhook_sender: WebhookSender | None = None,
) -> None:
    """The periodic task inside `safespace serve`."""
    while True:
        try:
            report = await tick(
                sessionmaker, keyring, mailer, session_idle=session_idle, story_release=story_release, token_key_bits=token_key_bits,
                chat_delivery=chat_delivery, digests=digests, webhook_sender=webhook_sender,
            )
            if report.opened or report.closed or report.reminded:
                log.info("schedule: opened %d, closed %d, reminded %d", report.opened, report.closed, report.reminded)
        except Exception:
            if asyncio.current_task().cancelling():  # type: ignore[union-attr]
                # Stopping: the cancel turned into another error on its way out of the pass (a
                # cleanup that failed). Caught here, `serve` would never stop.
                raise asyncio.CancelledError from None
            log.exception("schedule pass failed")
        await asyncio.sleep(every * random.uniform(0.9, 1.1))
