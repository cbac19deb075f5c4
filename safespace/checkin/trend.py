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
from surveys.instrument import Instrument


class CheckInPoint(msgspec.Struct):
    checkin_id: uuid.UUID
    day: date
    statements: list[str]
    respondents: int | None  # None where fewer than k answered (never kept: revealed only from k)
    score: float | None  # mean of the statements asked, on their scale; None where hidden
    points: int
    favourable: float | None


async def kept_points(db: AsyncSession, survey_id: uuid.UUID, language: str, zone: ZoneInfo) -> list[tuple[CheckInPoint, Instrument]]:
    """Every revealed check-in kept in the survey's trend, oldest first, with the statements it
    asked (its snapshot); below k (which the reveal refuses) every figure is None."""
    found = []
    rows = await db.execute(
        select(CheckIn, CheckInTally)
        .join(CheckInTally, CheckInTally.checkin_id == CheckIn.id)
        .where(CheckIn.trend_survey_id == survey_id, CheckIn.outcome == "trend", CheckIn.state == "revealed")
        .order_by(CheckIn.opened_at)
    )
    for checkin, row in rows:
        instrument = instrument_of(checkin)
        point = CheckInPoint(
            checkin_id=checkin.id,
            day=checkin.opened_at.astimezone(zone).date(),
            statements=[item.text.get(language) for item in instrument.items],
            respondents=None,
            score=None,
            points=instrument.scale.points,
            favourable=None,
        )
        # Revealed only from k: a kept check-in always has figures, but never assume it.
        if disclosure.enough(row.respondents, checkin.min_group_size):
            tally = msgspec.json.decode(row.data, type=tally_rules.Tally)  # in the clear since close
            figures = instrument_result(instrument, tally, checkin.min_group_size, language, [])
            point.respondents = row.respondents
            point.score = figures.score.mean if figures.score else None
            point.favourable = figures.favourable
        found.append((point, instrument))
    return found


async def kept_in_trend(db: AsyncSession, survey_id: uuid.UUID, language: str, zone: ZoneInfo) -> list[CheckInPoint]:
    """The survey page's list: those with figures."""
    return [point for point, _ in await kept_points(db, survey_id, language, zone) if point.respondents is not None]


def statement_key(item) -> tuple:  # noqa: ANN001 - surveys.instrument.Item
    """A statement as a check-in snapshots it (its text in both languages, its keying)."""
    return (item.text.en, item.text.es, item.reverse)


def asked_from(asked: Instrument, instruments: list[Instrument]) -> str | None:
    """The key of the first instrument that has every statement the check-in asked, on the same
    scale (a check-in copies each statement's text and keying); None for a free question or
    statements of several instruments."""
    wanted = {statement_key(item) for item in asked.items}
    for instrument in instruments:
        if (instrument.scale.kind, instrument.scale.points) == (asked.scale.kind, asked.scale.points) and wanted <= {statement_key(item) for item in instrument.items}:
            return instrument.key
    return None
