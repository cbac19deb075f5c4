"""Objectives: a metric from a fixed list, a direction, a baseline, a target and a due date, judged
against released figures: progress is the share of the way from the baseline to the target."""

from __future__ import annotations

import uuid
from datetime import date, datetime, time, timedelta
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
from safespace.insights.vitality_figures import VITALITY
from safespace.pulse import results as pulse_results
from safespace.pulse.models import Round
from safespace.pulse.services import COMMUNITY, round_instruments
from safespace.stories.moderation import released_since
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


DIRECTIONS = ("raise", "lower")
SCALE_TOP = {"psychological_safety": 7, "trust": 7, "vitality": 7, "favourable": 100, "response_rate": 100}


class ObjectiveView(msgspec.Struct):
    id: uuid.UUID
    title: str
    metric: str
    metric_name: str
    direction: str  # "raise" | "lower": the way from the baseline to the target
    target: float
    baseline: float | None  # None only on objectives set before baselines were required
    current: float | None  # the latest released value; None: nothing released (or below k)
    current_on: date | None  # the day of that value: its round's close, or today for stories
    starts_on: date
    due_on: date
    progress: float | None  # 0..1 of the way from baseline to target
    expected: float  # 0..1: how far along the time between start and due date is
    status: str  # "met" | "on_track" | "behind" | "missed" | "no_data"


class Reading(msgspec.Struct, frozen=True):
    """A metric's released value and the day it describes."""

    value: float
    on: date


async def metric_value(db: AsyncSession, community: Community, metric: str, *, before: datetime | None = None) -> Reading | None:
    """The latest released value of a metric (same rules as the pages), or None; `before`: the
    latest of the rounds closed before that moment (a baseline set after the fact)."""
    zone = ZoneInfo(community.time_zone)
    if metric == "stories_per_month":
        today = (before or clock.now()).astimezone(zone).date()
        return Reading(float(await released_since(db, community.id, today - timedelta(days=30), until=today)), today)
    instrument_key = {"psychological_safety": "psychological_safety", "favourable": "psychological_safety",
                      "trust": "trust", "vitality": VITALITY}.get(metric)  # fmt: skip
    query = select(Round).where(Round.community_id == community.id, Round.closed.is_(True))
    if before is not None:
        query = query.where(Round.closes_at < before)
    rounds = list(await db.scalars(query.order_by(Round.closes_at.desc()).limit(20)))
    tallies = await pulse_results.released_tallies(db, rounds, COMMUNITY)
    for round_ in rounds:  # newest first: the first round that says something
        on = round_.closes_at.astimezone(zone).date()
        for instrument in round_instruments(round_):
            if instrument_key and instrument.key != instrument_key:
                continue
            answered, rate, estimate, favourable, _reason, _scores = _round_figures(
                round_, tallies.get((round_.id, instrument.key, COMMUNITY)), instrument
            )
            if metric == "response_rate" and rate is not None:
                return Reading(round(rate * 100, 1), on)
            if metric == "favourable" and favourable is not None:
                return Reading(round(favourable * 100, 1), on)
            if metric in ("psychological_safety", "trust", "vitality") and estimate is not None:
                return Reading(round(estimate.mean, 2), on)
    return None


def reached(direction: str, value: float, target: float) -> bool:
    return value >= target if direction == "raise" else value <= target


def _judge(objective: Objective, current: float | None, today: date) -> tuple[float | None, float, str]:
    span = (objective.due_on - objective.starts_on).days
    expected = 1.0 if span <= 0 else min(1.0, max(0.0, (today - objective.starts_on).days / span))
    if current is None:
        return None, expected, "no_data"
    met = reached(objective.direction, current, objective.target)
    if objective.baseline is None or objective.baseline == objective.target:
        progress = 1.0 if met else 0.0
    else:  # the share of the distance covered; a step the wrong way counts as none
        progress = min(1.0, max(0.0, (current - objective.baseline) / (objective.target - objective.baseline)))
    if met:
        return progress, expected, "met"
    if today > objective.due_on:
        return progress, expected, "missed"
    return progress, expected, "on_track" if progress >= expected - 0.05 else "behind"


async def objectives(db: AsyncSession, community: Community) -> list[ObjectiveView]:
    today = clock.now().astimezone(ZoneInfo(community.time_zone)).date()
    rows = list(await db.scalars(select(Objective).where(Objective.community_id == community.id).order_by(Objective.due_on)))
    readings = {metric: await metric_value(db, community, metric) for metric in {o.metric for o in rows}}
    views = []
    for o in rows:
        reading = readings[o.metric]
        current = reading.value if reading else None
        progress, expected, status = _judge(o, current, today)
        views.append(
            ObjectiveView(
                id=o.id, title=o.title, metric=o.metric, metric_name=metric_name(o.metric), direction=o.direction,
                target=o.target, baseline=o.baseline, current=current, current_on=reading.on if reading else None,
                starts_on=o.starts_on, due_on=o.due_on, progress=progress, expected=expected, status=status,
            )  # fmt: skip
        )
    return views


def _number(text: str) -> float:
    return float(text.strip().replace(",", "."))


async def add_objective(
    db: AsyncSession, community: Community, *, title: str, metric: str, direction: str, target: str, baseline: str, due_on: str,
    starts_on: date | None = None,
) -> Objective:
    """Check a facilitator's objective and add it. `baseline` empty: the latest released value.
    `starts_on` (the demo): an objective set on an earlier day, its baseline as released then."""
    today = clock.now().astimezone(ZoneInfo(community.time_zone)).date()
    starts_on = starts_on or today
    title, values, due, errors = _read_form(title, metric, direction, target, baseline, due_on, today)
    if metric in METRICS and "baseline" not in errors:
        current = await metric_value(db, community, metric)
        if "baseline" not in values:
            start = current if starts_on == today else await metric_value(db, community, metric, before=_start_of(community, starts_on))
            if start is None:
                errors["baseline"] = _("Nothing has been released for this metric yet: give the value to start from.")
            else:
                values["baseline"] = start.value
        if "target" in values and "baseline" in values and direction in DIRECTIONS:
            start, goal = values["baseline"], values["target"]
            if reached(direction, start, goal):
                errors["target"] = (
                    _("The target %(target)g is not above the starting value %(start)g: choose a higher target, or “fall to”.")
                    if direction == "raise"
                    else _("The target %(target)g is not below the starting value %(start)g: choose a lower target, or “rise to”.")
                ) % {"target": goal, "start": start}
            elif current is not None and reached(direction, current.value, goal):
                errors["target"] = _("This target is already met: the latest released value is %(current)g (%(day)s).") % {
                    "current": current.value, "day": current.on.isoformat()
                }
    if errors:
        raise InvalidInput(errors)
    objective = Objective(
        community_id=community.id, title=title, metric=metric, direction=direction, target=values["target"],
        baseline=values["baseline"], starts_on=starts_on, due_on=due, created_at=clock.now(),
    )  # fmt: skip
    db.add(objective)
    await db.flush()
    return objective


def _read_form(
    title: str, metric: str, direction: str, target: str, baseline: str, due_on: str, today: date
) -> tuple[str, dict[str, float], date | None, dict[str, str]]:
    """The objective form's own checks, before any released value is read: the title, the metric
    and direction from their lists, numbers within the metric's scale, a due date after today.
    Returns the cleaned title, the numbers read, the due date and the errors found."""
    errors: dict[str, str] = {}
    due = None
    title = clean_text(title)
    if not title:
        errors["title"] = _("Give the objective a title.")
    elif len(title) > 200:
        errors["title"] = _("Keep the title to 200 characters or fewer.")
    if metric not in METRICS:
        errors["metric"] = _("Choose a metric from the list.")
    if direction not in DIRECTIONS:
        errors["direction"] = _("Choose whether the metric should rise or fall to the target.")
    top = SCALE_TOP.get(metric, 10000)
    values: dict[str, float] = {}
    for name, text in (("target", target), ("baseline", baseline)):
        if name == "baseline" and not text.strip():
            continue
        try:
            values[name] = _number(text)
        except ValueError:
            errors[name] = _("Enter a number, such as 5.5 or 70.")
        else:
            if not 0 <= values[name] <= top:
                errors[name] = _("Enter a number between 0 and %(top)s.") % {"top": top}
    try:
        due = date.fromisoformat(due_on)
    except ValueError:
        errors["due_on"] = _("Enter the due date as a date, such as %(example)s.") % {
            "example": (today + timedelta(days=90)).isoformat()
        }
    else:
        if due <= today:
            errors["due_on"] = _("Choose a due date in the future.")
    return title, values, due, errors


def _start_of(community: Community, day: date) -> datetime:
    return datetime.combine(day, time(0), ZoneInfo(community.time_zone))


async def delete_objective(db: AsyncSession, community: Community, objective_id: uuid.UUID) -> bool:
    result = await db.execute(delete(Objective).where(Objective.id == objective_id, Objective.community_id == community.id))
    return result.rowcount > 0
