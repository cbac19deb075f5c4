"""The demo's year of rounds: a weekly pulse with a year of closed rounds and one open, a monthly
vitality check, and who answers each week and how safe they feel. The answers are drawn from
seeded generators and folded like real answers; none is stored one by one."""

from __future__ import annotations

import random
import uuid
from dataclasses import dataclass
from datetime import date, timedelta

import msgspec
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from safespace import clock
from safespace.identity import services
from safespace.identity.models import Community
from safespace.insights import trend_figures
from safespace.privacy.crypto import Keyring
from safespace.pulse import lifecycle
from safespace.pulse import services as pulse
from safespace.pulse.answering import seal_pending_comment
from safespace.pulse.models import Participation, PendingComment, Round, Tally
from surveys import cadence as cadence_rules
from surveys import tally as tally_rules
from surveys.instrument import Instrument, builtin_instruments

SURVEY_TITLE = "Weekly pulse"
PAST_ROUNDS = 52  # a year of weekly rounds, all closed; the next one is open
VITALITY_TITLE = "Monthly community check"
DEMO_COMMENTS = [
    "Say thank you when someone admits a mistake in the weekly call.",
    "Facilitators could share their own failures first.",
    "Fewer people in the review meetings; it is hard to speak up in front of thirty people.",
    "Keep the monthly 'what went wrong' session, it really helps.",
    "Answer questions in the forum faster so newcomers feel welcome.",
    "Make it normal to say 'I don't know' in meetings.",
    "Tell us early what the reorganisation means for our projects, even if not everything is decided.",
    "Leave five minutes at the end of each call for questions nobody dared to ask.",
    "Rotate who chairs the weekly call so it is not always the same voices.",
    "Write down decisions and why they were taken, so people who missed the call can disagree later.",
]
VITALITY_COMMENTS = [
    "A shared calendar of who is working on what, so we stop duplicating studies.",
    "The forum search is so bad that we ask the same questions again; fixing it would help most.",
    "More small working sessions and fewer presentations.",
    "Show us what changed because of these surveys.",
]


@dataclass
class Member:
    """A demo member as the generator sees them (their answers are folded, never stored)."""

    person_id: uuid.UUID
    team_id: uuid.UUID | None
    team: str | None
    joins_in_week: int  # 0: a founding member
    offset: float = 0.0  # how much safer than the community's level this person feels
    keenness: float = 1.0  # how likely to answer, relative to the round's rate


HOLIDAY_ROUNDS = (3, 46)
ROUND_NOTES = {
    3: "Holiday week: most of us were away",
    20: "Monthly failure-sharing sessions began",
    35: "Reorganisation of the programme teams announced",
    39: "Open Q&A with the directors about the reorganisation",
    46: "Holiday week: most of us were away",
}
# The teams the pages can show (at least k members); Adaptation's members and those without a
# team are only in the community's figures.
COUNTED_APART = ("Energy", "Circular economy", "Transport")


def _safety_level(week: int, team: str | None) -> float:
    """The mean answer the demo draws around in a week: flat, rising once the failure-sharing
    sessions begin (week 20), a sharp dip when the reorganisation is announced (week 35), then
    a recovery. Energy feels safest; Circular economy starts lowest and gains most from the
    sessions; Transport is hit hardest by the reorganisation."""
    if week < 20:
        level = 4.3
    elif week < 35:
        level = 4.3 + 0.045 * (week - 19)
    elif week < 39:
        level = 4.45
    else:
        level = 4.45 + 0.055 * (week - 38)
    shift = {
        "Energy": 0.3,
        "Circular economy": -0.5 + min(0.4, 0.025 * max(0, week - 19)),
        "Transport": 0.05 if week < 35 else min(0.05, -0.45 + 0.1 * max(0, week - 40)),
    }.get(team or "", -0.15)
    return level + shift


def _vitality_level(dimension: str, month: int) -> float:
    """The five keys over the twelve months: a shared vision from the start, a risk-free
    environment that grows with the sessions, technology that stays the weak point."""
    progress = month / 12
    return {
        "shared_vision": 5.4,
        "flexible_leadership": 4.5 + 0.4 * progress,
        "risk_free_environment": 4.0 + 1.0 * progress,
        "technology_enabler": 3.7 - 0.2 * progress,
        "measurement_for_improvement": 4.2 + 0.6 * progress,
    }.get(dimension, 4.5)


async def year_of_rounds(db: AsyncSession, keyring: Keyring, community: Community, today: date, people: list[Member]) -> None:
    """A weekly pulse with a year of closed rounds and one open round, and a monthly vitality
    check with a year of closed rounds, opened and closed in the order they ran so that each
    round counts the members of its day.

    The answers come from a seeded generator and are folded into the rounds' tallies by the same
    code as real answers (surveys.tally.fold_all), with one ledger row per member who answered;
    they are never stored one by one.
    """
    start = today - timedelta(weeks=PAST_ROUNDS)
    weekly = await pulse.create_survey(db, community.id, community.time_zone, SURVEY_TITLE, ["psychological_safety"],
                                       pulse.CadenceForm("weekly", today.weekday(), 1, 3, start.isoformat()))  # fmt: skip
    # Monthly on the day of ten days ago, open five days: its latest round has closed and the next
    # opens in some weeks, so the demo has one open round (the weekly one) whatever the date.
    monthly = await pulse.create_survey(db, community.id, community.time_zone, VITALITY_TITLE, ["vitality"],
                                        pulse.CadenceForm("monthly", 0, (today - timedelta(days=10)).day, 5, start.isoformat()))  # fmt: skip
    weekly.created_at = community.created_at + timedelta(days=1)  # the weekly pulse is the pages' first survey
    monthly.created_at = community.created_at + timedelta(days=2)
    weekly_cadence, monthly_cadence = pulse.survey_cadence(weekly), pulse.survey_cadence(monthly)
    runs = [(cadence_rules.window(weekly_cadence, n), weekly) for n in range(1, PAST_ROUNDS + 1)]
    now = clock.now()
    number = 1
    while (window := cadence_rules.window(monthly_cadence, number)).closes_at <= now:
        runs.append((window, monthly))
        number += 1
    runs.sort(key=lambda run: run[0].opens_at)

    rng = random.Random(2026)  # the people; each round draws from its own generator below
    for person in people:
        person.offset, person.keenness = rng.gauss(0, 0.35), rng.uniform(0.9, 1.08)
    instruments = builtin_instruments()
    nudges = {key: rng.uniform(-0.35, 0.35) for key in instruments["psychological_safety"].item_keys + instruments["vitality"].item_keys}
    joined: set[uuid.UUID] = set()
    for window, survey in runs:
        week = (window.opens_on - start).days // 7 + 1
        for person in people:
            if person.person_id not in joined and person.joins_in_week <= week:
                membership = services.add_membership(db, community.id, person.person_id, person.team_id, "active")
                membership.created_at = window.opens_at - timedelta(days=2) if person.joins_in_week else community.created_at
                joined.add(person.person_id)
        await db.flush()
        present = [p for p in people if p.person_id in joined]
        round_ = await lifecycle.open_round(db, survey, window, keyring, token_key_bits=None)  # closed below
        # Seeded by the round, so its figures do not depend on the date the demo is made.
        rng = random.Random(f"{survey.title}/{window.number}")
        holiday = survey is weekly and window.number in HOLIDAY_ROUNDS
        answering = _who_answers(rng, present, holiday, (0.64 if survey is monthly else 0.68) + 0.12 * week / PAST_ROUNDS)
        instrument = instruments["vitality" if survey is monthly else "psychological_safety"]
        answer_sets = [(p, _answers(rng, instrument, nudges, p, survey is monthly, week, window.number)) for p in answering]
        await _fold(db, round_, instrument.key, answer_sets)
        if len(answering) >= community.comment_threshold:
            _comment(db, keyring, round_, instrument.key, rng.sample(VITALITY_COMMENTS if survey is monthly else DEMO_COMMENTS, rng.randint(0, 2)))
        await db.flush()
        await lifecycle.close_round(db, keyring, round_.id, window.closes_at)
        if survey is weekly and window.number in ROUND_NOTES:
            await trend_figures.add_note(db, round_, ROUND_NOTES[window.number])
    await lifecycle.open_round(db, weekly, cadence_rules.window(weekly_cadence, PAST_ROUNDS + 1), keyring)


def _comment(db: AsyncSession, keyring: Keyring, round_: Round, instrument_key: str, texts: list[str]) -> None:
    """Comments waiting in a round, sealed as a member's would be, released when it closes."""
    for text in texts:
        comment_id = uuid.uuid4()
        body = seal_pending_comment(keyring, round_.id, comment_id, text)
        db.add(PendingComment(id=comment_id, round_id=round_.id, instrument=instrument_key, group_key=pulse.COMMUNITY, body=body))


def _who_answers(rng: random.Random, present: list[Member], holiday: bool, usual: float) -> list[Member]:
    """Who answers a round: about the `usual` share of members, each by their keenness; four in a
    holiday week.

    Adaptation's members and those without a team are in the community's figures only, so the
    pages show the three larger teams only while at least k of them answered too: with fewer, the
    community minus the shown teams would be their answers, and a larger team is hidden as well
    (P2). At least six of them answer here, so a usual round shows three teams and hides one; a
    round where statements they skipped bring them below five shows that second reason.
    """
    if holiday:
        return rng.sample(present, 4)
    rate = usual + rng.uniform(-0.05, 0.05)
    answering = [p for p in present if rng.random() < rate * p.keenness]
    others = [p for p in present if p.team not in COUNTED_APART and p not in answering]
    missing = 6 - sum(1 for p in answering if p.team not in COUNTED_APART)
    return answering + rng.sample(others, max(0, min(missing, len(others))))


def _answers(
    rng: random.Random, instrument: Instrument, nudges: dict[str, float], person: Member, vitality: bool, week: int, month: int
) -> dict[str, int | None]:
    """One member's answers to a round: around the week's safety level (or the month's vitality
    level) plus their own offset, each statement nudged alike for everyone, 2% left unanswered."""
    answers: dict[str, int | None] = {}
    for item in instrument.items:
        if rng.random() < 0.02:
            answers[item.key] = None  # prefer not to answer
            continue
        level = _vitality_level(item.dimension, month) if vitality else _safety_level(week, person.team)
        keyed = min(7, max(1, round(rng.gauss(level + person.offset + nudges[item.key], 0.9))))
        answers[item.key] = 8 - keyed if item.reverse else keyed
    return answers

async def _fold(db: AsyncSession, round_: Round, instrument: str, answer_sets: list[tuple[Member, dict]]) -> None:
    """Fold a round's answers into its tallies (the community's and each counted team's) and note
    who answered in the ledger, as the answer path does for a batch of answers."""
    db.add_all([Participation(round_id=round_.id, person_id=person.person_id) for person, _given in answer_sets])
    for row in await db.scalars(select(Tally).where(Tally.round_id == round_.id, Tally.instrument == instrument)):
        group = [answers for person, answers in answer_sets if row.group_key in (pulse.COMMUNITY, str(person.team_id))]
        folded = tally_rules.fold_all(msgspec.json.decode(row.data, type=tally_rules.Tally), group)
        row.data, row.respondents = msgspec.json.encode(folded), folded.respondents
