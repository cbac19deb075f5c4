"""Surveys, instruments and rounds: the rules, callable without HTTP. Answering is answering.py."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import date, datetime, timedelta

import msgspec
from sqlalchemy import bindparam, func, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from safespace import clock
from safespace.errors import InvalidInput
from safespace.i18n import gettext as _
from safespace.identity.models import Membership
from safespace.pulse.models import (
    CustomInstrument,
    Participation,
    Round,
    Survey,
)
from safespace.text import clean_text
from surveys import cadence as cadence_rules
from surveys.instrument import (
    Instrument,
    builtin_instruments,
    instrument_to_dict,
    parse_instrument,
)

COMMUNITY = "community"  # the group key of the whole-community tally
MAX_COMMENT_CHARS = 2000


class AlreadyAnswered(Exception):
    """This member is in the round's ledger already; answers cannot be changed (nothing links them)."""


class RoundNotOpen(Exception):
    """The round is closed, or not open yet."""


class TokensRequired(Exception):
    """The community takes answers only with blind-signature tokens (private mode)."""


# --- instruments -------------------------------------------------------------------------------


async def available_instruments(db: AsyncSession, community_id: uuid.UUID) -> dict[str, Instrument]:
    """Built-in instruments and this community's own, by the key a survey stores."""
    found = dict(builtin_instruments())
    for row in await db.scalars(select(CustomInstrument).where(CustomInstrument.community_id == community_id)):
        found[f"custom:{row.id}"] = parse_instrument(row.definition, f"custom instrument {row.id}")
    return found


_round_instruments: dict[uuid.UUID, list[Instrument]] = {}


def round_instruments(round_: Round) -> list[Instrument]:
    """The instruments as they were when the round opened (fixed from then on, so cached)."""
    cached = _round_instruments.get(round_.id)
    if cached is None:
        if len(_round_instruments) > 1000:
            _round_instruments.clear()
        cached = [parse_instrument(definition, f"round {round_.id}") for definition in round_.instruments]
        _round_instruments[round_.id] = cached
    return cached


async def save_custom_instrument(db: AsyncSession, community_id: uuid.UUID, instrument: Instrument) -> CustomInstrument:
    row = CustomInstrument(community_id=community_id, definition=instrument_to_dict(instrument), created_at=clock.now())
    db.add(row)
    await db.flush()
    return row


# --- surveys -------------------------------------------------------------------------------------


@dataclass
class CadenceForm:
    every: str
    weekday: int | str
    day_of_month: int | str
    open_days: int | str
    start: date | str


def make_cadence(form: CadenceForm, time_zone: str) -> cadence_rules.Cadence:
    try:
        candidate = msgspec.convert(
            {
                "every": form.every,
                "weekday": int(form.weekday or 0),
                "day_of_month": int(form.day_of_month or 1),
                "open_days": int(form.open_days or 0),
                "start": str(form.start),
                "time_zone": time_zone,
            },
            cadence_rules.Cadence,
        )
    except (ValueError, msgspec.ValidationError):
        raise InvalidInput({"cadence": _("Choose how often rounds open, the day, and how many days they stay open.")}) from None
    today = clock.now().date()
    if not today - timedelta(days=366) <= candidate.start <= today + timedelta(days=5 * 366):
        raise InvalidInput({"cadence": _("Choose a start date between a year ago and five years from now.")})
    try:
        return cadence_rules.validate(candidate)
    except cadence_rules.CadenceError as exc:
        raise InvalidInput({"cadence": str(exc)}) from None


async def create_survey(
    db: AsyncSession, community_id: uuid.UUID, time_zone: str, title: str, instrument_keys: list[str], form: CadenceForm
) -> Survey:
    errors: dict[str, str] = {}
    title = clean_text(title)
    if not title:
        errors["title"] = _("Give the survey a title, such as “Monthly pulse”.")
    elif len(title) > 120:
        errors["title"] = _("Keep the title to 120 characters or fewer.")
    available = await available_instruments(db, community_id)
    chosen = [key for key in dict.fromkeys(instrument_keys) if key]
    if not chosen or any(key not in available for key in chosen):
        errors["instruments"] = _("Choose at least one of the instruments listed.")
    try:
        cadence = make_cadence(form, time_zone)
    except InvalidInput as exc:
        errors |= exc.errors
    if errors:
        raise InvalidInput(errors)
    survey = Survey(
        community_id=community_id,
        title=title,
        instruments=chosen,
        cadence=msgspec.to_builtins(cadence),
        paused=False,
        created_at=clock.now(),
    )
    db.add(survey)
    await db.flush()
    return survey


def survey_cadence(survey: Survey) -> cadence_rules.Cadence:
    return msgspec.convert(survey.cadence, cadence_rules.Cadence)


async def change_cadence(db: AsyncSession, survey: Survey, time_zone: str, form: CadenceForm) -> Survey:
    """Applies to future rounds: rounds already opened keep their dates (tick never overlaps them)."""
    survey.cadence = msgspec.to_builtins(make_cadence(form, time_zone))
    await db.flush()
    return survey


_SURVEYS_OF = select(Survey).where(Survey.community_id == bindparam("community_id")).order_by(Survey.created_at)


async def surveys_of(db: AsyncSession, community_id: uuid.UUID) -> list[Survey]:
    return list(await db.scalars(_SURVEYS_OF, {"community_id": community_id}))


async def survey_in(db: AsyncSession, community_id: uuid.UUID, survey_id: uuid.UUID) -> Survey:
    survey = await db.get(Survey, survey_id)
    if survey is None or survey.community_id != community_id:
        raise LookupError("no such survey in this community")
    return survey


# The round with its survey, in one statement: the pages that show a round name its survey too, and
# survey_in then finds it in the session's identity map instead of asking the database again.
_ROUND_AND_SURVEY = select(Round, Survey).join(Survey, Survey.id == Round.survey_id).where(Round.id == bindparam("round_id"))


async def round_in(db: AsyncSession, community_id: uuid.UUID, round_id: uuid.UUID) -> Round:
    found = (await db.execute(_ROUND_AND_SURVEY, {"round_id": round_id})).first()
    if found is None or found[0].community_id != community_id:
        raise LookupError("no such round in this community")
    return found[0]


async def bump_trend(db: AsyncSession, survey_id: uuid.UUID) -> None:
    """In the transaction of a write the survey's trend is drawn from (Survey.trend_revision)."""
    await db.execute(update(Survey).where(Survey.id == survey_id).values(trend_revision=Survey.trend_revision + 1))


async def last_round(db: AsyncSession, survey_id: uuid.UUID) -> Round | None:
    """The survey's latest round: the only one that can be open (rounds never overlap)."""
    return await db.scalar(select(Round).where(Round.survey_id == survey_id).order_by(Round.number.desc()).limit(1))


async def rounds_of(db: AsyncSession, survey_id: uuid.UUID) -> list[Round]:
    return list(await db.scalars(select(Round).where(Round.survey_id == survey_id).order_by(Round.number.desc())))


async def active_members(db: AsyncSession, community_id: uuid.UUID) -> int:
    """How many active members a community has: the people a round's invitation goes to."""
    query = select(func.count()).select_from(Membership).where(Membership.community_id == community_id, Membership.status == "active")
    return await db.scalar(query) or 0


def is_open(round_: Round, moment: datetime) -> bool:
    return not round_.closed and round_.opens_at <= moment < round_.closes_at


# What the ledger can say about a member and an open round. It cannot say more: a token is spent
# without a name, so "token" means "may or may not have answered in the browser holding it".
NOT_TAKEN, TOKEN_TAKEN, TOKENS_TAKEN, ANSWERED = "open", "token", "tokens", "answered"


def ledger_state(row: Participation | None) -> str:
    if row is None:
        return NOT_TAKEN
    if row.token_request is None or (row.reissued and row.second_request is None):
        return ANSWERED  # with the signed-in form: the server saw the answers arrive
    return TOKENS_TAKEN if row.reissued else TOKEN_TAKEN


@dataclass
class OpenRound:
    round: Round
    survey: Survey
    state: str  # ledger_state: open, token, tokens or answered


async def open_rounds_for(db: AsyncSession, community_id: uuid.UUID, person_id: uuid.UUID) -> list[OpenRound]:
    moment = clock.now()
    rows = await db.execute(
        select(Round, Survey, Participation)
        .join(Survey, Survey.id == Round.survey_id)
        .outerjoin(Participation, (Participation.round_id == Round.id) & (Participation.person_id == person_id))
        .where(Round.community_id == community_id, Round.closed.is_(False), Round.opens_at <= moment)
        .order_by(Round.closes_at)
    )
    return [OpenRound(r, s, ledger_state(p)) for r, s, p in rows if is_open(r, moment)]


async def recent_closed_rounds(db: AsyncSession, community_id: uuid.UUID, limit: int = 5) -> list[tuple[Round, Survey]]:
    rows = await db.execute(
        select(Round, Survey)
        .join(Survey, Survey.id == Round.survey_id)
        .where(Round.community_id == community_id, Round.closed.is_(True))
        .order_by(Round.closes_at.desc())
        .limit(limit)
    )
    return [(r, s) for r, s in rows]


async def state_of(db: AsyncSession, round_id: uuid.UUID, person_id: uuid.UUID) -> str:
    return ledger_state(await db.get(Participation, (round_id, person_id)))
