"""What the insights pages, exports and API show: released aggregates only.

Every figure here is computed from tallies of closed rounds (P3) and passes surveys.disclosure
before it leaves this module (P1, P2). Each empty figure carries the reason it is empty, so a
page, a CSV column or a JSON field can say why instead of showing a zero.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from zoneinfo import ZoneInfo

import msgspec
from babel.dates import format_date
from sqlalchemy import bindparam, delete, func, select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import aliased

from safespace import clock
from safespace.db.batch import Batcher, padded
from safespace.db.engine import Reads
from safespace.errors import InvalidInput
from safespace.i18n import gettext as _
from safespace.identity.models import Community, Team
from safespace.insights.models import Objective, RoundNote
from safespace.pulse import results as pulse_results
from safespace.pulse.models import Round, Survey, Tally
from safespace.pulse.services import COMMUNITY, bump_trend, round_instruments
from safespace.stories import services as stories
from safespace.text import clean_text
from surveys import disclosure, stats
from surveys import tally as tally_rules
from surveys.instrument import Instrument

# Why a figure is empty: the same words in pages, CSV and JSON.
BELOW_K = "fewer_than_k"  # primary suppression: fewer than k people behind it
COMPLEMENTARY = "protects_a_smaller_group"  # hidden so that a smaller group cannot be worked out
HIDDEN = "hidden_at_close"  # a team's tally was dropped at close: too few answered, or it would reveal a smaller group


def reason_text(reason: str | None, k: int) -> str:
    return {
        BELOW_K: _("fewer than %(k)s people") % {"k": k},
        COMPLEMENTARY: _("hidden to protect a smaller group"),
        HIDDEN: _("too few answered, or it would reveal a smaller group"),
        None: "",
    }[reason]


# --- trend ------------------------------------------------------------------------------------


class TrendPoint(msgspec.Struct):
    round_id: uuid.UUID
    number: int
    closed_on: date
    members: int
    respondents: int | None
    response_rate: float | None
    score: float | None  # scale score (mean of respondents' item means, on the instrument's points)
    ci_low: float | None
    ci_high: float | None
    favourable: float | None  # 0..1
    change: float | None  # from the previous round with a score
    significant: bool  # the change's 95% interval excludes zero
    empty_because: str | None
    notes: list[str]


class InstrumentTrend(msgspec.Struct):
    key: str
    name: str
    points: int
    rounds: list[TrendPoint]


class OpenRoundRate(msgspec.Struct):
    round_id: uuid.UUID
    number: int
    closes_at: datetime
    response_rate: float | None  # shown once at least k answered, in groups of at least k members


class SurveyTrend(msgspec.Struct):
    survey_id: uuid.UUID
    title: str
    min_group_size: int
    instruments: list[InstrumentTrend]
    open_round: OpenRoundRate | None


TREND_ROUNDS = 26  # half a year of weekly rounds by default; "all" on request


# A closed round's figures never change (released once, all at once; k locked when it opened),
# so each process keeps them: the trend then reads no tally of a round it has drawn before.
_FIGURES: dict[tuple[uuid.UUID, str], tuple] = {}
_FIGURES_KEPT = 50_000


def _cached_figures(round_: Round, instrument: Instrument) -> tuple | None:
    return _FIGURES.get((round_.id, instrument.key)) if round_.closed else None


def _round_figures(round_: Round, tally: tally_rules.Tally | None, instrument: Instrument) -> tuple:
    """(respondents, rate, estimate, favourable, reason) of one instrument in one closed round."""
    cached = _cached_figures(round_, instrument)
    if cached is None:
        cached = _compute_figures(round_, tally, instrument)
        if round_.closed:
            if len(_FIGURES) >= _FIGURES_KEPT:
                _FIGURES.clear()
            _FIGURES[(round_.id, instrument.key)] = cached
    return cached


def _compute_figures(round_: Round, tally: tally_rules.Tally | None, instrument: Instrument) -> tuple:
    members = int(round_.population.get(COMMUNITY, 0))
    if tally is None:
        return None, None, None, None, BELOW_K
    view = disclosure.group_view(tally.respondents, members, round_.min_group_size, closed=True)
    if not view.results:
        return None, None, None, None, BELOW_K
    shown = pulse_results.instrument_result(instrument, tally, round_.min_group_size, "en", [])
    reason = None if shown.score else BELOW_K
    return view.respondents, view.response_rate, shown.score, shown.favourable, reason


async def notes_by_round(db: AsyncSession, round_ids: list[uuid.UUID]) -> dict[uuid.UUID, list[RoundNote]]:
    notes: dict[uuid.UUID, list[RoundNote]] = {}
    if round_ids:
        rows = await db.scalars(select(RoundNote).where(RoundNote.round_id.in_(round_ids)).order_by(RoundNote.created_at))
        for note in rows:
            notes.setdefault(note.round_id, []).append(note)
    return notes


_SURVEY = bindparam("survey_id")


async def survey_trend(
    db: AsyncSession, community: Community, survey: Survey, language: str, limit: int | None = TREND_ROUNDS
) -> SurveyTrend:
    rounds = await pulse_results.closed_rounds(db, survey.id, limit)
    undrawn = [r for r in rounds if any(_cached_figures(r, i) is None for i in round_instruments(r))]
    tallies = await pulse_results.released_tallies(db, undrawn, COMMUNITY)
    notes = await notes_by_round(db, [r.id for r in rounds])
    zone = ZoneInfo(community.time_zone)
    by_key: dict[str, tuple[Instrument, list[TrendPoint]]] = {}
    last: dict[str, stats.Estimate] = {}  # each instrument's previous shown score
    for round_ in rounds:
        for instrument in round_instruments(round_):
            entry = by_key.setdefault(instrument.key, (instrument, []))
            tally = tallies.get((round_.id, instrument.key, COMMUNITY))
            answered, rate, estimate, favourable, reason = _round_figures(round_, tally, instrument)
            change, significant = None, False
            if estimate and instrument.key in last:
                diff = stats.difference(last[instrument.key], estimate)
                if diff:
                    change = diff.mean
                    significant = diff.ci_low > 0 or diff.ci_high < 0
            if estimate:
                last[instrument.key] = estimate
            entry[1].append(
                TrendPoint(
                    round_id=round_.id,
                    number=round_.number,
                    closed_on=round_.closes_at.astimezone(zone).date(),
                    members=int(round_.population.get(COMMUNITY, 0)),
                    respondents=answered,
                    response_rate=rate,
                    score=estimate.mean if estimate else None,
                    ci_low=estimate.ci_low if estimate else None,
                    ci_high=estimate.ci_high if estimate else None,
                    favourable=favourable,
                    change=change,
                    significant=significant,
                    empty_because=reason,
                    notes=[n.text for n in notes.get(round_.id, [])],
                )
            )
    return SurveyTrend(
        survey_id=survey.id,
        title=survey.title,
        min_group_size=community.min_group_size,
        instruments=[
            InstrumentTrend(key=i.key, name=i.name.get(language), points=i.scale.points, rounds=points)
            for i, points in by_key.values()
        ],
        open_round=await open_round_rate(db, survey),
    )


# The open round's figures and its community tally's count (no ORM object, no instrument
# snapshot decoded): the trend page asks on every visit.
def _open_round(opened) -> list:  # noqa: ANN001 - Round or an alias of it
    answered = select(func.max(Tally.respondents)).where(Tally.round_id == opened.id, Tally.group_key == COMMUNITY)
    members = opened.population[COMMUNITY].as_integer()  # not the whole population: a key per team
    return [opened.id, opened.number, opened.opens_at, opened.closes_at, members, opened.min_group_size,
            answered.scalar_subquery()]  # fmt: skip


def _is_open(opened, survey):  # noqa: ANN001, ANN202
    return (opened.survey_id == survey) & opened.closed.is_(False) & (opened.opens_at <= bindparam("moment"))


_OPEN_ROUND = select(*_open_round(Round)).where(_is_open(Round, _SURVEY))


def _open_rate(found: tuple | None, moment: datetime) -> OpenRoundRate | None:
    """P3: of an open round, only the response rate, and only once k have answered."""
    if found is None:
        return None
    round_id, number, opens_at, closes_at, members, k, answered = found
    if not opens_at <= moment < closes_at:
        return None
    view = disclosure.group_view(answered or 0, members or 0, k, closed=False)
    return OpenRoundRate(round_id=round_id, number=number, closes_at=closes_at, response_rate=view.response_rate)


async def open_round_rate(db: AsyncSession, survey: Survey) -> OpenRoundRate | None:
    moment = clock.now()
    return _open_rate((await db.execute(_OPEN_ROUND, {"survey_id": survey.id, "moment": moment})).first(), moment)


# --- the trend page's every-visit reads -----------------------------------------------------------


@dataclass(frozen=True)
class CommunityFacts:
    """What the trend page shows of its community, without the ORM object."""

    id: uuid.UUID
    name: str
    min_group_size: int
    time_zone: str


@dataclass(frozen=True)
class SurveyState:
    id: uuid.UUID
    title: str
    trend_revision: int  # the key of the trend charts drawn from its closed rounds and notes
    open_round: OpenRoundRate | None


@dataclass(frozen=True)
class TrendState:
    community: CommunityFacts
    surveys: list[SurveyState]  # in the order they were created


_OPENED = aliased(Round, name="opened")
_TREND_STATE = (
    select(Community.id, Community.name, Community.min_group_size, Community.time_zone, Survey.id, Survey.title,
           Survey.trend_revision, *_open_round(_OPENED))  # fmt: skip
    .select_from(Community)
    .outerjoin(Survey, Survey.community_id == Community.id)
    .outerjoin(_OPENED, _is_open(_OPENED, Survey.id))
    .where(Community.id.in_(bindparam("community_ids", expanding=True)))
    .order_by(Community.id, Survey.created_at, Survey.id, _OPENED.opens_at.desc())
)


def _trend_state(rows: list, moment: datetime) -> TrendState | None:
    """One community's rows of _TREND_STATE (None: no such community)."""
    if not rows:
        return None
    community_id, name, k, time_zone = rows[0][:4]
    surveys: dict[uuid.UUID, SurveyState] = {}
    for row in rows:
        survey_id = row[4]
        if survey_id is not None and survey_id not in surveys:  # a second open round: the latest opened counts
            opened = row[7:] if row[7] is not None else None
            surveys[survey_id] = SurveyState(survey_id, row[5], row[6], _open_rate(opened, moment))
    return TrendState(CommunityFacts(community_id, name, k, time_zone), list(surveys.values()))


TREND_STATES = "trend_states"  # app.state: the app's TrendStates


class TrendStates:
    """Everything a visit to the trend page reads, in one statement (None: no such community).

    The charts are drawn from a survey's closed rounds and notes only, and kept per version
    (insights/controllers.py); what moves with every answer is the open round's rate. Concurrent
    visits are read together (db.batch, as the sessions are): under load a visit pays a share of
    the statement. Nothing is kept: a batch is read after every visit in it arrived, so a visit
    sees what was committed before it.
    """

    def __init__(self, reads: Reads) -> None:
        self.reads = reads
        self.batcher: Batcher[uuid.UUID, TrendState | None] = Batcher(self._read, max_batch=64)

    async def read(self, community_id: uuid.UUID) -> TrendState | None:
        return await self.batcher.submit(community_id)

    async def _read(self, community_ids: list[uuid.UUID]) -> list[TrendState | None]:
        moment = clock.now()
        found: dict[uuid.UUID, list] = {}
        for row in await self.reads.rows(_TREND_STATE, {"community_ids": padded(community_ids), "moment": moment}):
            found.setdefault(row[0], []).append(row)
        return [_trend_state(found.get(community_id, []), moment) for community_id in community_ids]


# --- vitality -----------------------------------------------------------------------------------


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


def _months_back(today: date, count: int) -> list[str]:
    months, year, month = [], today.year, today.month
    for _i in range(count):
        months.append(f"{year:04d}-{month:02d}")
        year, month = (year, month - 1) if month > 1 else (year - 1, 12)
    return months[::-1]


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
    activity = await stories.monthly_activity(db, community.id, _months_back(clock.now().astimezone(zone).date(), VITALITY_MONTHS))
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


# --- notes ----------------------------------------------------------------------------------------


async def add_note(db: AsyncSession, round_: Round, text: str) -> RoundNote:
    text = clean_text(text)
    if not text:
        raise InvalidInput({"note": _("Write the note first.")})
    if len(text) > 300:
        raise InvalidInput({"note": _("Keep a note to 300 characters or fewer.")})
    note = RoundNote(round_id=round_.id, text=text, created_at=clock.now())
    db.add(note)
    await bump_trend(db, round_.survey_id)
    await db.flush()
    return note


async def delete_note(db: AsyncSession, round_: Round, note_id: uuid.UUID) -> bool:
    result = await db.execute(delete(RoundNote).where(RoundNote.id == note_id, RoundNote.round_id == round_.id))
    if result.rowcount == 0:
        return False
    await bump_trend(db, round_.survey_id)
    return True


# --- objectives -------------------------------------------------------------------------------------


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


# --- teams ----------------------------------------------------------------------------------------


class TeamRow(msgspec.Struct):
    team_id: str
    name: str
    values: list[float | None]  # one per column; None: hidden
    empty_because: list[str | None]


class TeamGrid(msgspec.Struct):
    title: str
    description: str
    points: int
    columns: list[str]
    column_keys: list[str]
    rows: list[TeamRow]


def _hidden_teams(round_: Round, tallies: dict[tuple, tally_rules.Tally]) -> dict[str, str | None]:
    """Which kept team tallies of a closed round may be shown: team -> None (shown) or a reason.

    Every figure the pages show per team (each item's answers and each scale score's count, over
    all instruments of the round) goes through surveys.disclosure.suppress_team_results, so a
    team is shown whole or not at all, and the community minus the shown teams never leaves
    between 1 and k-1 people in any figure (P1, P2).
    """
    figures: dict[str, int] = {}
    teams: dict[str, dict[str, int]] = {}
    for (round_id, instrument, group), tally in tallies.items():
        if round_id != round_.id:
            continue
        counts = {f"{instrument}/{item}": sum(tally.counts.get(item, ())) for item in tally.items}
        counts[f"{instrument}/score"] = tally.score_n
        if group == COMMUNITY:
            figures |= counts
        else:
            teams.setdefault(group, {}).update(counts)
    if not figures:  # the community itself is below k: nothing about any team either
        return {team: BELOW_K for team in teams}
    cells = disclosure.suppress_team_results(figures, teams, round_.min_group_size)
    hidden: dict[str, str | None] = {team: None for team in teams}
    for (team, _figure), cell in cells.items():
        if not cell.shown:
            reason = BELOW_K if cell.reason == disclosure.BELOW_K else COMPLEMENTARY
            hidden[team] = hidden[team] if hidden[team] == BELOW_K else reason
    return hidden


def _dropped(round_: Round, team_id: str) -> str:
    """Why a team has no tally in a closed round: too small to be counted apart when it opened, or
    dropped at close for the reason close recorded (rounds closed before it recorded one: HIDDEN)."""
    if team_id not in round_.population:
        return BELOW_K
    return (round_.hidden_teams or {}).get(team_id, HIDDEN)


def _team_cell(tally: tally_rules.Tally, column: str) -> tuple[float | None, str | None]:
    estimate = stats.scale_estimate(tally) if column == "score" else stats.item_estimate(tally, column)
    return (estimate.mean, None) if estimate else (None, BELOW_K)


async def _team_names(db: AsyncSession, community_id: uuid.UUID) -> dict[str, str]:
    return {str(t.id): t.name for t in await db.scalars(select(Team).where(Team.community_id == community_id).order_by(Team.name))}


async def round_team_grid(db: AsyncSession, round_: Round, instrument: Instrument, language: str) -> TeamGrid:
    """Teams × items (and the scale score) of one closed round: means, suppressed cells marked."""
    names = await _team_names(db, round_.community_id)
    tallies = await pulse_results.released_tallies(db, [round_])
    teams = {g: t for (_r, i, g), t in tallies.items() if i == instrument.key and g != COMMUNITY}
    columns = [item.key for item in instrument.items] + ["score"]
    hidden = _hidden_teams(round_, tallies)
    rows = []
    for team_id, name in names.items():
        if team_id in teams and hidden[team_id] is None:
            cells = [_team_cell(teams[team_id], column) for column in columns]
        elif team_id in teams:
            cells = [(None, hidden[team_id])] * len(columns)
        else:  # too small to be counted apart, or dropped at close
            cells = [(None, _dropped(round_, team_id))] * len(columns)
        rows.append(TeamRow(team_id, name, [v for v, _r in cells], [r for _v, r in cells]))
    labels = [f"{n}. {item.text.get(language)}" for n, item in enumerate(instrument.items, start=1)] + [_("Scale score")]
    return TeamGrid(
        title=_("%(name)s by team, round %(number)s", name=instrument.name.get(language), number=round_.number),
        description=_("Mean answer per statement and team (1–%(points)s, as people saw the scale); hatched cells are hidden.",
                      points=instrument.scale.points),  # fmt: skip
        points=instrument.scale.points,
        columns=labels,
        column_keys=columns,
        rows=rows,
    )


async def team_trend_grid(db: AsyncSession, community: Community, survey: Survey, instrument: Instrument, language: str) -> TeamGrid:
    """Teams × the last closed rounds: each team's scale score over time, same rules per round."""
    names = await _team_names(db, community.id)
    rounds = [r for r in await pulse_results.closed_rounds(db, survey.id, 12) if any(i.key == instrument.key for i in round_instruments(r))]
    tallies = await pulse_results.released_tallies(db, rounds)
    zone = ZoneInfo(community.time_zone)
    by_round = {r.id: _hidden_teams(r, tallies) for r in rounds}
    rows = []
    for team_id, name in names.items():
        cells = []
        for round_ in rounds:
            tally = tallies.get((round_.id, instrument.key, team_id))
            if tally is None:
                cells.append((None, _dropped(round_, team_id)))
            elif by_round[round_.id].get(team_id) is not None:
                cells.append((None, by_round[round_.id][team_id]))
            else:
                cells.append(_team_cell(tally, "score"))
        rows.append(TeamRow(team_id, name, [v for v, _r in cells], [r for _v, r in cells]))
    return TeamGrid(
        title=_("%(name)s: each team's scale score by round", name=instrument.name.get(language)),
        description=_("Scale score per team and round; hatched cells are hidden to protect small groups."),
        points=instrument.scale.points,
        columns=[format_day(r.closes_at.astimezone(zone).date(), language) for r in rounds],
        column_keys=[str(r.id) for r in rounds],
        rows=rows,
    )


def format_day(day: date, language: str) -> str:
    return format_date(day, "d MMM yy", locale=language)
