"""A revealed check-in's figures, as a round's results show them (pulse/results.py): every
figure through surveys.disclosure, comments only above the threshold, in their shuffled order."""

from __future__ import annotations

from datetime import datetime

import msgspec
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from safespace.checkin.models import CheckIn, CheckInComment, CheckInTally
from safespace.checkin.services import instrument_of
from safespace.privacy.crypto import Keyring, associated_data
from safespace.pulse.results import RoundResult, instrument_result
from surveys import disclosure
from surveys import tally as tally_rules


async def revealed_result(db: AsyncSession, keyring: Keyring, checkin: CheckIn, language: str) -> RoundResult | None:
    """The figures of a revealed check-in of at least k answers; None for any other."""
    if checkin.state != "revealed":
        return None
    row = await db.get(CheckInTally, checkin.id)
    if row is None or not disclosure.enough(row.respondents, checkin.min_group_size):
        return None
    tally = msgspec.json.decode(row.data, type=tally_rules.Tally)  # in the clear since close
    comments = []
    if disclosure.comments_visible(row.respondents, checkin.min_group_size, checkin.comment_threshold):
        for comment_id, body in await db.execute(
            select(CheckInComment.id, CheckInComment.body).where(CheckInComment.checkin_id == checkin.id).order_by(CheckInComment.position)
        ):
            comments.append(keyring.open(body, associated_data("checkin_comment", "body", f"{checkin.id}/{comment_id}")))
    instrument = instrument_of(checkin)
    return RoundResult(
        round_id=str(checkin.id),
        number=0,
        opens_at=checkin.opened_at,
        closes_at=checkin.closes_at,
        status="closed",
        min_group_size=checkin.min_group_size,
        members=0,
        respondents=row.respondents,
        response_rate=None,
        reissued_tokens=row.reissued,  # members who took a second private-mode token (checkin/tokens.py)
        instruments=[instrument_result(instrument, tally, checkin.min_group_size, language, comments)],
    )


def opened_day(checkin: CheckIn) -> datetime:
    return checkin.opened_at
