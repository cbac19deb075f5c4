"""Closing a check-in (by its facilitator, or by `safespace tick` after its time), revealing it,
and keeping or discarding it afterwards.

Close is a round's close in small (pulse/lifecycle.py): the tally is written in the clear, the
comments are re-inserted in a shuffled order under the installation's keyring (or deleted when
too few answered to show them), the ledger is deleted, and once committed the check-in's key
file is destroyed, so no earlier tally state and no receipt opens again.
"""

from __future__ import annotations

import random
import uuid
from datetime import datetime

import msgspec
from sqlalchemy import delete, func, select
from sqlalchemy.ext.asyncio import AsyncSession

from safespace import clock
from safespace.checkin.answering import locked_tally, read_tally
from safespace.checkin.keys import checkin_keys
from safespace.checkin.models import CheckIn, CheckInComment, CheckInKey, CheckInParticipation, CheckInSpentToken
from safespace.checkin.services import TooFew, answered
from safespace.errors import Refused
from safespace.i18n import gettext as _
from safespace.privacy.crypto import Keyring, associated_data
from safespace.pulse.lease import note_scrub_due
from safespace.pulse.services import bump_trend
from surveys import disclosure


async def close(db: AsyncSession, keyring: Keyring, checkin_id: uuid.UUID) -> bool:
    """Stop answers and scrub; False if it was already closed. The caller commits, then calls
    forget_key."""
    row = await locked_tally(db, checkin_id)
    checkin = await db.get(CheckIn, checkin_id, with_for_update=True, populate_existing=True)
    if row is None or checkin is None or checkin.state != "open":
        return False
    tally = read_tally(keyring, checkin_id, row.data)
    row.data = msgspec.json.encode(tally)  # the final aggregate, in the clear
    await _release_comments(db, keyring, checkin, tally.respondents)
    # Who joined served only "one answer each": nothing needs it once answers are closed.
    await db.execute(delete(CheckInParticipation).where(CheckInParticipation.checkin_id == checkin_id))
    # Private mode's spent tokens and key: no token of this check-in can answer again.
    await db.execute(delete(CheckInSpentToken).where(CheckInSpentToken.checkin_id == checkin_id))
    await db.execute(delete(CheckInKey).where(CheckInKey.checkin_id == checkin_id))
    await note_scrub_due(db, clock.now())  # scrubbed after the commit; by the next pass if the closer dies first
    checkin.state = "closed"
    await db.flush()
    return True


async def _release_comments(db: AsyncSession, keyring: Keyring, checkin: CheckIn, respondents: int) -> None:
    """P4/P5: pending comments re-inserted with new random ids in a shuffled order, under the
    keyring; deleted unseen if too few answered for free text to be shown."""
    pending = list(await db.scalars(select(CheckInComment).where(CheckInComment.checkin_id == checkin.id)))
    texts = [
        checkin_keys(keyring).open(checkin.id, c.body, associated_data("checkin_comment", "body", f"{checkin.id}/{c.id}")).decode().rstrip()
        for c in pending
    ]
    await db.execute(delete(CheckInComment).where(CheckInComment.checkin_id == checkin.id))
    if not disclosure.comments_visible(respondents, checkin.min_group_size, checkin.comment_threshold):
        return
    random.SystemRandom().shuffle(texts)
    rows = []
    for position, text in enumerate(texts):
        comment_id = uuid.uuid4()
        body = keyring.seal(text, associated_data("checkin_comment", "body", f"{checkin.id}/{comment_id}"))
        rows.append(CheckInComment(id=comment_id, checkin_id=checkin.id, position=position, body=body))
    db.add_all(rows)


def forget_key(keyring: Keyring, checkin_id: uuid.UUID) -> None:
    """After close is committed: the key of the receipts and of every sealed state goes."""
    checkin_keys(keyring).destroy(checkin_id)


async def reveal(db: AsyncSession, keyring: Keyring, checkin_id: uuid.UUID) -> None:
    """Close (if open) and show the figures; refused below k, and the check-in then stays as it was."""
    checkin = await db.get(CheckIn, checkin_id)
    count = await answered(db, checkin_id)
    if not disclosure.enough(count, checkin.min_group_size):
        raise TooFew(_("Fewer than %(k)s people have answered: revealing now would say too much about too few.", k=checkin.min_group_size))
    if checkin.state == "revealed":
        return
    await close(db, keyring, checkin_id)
    checkin.state = "revealed"
    await db.flush()


async def decide(db: AsyncSession, checkin: CheckIn, outcome: str, survey_id: uuid.UUID | None) -> None:
    """After the reveal: a "meeting check-in" point on a survey's trend, or discarded."""
    if checkin.state != "revealed":
        raise Refused(_("Only a revealed check-in can be added to a trend or discarded."))
    before = checkin.trend_survey_id
    checkin.outcome = outcome
    checkin.trend_survey_id = survey_id if outcome == "trend" else None
    # What the trend pages of the survey it leaves and of the one it joins show changed: their
    # kept charts are drawn again (insights/controllers.py _trend_sections).
    for changed in dict.fromkeys(s for s in (before, checkin.trend_survey_id) if s is not None):
        await bump_trend(db, changed)
    await db.flush()


async def _tell_listeners(db: AsyncSession, checkin_id: uuid.UUID) -> None:
    """On PostgreSQL, the close reaches open pages through the same LISTEN/NOTIFY channel the app
    processes use (checkin/live.py), delivered when this transaction commits, even from
    `safespace tick` in cron. On SQLite (in-memory channels, which another process cannot reach)
    the open event streams read the state themselves once the check-in's time is up
    (join_pages.events), so pages learn it within a few seconds of the pass."""
    if db.bind.dialect.name != "postgresql":
        return
    from safespace.checkin import live  # live imports the channels backends: only here

    checkin = await db.get(CheckIn, checkin_id)
    state = live.state_of(checkin, await answered(db, checkin_id))
    await db.execute(select(func.pg_notify(live.channel(checkin_id), msgspec.json.encode(state).decode())))


async def due(db: AsyncSession, moment: datetime) -> list[uuid.UUID]:
    """Open check-ins whose time is up."""
    return list(await db.scalars(select(CheckIn.id).where(CheckIn.state == "open", CheckIn.closes_at <= moment)))


async def close_due(sessionmaker, keyring: Keyring, moment: datetime) -> int:  # noqa: ANN001
    """`safespace tick`: close every check-in left open past its time, each in its own transaction."""
    async with sessionmaker() as db:
        ids = await due(db, moment)
    closed = 0
    for checkin_id in ids:
        async with sessionmaker() as db:
            done = await close(db, keyring, checkin_id)
            if done:
                await _tell_listeners(db, checkin_id)
            await db.commit()
        if done:
            forget_key(keyring, checkin_id)
            closed += 1
    return closed
