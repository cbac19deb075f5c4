"""Check-ins a facilitator kept in a survey's trend: each a point marked "meeting check-in",
with the figures its reveal showed (already through surveys.disclosure) and nothing more."""

from __future__ import annotations

import uuid
from datetime import date
from zoneinfo import ZoneInfo

import msgspec
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from safespace.checkin.models import CheckIn, CheckInTally
from safespace.checkin.services import instrument_of
from safespace.pulse.results import instrument_result
from surveys import disclosure
from surveys import tally as tally_rules


class CheckInPoint(msgspec.Struct):
    checkin_id: uuid.UUID
    day: date
    statements: list[str]
    respondents: int
    score: float | None  # mean of the statements asked, on their scale; None where hidden
    points: int
    favourable: float | None


async def kept_in_trend(db: AsyncSession, survey_id: uuid.UUID, language: str, zone: ZoneInfo) -> list[CheckInPoint]:
    found = []
    rows = await db.execute(
        select(CheckIn, CheckInTally)
        .join(CheckInTally, CheckInTally.checkin_id == CheckIn.id)
        .where(CheckIn.trend_survey_id == survey_id, CheckIn.outcome == "trend", CheckIn.state == "revealed")
        .order_by(CheckIn.opened_at)
    )
    for checkin, row in rows:
        if not disclosure.enough(row.respondents, checkin.min_group_size):
            continue  # revealed only from k: a kept check-in always has figures, but never assume it
        instrument = instrument_of(checkin)
        tally = msgspec.json.decode(row.data, type=tally_rules.Tally)  # in the clear since close
        figures = instrument_result(instrument, tally, checkin.min_group_size, language, [])
        found.append(
            CheckInPoint(
                checkin_id=checkin.id,
                day=checkin.opened_at.astimezone(zone).date(),
                statements=[item.text.get(language) for item in instrument.items],
                respondents=row.respondents,
                score=figures.score.mean if figures.score else None,
                points=figures.points,
                favourable=figures.favourable,
            )
        )
    return found
