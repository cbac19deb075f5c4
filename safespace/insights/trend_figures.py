"""A survey's trend over its closed rounds, the open round's response rate, the trend page's
every-visit read, and the facilitators' notes pinned to rounds.

Every figure comes from tallies of closed rounds (P3) and passes surveys.disclosure before it
leaves (P1, P2)."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import date, datetime
from zoneinfo import ZoneInfo

import msgspec
from sqlalchemy import bindparam, delete, func, select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import aliased

from safespace import clock
from safespace.checkin.trend import asked_from, kept_points
from safespace.db.batch import Batcher, padded
from safespace.db.engine import Reads
from safespace.errors import InvalidInput
from safespace.i18n import gettext as _
from safespace.identity.models import Community
from safespace.insights.models import Action, RoundNote

# --- trend ------------------------------------------------------------------------------------
from safespace.insights.reasons import BELOW_K
from safespace.pulse import results as pulse_results
from safespace.pulse.models import Round, Survey, Tally
from safespace.pulse.services import COMMUNITY, bump_trend, round_instruments
from safespace.text import clean_text
from surveys import disclosure, stats
from surveys import tally as tally_rules
from surveys.instrument import Instrument


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
    # A 0..10 instrument: each statement's score (%promoters - %detractors, -100..100; None where
    # hidden). Its scale score, interval, favourable and change stay None: they do not exist there.
    recommend_scores: list[float | None] = msgspec.field(default_factory=list)


class MeetingPoint(msgspec.Struct):
    """A meeting check-in kept in the trend (safespace/checkin/trend.py): the figures its reveal
    showed, of the few statements it asked. Marked apart from the rounds, never joined to their
    line, and no round's change is measured from or to it."""

    checkin_id: uuid.UUID
    day: date  # the meeting's, in the community's time zone
    statements: list[str]
    respondents: int | None
    score: float | None  # the mean of the statements asked, on the instrument's points; None where hidden
    favourable: float | None  # 0..1
    empty_because: str | None
    kind: str = "meeting_checkin"


class InstrumentTrend(msgspec.Struct):
    key: str
    name: str
    points: int
    rounds: list[TrendPoint]
    kind: str = "agreement"  # agreement or zero_to_ten; a single choice has no trend
    statements: list[str] = msgspec.field(default_factory=list)  # a 0..10 instrument's, for its lines
    # Meeting check-ins kept in the trend that asked this instrument's statements, oldest first
    # (the facilitator's trend page and its exports only: survey_trend(meetings=True)).
    checkins: list[MeetingPoint] = msgspec.field(default_factory=list)


def trend_places(trend: InstrumentTrend) -> list[TrendPoint | MeetingPoint]:
    """The rounds and the meeting check-ins kept in the trend, by date (a round first on a shared day)."""
    dated = [(p.closed_on, 0, n, p) for n, p in enumerate(trend.rounds)] + [(c.day, 1, n, c) for n, c in enumerate(trend.checkins)]
    return [place for *_order, place in sorted(dated, key=lambda d: d[:3])]


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
    """(respondents, rate, estimate, favourable, reason, recommend scores) of one instrument in one closed round."""
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
        return None, None, None, None, BELOW_K, []
    view = disclosure.group_view(tally.respondents, members, round_.min_group_size, closed=True)
    if not view.results:
        return None, None, None, None, BELOW_K, []
    shown = pulse_results.instrument_result(instrument, tally, round_.min_group_size, "en", [])
    scores = [item.recommend_score for item in shown.items] if instrument.scale.kind == tally_rules.ZERO_TO_TEN else []
    reason = None if shown.score or any(v is not None for v in scores) else BELOW_K
    return view.respondents, view.response_rate, shown.score, shown.favourable, reason, scores


async def notes_by_round(db: AsyncSession, round_ids: list[uuid.UUID]) -> dict[uuid.UUID, list[RoundNote]]:
    notes: dict[uuid.UUID, list[RoundNote]] = {}
    if round_ids:
        rows = await db.scalars(select(RoundNote).where(RoundNote.round_id.in_(round_ids)).order_by(RoundNote.created_at))
        for note in rows:
            notes.setdefault(note.round_id, []).append(note)
    return notes


async def actions_by_round(db: AsyncSession, round_ids: list[uuid.UUID]) -> dict[tuple[uuid.UUID, str], list[str]]:
    """The titles of the actions answering each (round, instrument), oldest first; dropped ones left out."""
    taken: dict[tuple[uuid.UUID, str], list[str]] = {}
    if round_ids:
        rows = await db.execute(
            select(Action.round_id, Action.instrument, Action.title)
            .where(Action.round_id.in_(round_ids), Action.status != "dropped")
            .order_by(Action.created_at)
        )
        for round_id, instrument, title in rows:
            taken.setdefault((round_id, instrument), []).append(title)
    return taken


_SURVEY = bindparam("survey_id")


async def survey_trend(
    db: AsyncSession, community: Community, survey: Survey, language: str, limit: int | None = TREND_ROUNDS,
    meetings: bool = False,
) -> SurveyTrend:
    rounds = await pulse_results.closed_rounds(db, survey.id, limit)
    undrawn = [r for r in rounds if any(_cached_figures(r, i) is None for i in round_instruments(r))]
    tallies = await pulse_results.released_tallies(db, undrawn, COMMUNITY)
    notes = await notes_by_round(db, [r.id for r in rounds])
    taken = await actions_by_round(db, [r.id for r in rounds])
    zone = ZoneInfo(community.time_zone)
    by_key: dict[str, tuple[Instrument, list[TrendPoint]]] = {}
    last: dict[str, stats.Estimate] = {}  # each instrument's previous shown score
    for round_ in rounds:
        for instrument in round_instruments(round_):
            if instrument.scale.kind == tally_rules.CHOICE:
                continue  # options without order: nothing to follow over rounds
            entry = by_key.setdefault(instrument.key, (instrument, []))
            tally = tallies.get((round_.id, instrument.key, COMMUNITY))
            answered, rate, estimate, favourable, reason, scores = _round_figures(round_, tally, instrument)
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
                    # Actions are marked like notes, on the round whose result they answer.
                    notes=[n.text for n in notes.get(round_.id, [])]
                    + [_("Action: %(title)s", title=title) for title in taken.get((round_.id, instrument.key), [])],
                    recommend_scores=scores,
                )
            )
    kept = await meeting_points(db, survey, rounds, language, zone, limit is not None and len(rounds) >= limit) if meetings else {}
    return SurveyTrend(
        survey_id=survey.id,
        title=survey.title,
        min_group_size=community.min_group_size,
        instruments=[
            InstrumentTrend(key=i.key, name=i.name.get(language), points=i.scale.points, rounds=points, kind=i.scale.kind,
                            statements=[item.text.get(language) for item in i.items] if i.scale.kind == tally_rules.ZERO_TO_TEN else [],
                            checkins=kept.get(i.key, []))
            for i, points in by_key.values()
        ],
        open_round=await open_round_rate(db, survey),
    )


async def meeting_points(
    db: AsyncSession, survey: Survey, rounds: list[Round], language: str, zone: ZoneInfo, cut: bool
) -> dict[str, list[MeetingPoint]]:
    """instrument key -> the kept meeting check-ins that asked its statements (any version of it in
    the rounds drawn). A free question, or statements of several instruments, joins no chart.
    Where the period left older rounds out (`cut`), check-ins from before its first round opened
    are left out with them."""
    if not rounds:
        return {}
    instruments = [i for r in rounds for i in round_instruments(r) if i.scale.kind == tally_rules.AGREEMENT]
    since = rounds[0].opens_at.astimezone(zone).date() if cut else None
    found: dict[str, list[MeetingPoint]] = {}
    for point, asked in await kept_points(db, survey.id, language, zone):
        key = asked_from(asked, instruments)
        if key is None or (since is not None and point.day < since):
            continue
        hidden = point.score is None and point.favourable is None
        found.setdefault(key, []).append(
            MeetingPoint(
                checkin_id=point.checkin_id, day=point.day, statements=point.statements, respondents=point.respondents,
                score=point.score, favourable=point.favourable, empty_because=BELOW_K if hidden else None,
            )
        )
    return found


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
