"""Community vitality: participation, stories and the five dimensions of a community of practice,
month by month, from released figures only."""

from __future__ import annotations

from datetime import date
from zoneinfo import ZoneInfo

import msgspec
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from safespace import clock
from safespace.i18n import gettext as _
from safespace.identity.models import Community

# --- vitality -----------------------------------------------------------------------------------
from safespace.insights.reasons import BELOW_K
from safespace.insights.trend_figures import TREND_ROUNDS
from safespace.pulse import results as pulse_results
from safespace.pulse.models import Round, Survey
from safespace.pulse.services import COMMUNITY, round_instruments
from safespace.stories.moderation import monthly_activity
from surveys import disclosure
from surveys import tally as tally_rules
from surveys.instrument import Instrument

VITALITY = "vitality"
DIMENSIONS = (
    "shared_vision",
    "flexible_leadership",
    "risk_free_environment",
    "technology_enabler",
    "measurement_for_improvement",
)
VITALITY_MONTHS = 12


def dimension_name(key: str) -> str:
    return {
        "shared_vision": _("Shared vision"),
        "flexible_leadership": _("Flexible leadership"),
        "risk_free_environment": _("A risk-free environment"),
        "technology_enabler": _("Technology as an enabler"),
        "measurement_for_improvement": _("Measurement for improvement"),
    }.get(key, key)


class ParticipationPoint(msgspec.Struct):
    survey: str
    number: int
    closed_on: date
    members: int  # active members when the round opened
    respondents: int | None
    response_rate: float | None
    empty_because: str | None


class MonthActivity(msgspec.Struct):
    month: str
    stories: int
    replies: int
    reactions: int


class DimensionScore(msgspec.Struct):
    key: str
    name: str
    mean: float | None  # mean of the dimension's shown items, on the instrument's scale
    empty_because: str | None


class Vitality(msgspec.Struct):
    active_members: int
    participation: list[ParticipationPoint]
    activity: list[MonthActivity]
    keys_round: int | None  # the vitality round the five keys come from
    keys_closed_on: date | None
    points: int
    keys: list[DimensionScore]


def months_since(founded: date, today: date, most: int = VITALITY_MONTHS) -> list[str]:
    """The months to chart, as "YYYY-MM": from the community's founding month (no months before it
    existed) to this one, the last `most` of them; at least this month."""
    now = today.year * 12 + today.month - 1  # months since year 0
    first = min(now, max(founded.year * 12 + founded.month - 1, now - most + 1))
    return [f"{index // 12:04d}-{index % 12 + 1:02d}" for index in range(first, now + 1)]


async def vitality(db: AsyncSession, community: Community, active_members: int, language: str) -> Vitality:
    zone = ZoneInfo(community.time_zone)
    surveys = list(await db.scalars(select(Survey).where(Survey.community_id == community.id).order_by(Survey.title)))
    participation: list[ParticipationPoint] = []
    latest_keys: tuple[Round, Instrument, tally_rules.Tally | None] | None = None
    for survey in surveys:
        rounds = await pulse_results.closed_rounds(db, survey.id, TREND_ROUNDS)
        tallies = await pulse_results.released_tallies(db, rounds, COMMUNITY)
        for round_ in rounds:
            members = int(round_.population.get(COMMUNITY, 0))
            answered = max((t.respondents for (r, _i, g), t in tallies.items() if r == round_.id and g == COMMUNITY), default=0)
            view = disclosure.group_view(answered, members, round_.min_group_size, closed=True)
            participation.append(
                ParticipationPoint(
                    survey=survey.title,
                    number=round_.number,
                    closed_on=round_.closes_at.astimezone(zone).date(),
                    members=members,
                    respondents=view.respondents,
                    response_rate=view.response_rate,
                    empty_because=None if view.response_rate is not None else BELOW_K,
                )
            )
            for instrument in round_instruments(round_):
                if instrument.key == VITALITY and (latest_keys is None or round_.closes_at > latest_keys[0].closes_at):
                    latest_keys = (round_, instrument, tallies.get((round_.id, VITALITY, COMMUNITY)))
    participation.sort(key=lambda p: (p.closed_on, p.survey))
    founded = community.created_at.astimezone(zone).date()
    activity = await monthly_activity(db, community.id, months_since(founded, clock.now().astimezone(zone).date()))
    keys: list[DimensionScore] = []
    points = 5
    if latest_keys:
        round_, instrument, tally = latest_keys
        points = instrument.scale.points
        shown = pulse_results.instrument_result(instrument, tally, round_.min_group_size, language, []) if tally else None
        for key in DIMENSIONS:
            means = [
                (points + 1 - item.mean) if item.reverse else item.mean
                for item, spec in zip(shown.items if shown else [], instrument.items)
                if spec.dimension == key and item.mean is not None
            ]
            keys.append(
                DimensionScore(key, dimension_name(key), sum(means) / len(means) if means else None, None if means else BELOW_K)
            )
    return Vitality(
        active_members=active_members,
        participation=participation,
        activity=[MonthActivity(a.month, a.stories, a.replies, a.reactions) for a in activity],
        keys_round=latest_keys[0].number if latest_keys else None,
        keys_closed_on=latest_keys[0].closes_at.astimezone(zone).date() if latest_keys else None,
        points=points,
        keys=keys,
    )
