"""Objectives: a metric from a fixed list, a target and a due date, judged against released figures."""

from __future__ import annotations

import uuid
from datetime import date, timedelta
from zoneinfo import ZoneInfo

import msgspec
from sqlalchemy import delete, select
from sqlalchemy.ext.asyncio import AsyncSession

from safespace import clock
from safespace.errors import InvalidInput
from safespace.i18n import gettext as _
from safespace.identity.models import Community
from safespace.insights.models import Objective
from safespace.insights.trend_figures import _round_figures

# --- objectives -------------------------------------------------------------------------------------
from safespace.insights.vitality_figures import VITALITY
from safespace.pulse import results as pulse_results
from safespace.pulse.models import Round
from safespace.pulse.services import COMMUNITY, round_instruments
from safespace.stories import services as stories
from safespace.text import clean_text

METRICS = ("psychological_safety", "favourable", "trust", "response_rate", "stories_per_month", "vitality")


def metric_name(metric: str) -> str:
    return {
        "psychological_safety": _("Psychological-safety score"),
        "favourable": _("Psychological safety: favourable %"),
        "trust": _("Trust score"),
        "response_rate": _("Response rate %"),
        "stories_per_month": _("Stories shared in the last 30 days"),
        "vitality": _("Community-vitality score"),
    }[metric]


class ObjectiveView(msgspec.Struct):
    id: uuid.UUID
    title: str
    metric: str
    metric_name: str
    target: float
    baseline: float | None
    current: float | None  # the latest released value; None: nothing released (or below k)
    starts_on: date
    due_on: date
    progress: float | None  # 0..1 from baseline to target
    expected: float  # 0..1: how far along the time between start and due date is
    status: str  # "met" | "on_track" | "behind" | "missed" | "no_data"


async def metric_value(db: AsyncSession, community: Community, metric: str) -> float | None:
    """The latest released value of a metric (same rules as the pages), or None."""
    if metric == "stories_per_month":
        today = clock.now().astimezone(ZoneInfo(community.time_zone)).date()
        return float(await stories.released_since(db, community.id, today - timedelta(days=30)))
    instrument_key = {"psychological_safety": "psychological_safety", "favourable": "psychological_safety",
                      "trust": "trust", "vitality": VITALITY}.get(metric)  # fmt: skip
    rounds = list(
        await db.scalars(
            select(Round)
            .where(Round.community_id == community.id, Round.closed.is_(True))
            .order_by(Round.closes_at.desc())
            .limit(20)
        )
    )
    tallies = await pulse_results.released_tallies(db, rounds, COMMUNITY)
    for round_ in rounds:  # newest first: the first round that says something
        for instrument in round_instruments(round_):
            if instrument_key and instrument.key != instrument_key:
                continue
            answered, rate, estimate, favourable, _reason = _round_figures(
                round_, tallies.get((round_.id, instrument.key, COMMUNITY)), instrument
            )
            if metric == "response_rate" and rate is not None:
                return round(rate * 100, 1)
            if metric == "favourable" and favourable is not None:
                return round(favourable * 100, 1)
            if metric in ("psychological_safety", "trust", "vitality") and estimate is not None:
                return round(estimate.mean, 2)
    return None


def _judge(objective: Objective, current: float | None, today: date) -> tuple[float | None, float, str]:
    span = (objective.due_on - objective.starts_on).days
    expected = 1.0 if span <= 0 else min(1.0, max(0.0, (today - objective.starts_on).days / span))
    if current is None:
        return None, expected, "no_data"
    rising = objective.baseline is None or objective.target >= objective.baseline
    met = current >= objective.target if rising else current <= objective.target
    if objective.baseline is None or objective.baseline == objective.target:
        progress = 1.0 if met else 0.0
    else:
        progress = min(1.0, max(0.0, (current - objective.baseline) / (objective.target - objective.baseline)))
    if met:
        return progress, expected, "met"
    if today > objective.due_on:
        return progress, expected, "missed"
    return progress, expected, "on_track" if progress >= expected - 0.05 else "behind"


async def objectives(db: AsyncSession, community: Community) -> list[ObjectiveView]:
    today = clock.now().astimezone(ZoneInfo(community.time_zone)).date()
    rows = list(await db.scalars(select(Objective).where(Objective.community_id == community.id).order_by(Objective.due_on)))
    current = {metric: await metric_value(db, community, metric) for metric in {o.metric for o in rows}}
    views = []
    for o in rows:
        progress, expected, status = _judge(o, current[o.metric], today)
        views.append(
            ObjectiveView(
                id=o.id, title=o.title, metric=o.metric, metric_name=metric_name(o.metric), target=o.target,
                baseline=o.baseline, current=current[o.metric], starts_on=o.starts_on, due_on=o.due_on,
                progress=progress, expected=expected, status=status,
            )  # fmt: skip
        )
    return views


async def add_objective(db: AsyncSession, community: Community, title: str, metric: str, target: str, due_on: str) -> Objective:
    errors: dict[str, str] = {}
    title = clean_text(title)
    if not title:
        errors["title"] = _("Give the objective a title.")
    elif len(title) > 200:
        errors["title"] = _("Keep the title to 200 characters or fewer.")
    if metric not in METRICS:
        errors["metric"] = _("Choose a metric from the list.")
    try:
        value = float(target.replace(",", "."))
    except ValueError:
        errors["target"] = _("Enter the target as a number, such as 5.5 or 70.")
    else:
        top = {"psychological_safety": 7, "trust": 7, "vitality": 7, "favourable": 100, "response_rate": 100}.get(metric, 10000)
        if not 0 <= value <= top:
            errors["target"] = _("Enter a target between 0 and %(top)s.") % {"top": top}
    today = clock.now().astimezone(ZoneInfo(community.time_zone)).date()
    try:
        due = date.fromisoformat(due_on)
    except ValueError:
        errors["due_on"] = _("Enter the due date as a date, such as %(example)s.") % {
            "example": (today + timedelta(days=90)).isoformat()
        }
    else:
        if due <= today:
            errors["due_on"] = _("Choose a due date in the future.")
    if errors:
        raise InvalidInput(errors)
    objective = Objective(
        community_id=community.id, title=title, metric=metric, target=value,
        baseline=await metric_value(db, community, metric), starts_on=today, due_on=due, created_at=clock.now(),
    )  # fmt: skip
    db.add(objective)
    await db.flush()
    return objective


async def delete_objective(db: AsyncSession, community: Community, objective_id: uuid.UUID) -> bool:
    result = await db.execute(delete(Objective).where(Objective.id == objective_id, Objective.community_id == community.id))
    return result.rowcount > 0
