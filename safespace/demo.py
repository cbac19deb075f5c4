"""The demo community: created once, found again on every later run."""

from __future__ import annotations

import json
import os
import random
import uuid
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from zoneinfo import ZoneInfo

import msgspec
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from safespace import clock
from safespace.identity import services, signin
from safespace.identity.models import Community, Person
from safespace.insights import objective_figures, trend_figures
from safespace.privacy.crypto import Keyring, associated_data
from safespace.pulse import lifecycle
from safespace.pulse import services as pulse
from safespace.pulse.models import Participation, PendingComment, Round, Tally
from safespace.stories import receipts
from safespace.stories.models import Reaction, Reply, Story
from surveys import cadence as cadence_rules
from surveys import tally as tally_rules
from surveys.instrument import builtin_instruments

NAME = "Climate Policy Practitioners"
VISION = (
    "We help each other design climate policy that works in the real world, by sharing "
    "what we tried, what failed and what we learned, openly and without blame."
)
FACILITATOR = ("Mara Okafor", "mara@climate.example")
# Three teams of at least k = 5 that the team pages can show, and Adaptation, smaller than k: its
# members count in the community's figures only, and its row is always hidden.
TEAMS = {
    "Energy": [
        ("Ines Duarte", "ines@climate.example"),
        ("Tomás Rivera", "tomas@climate.example"),
        ("Kwame Asante", "kwame@climate.example"),
        ("Lena Fischer", "lena@climate.example"),
        ("Priya Natarajan", "priya@climate.example"),
        ("Jonas Berg", "jonas@climate.example"),
        ("Aiko Tanaka", "aiko@climate.example"),
        ("Olga Petrova", "olga@climate.example"),
        ("Samir Haddad", "samir@climate.example"),
        ("Ravi Menon", "ravi@climate.example"),
        ("Mei Lin", "mei@climate.example"),
        ("Jakub Dvořák", "jakub@climate.example"),
    ],
    "Circular economy": [
        ("Sofia Lindqvist", "sofia@climate.example"),
        ("Mateo Gómez", "mateo@climate.example"),
        ("Chloe Martin", "chloe@climate.example"),
        ("Daniel Okoro", "daniel@climate.example"),
        ("Hana Novak", "hana@climate.example"),
        ("Luca Bianchi", "luca@climate.example"),
        ("Amara Diallo", "amara@climate.example"),
        ("Ingrid Solberg", "ingrid@climate.example"),
        ("Sara Cohen", "sara@climate.example"),
        ("Felix Wagner", "felix@climate.example"),
    ],
    "Transport": [
        ("Emil Johansson", "emil@climate.example"),
        ("Fatima Zahra", "fatima@climate.example"),
        ("Noah Williams", "noah@climate.example"),
        ("Marta Kowalska", "marta@climate.example"),
        ("Diego Herrera", "diego@climate.example"),
        ("Yuki Sato", "yuki@climate.example"),
        ("Pablo Ruiz", "pablo@climate.example"),
        ("Nadia Rahman", "nadia@climate.example"),
        ("Tariq Aziz", "tariq@climate.example"),
        ("Aisha Bello", "aisha@climate.example"),
        ("Hugo Lefèvre", "hugo@climate.example"),
    ],
    "Adaptation": [
        ("Leila Ahmadi", "leila@climate.example"),
        ("Oskar Nilsson", "oskar@climate.example"),
        ("Rosa Jiménez", "rosa@climate.example"),
        ("Kofi Boateng", "kofi@climate.example"),
    ],
}
# Members not (yet) in a team: like Adaptation's, their answers are in the community's figures only.
WITHOUT_TEAM = [
    ("Elif Yilmaz", "elif@climate.example"),
    ("Sean Murphy", "sean@climate.example"),
    ("Ana Costa", "ana@climate.example"),
    ("Viktor Horvat", "viktor@climate.example"),
]
# Who joined during the year, and in which week: the members chart grows from 37 to 42.
LATE_JOINERS = {"olga@climate.example": 9, "samir@climate.example": 17, "amara@climate.example": 24,
                "nadia@climate.example": 31, "pablo@climate.example": 41}  # fmt: skip
DEMO_MEMBER = TEAMS["Energy"][0]


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


DEMO_STORIES = [
    ("The consultation nobody came to", "We announced a public consultation on the heat plan two weeks ahead, by email only. Four people came.",
     "The groups most affected do not read our newsletters; their associations do.",
     "Ask the associations first, a month ahead, and go to their meetings.", ["stakeholders", "communication"]),
    ("A model we trusted too much", "Our emissions model said the subsidy would pay back in three years. It took seven.",
     "We never checked the model against last year's programme.", "Back-test every model on one past year before we use it.",
     ["data and evidence"]),
    ("I said yes to a deadline I knew was impossible", "I promised the ministry a draft in one week to look capable. It was late and thin.",
     "Saying 'two weeks' early costs less than apologising late.", "Give the honest estimate, with what could make it shorter.",
     ["implementation"]),
    ("The pilot that worked only in the pilot", "Our repair-café pilot thrived with two enthusiastic volunteers and collapsed when they left.",
     "We measured participation, not how much depended on two people.", "Plan the hand-over from the first month.",
     ["implementation", "funding"]),
    ("A chart that told the wrong story", "I showed a map of recycling rates without population; the small towns looked like failures.",
     "Every map needs a denominator, and the audience reads colours first.", "Show rates per person and test the chart on a colleague.",
     ["data and evidence", "communication"]),
    ("We forgot the night shift", "The new bus timetable for the industrial park ignored the night shift, who then drove.",
     "Our survey ran only in office hours.", "Ask at the times people actually work.", ["stakeholders", "policy design"]),
    ("Funding rules we read too late", "We designed the programme first and read the grant conditions after: two measures were not eligible.",
     "Conditions are design constraints, not paperwork.", "Read the rules with the whole team on day one.", ["funding", "policy design"]),
    ("I kept a problem to myself for a month", "I saw the data feed was broken but hoped to fix it quietly. The report went out wrong.",
     "The team would have fixed it in a day.", "Say it in the next stand-up, even unfinished.", ["data and evidence"]),
    ("The dashboard nobody opened", "We spent two months on a dashboard for the heat-pump roll-out. After the launch, nobody opened it.",
     "We built what we could measure, not what the programme managers had to decide.",
     "Start from the decision and the meeting where it is taken, then build the smallest view that serves it.",
     ["data and evidence", "implementation"]),
    ("We translated the leaflet three months late", "The insulation grant leaflet was only in one language at launch. Uptake in two districts stayed near zero.",
     "Translation is part of the launch, not a follow-up.", "Budget translation and a reviewer from each community before the launch date.",
     ["communication", "stakeholders"]),
    ("I defended a target I no longer believed in", "For a year I defended our 2030 target in public after our own numbers showed it was out of reach.",
     "Saying early that a target is off track keeps more trust than a late surprise.",
     "Publish the gap together with a plan to close it.", ["policy design", "communication"]),
    ("Two teams, one spreadsheet", "Energy and Transport each kept their own emission factors. Our joint report had two numbers for the same thing.",
     "Shared numbers need one owner.", "One source for shared figures, with a named owner and a change log.", ["data and evidence"]),
]
# When each story was released, in weeks before today: the first a few weeks before the monthly
# failure-sharing sessions began (week 20 of the year), more once they had.
STORY_RELEASES = {36: [0], 30: [1], 27: [2, 3], 22: [4], 17: [5, 6], 12: [7], 8: [8, 9], 4: [10], 1: [11]}


DEMO_REPLIES = [
    "Same here. What helped us was a short checklist before every public meeting.",
    "Thank you for writing this down; I am about to make the same mistake.",
    "We had this too. Asking one person outside the team to read it first caught most of it.",
    "Could you share the template you use now?",
]


# (title, metric, target, days until due)
DEMO_OBJECTIVES = [
    ("Everyone feels able to raise a problem", "psychological_safety", "5.6", 120),
    ("Half of us answer favourably on psychological safety", "favourable", "50", 150),
    ("Most of us answer every pulse", "response_rate", "85", 90),
]


@dataclass
class Demo:
    community: Community
    created: bool


async def ensure_demo(db: AsyncSession, keyring: Keyring, today: date | None = None) -> Demo:
    existing = await db.scalar(select(Community).where(Community.name == NAME))
    if existing:
        return Demo(existing, created=False)
    facilitator, _ = await services.get_or_create_person(db, FACILITATOR[1])
    facilitator.display_name = FACILITATOR[0]
    community = await services.create_community(db, facilitator.id, NAME, VISION, 5, "Europe/Brussels")
    zone = ZoneInfo(community.time_zone)
    today = today or clock.now().astimezone(zone).date()
    # Founded a year ago, a few days before its first round: the pages start their charts here.
    community.created_at = datetime.combine(today - timedelta(weeks=PAST_ROUNDS, days=5), time(10), zone)
    people: list[_Person] = []
    for team_name, members in [*TEAMS.items(), (None, WITHOUT_TEAM)]:
        team = await services.create_team(db, community.id, team_name) if team_name else None
        for display_name, email in members:
            person, _ = await services.get_or_create_person(db, email)
            person.display_name = display_name
            people.append(_Person(person.id, team.id if team else None, team_name, LATE_JOINERS.get(email, 0)))
    await db.flush()
    await _pulse_history(db, keyring, community, today, people)
    await _stories(db, keyring, community, today)
    # Set half a year ago, from the figures released then: the page shows the way travelled since.
    for title, metric, target, days_left in DEMO_OBJECTIVES:
        await objective_figures.add_objective(
            db, community, title=title, metric=metric, direction="raise", target=target, baseline="",
            due_on=(today + timedelta(days=days_left)).isoformat(), starts_on=today - timedelta(weeks=26),
        )  # fmt: skip
    return Demo(community, created=True)


async def _stories(db: AsyncSession, keyring: Keyring, community: Community, today: date) -> None:
    """Twelve released stories over the year (STORY_RELEASES), written as good failure stories
    read, with reactions in the month they were released and the next, and a few replies."""
    for weeks_ago, chosen in STORY_RELEASES.items():
        day = today - timedelta(weeks=weeks_ago)
        next_month = (day.replace(day=1) + timedelta(days=32)).replace(day=1)
        for position, index in enumerate(chosen):
            title, happened, learned, differently, tags = DEMO_STORIES[index]
            story_id = uuid.uuid4()
            # Nobody holds a code for a demo story: a random hash, which no code matches, stands in
            # for scrypt's (0.6 s for twelve codes nobody could type).
            locator, salt, hashed = receipts.new_code()[: receipts.GROUP_LENGTH], os.urandom(16), os.urandom(32)
            text = {"title": title, "happened": happened, "learned": learned, "differently": differently}
            db.add(Story(id=story_id, community_id=community.id, status="released", released_on=day, position=position,
                         tags=tags, wants_advice=index % 4 == 3, body=keyring.seal(json.dumps(text), associated_data("story", "body", story_id)),
                         receipt_locator=locator, receipt_salt=salt, receipt_hash=hashed))
            await db.flush()
            rng = random.Random(f"story-{index}")
            for kind in ("been_there", "helps_me", "thank_you"):
                for _i in range(rng.randint(1, 7)):  # demo reactions: random markers, nobody's
                    month = next_month if next_month <= today and rng.random() < 0.3 else day
                    db.add(Reaction(story_id=story_id, kind=kind, month=month.strftime("%Y-%m"), marker=os.urandom(32)))
            for reply_position, reply_text in enumerate(rng.sample(DEMO_REPLIES, rng.randint(0, 2))):
                if day + timedelta(days=7) > today:
                    break
                reply_id = uuid.uuid4()
                db.add(Reply(id=reply_id, story_id=story_id, status="released", released_on=day + timedelta(days=7),
                             position=reply_position, body=keyring.seal(reply_text, associated_data("reply", "body", reply_id))))
    await db.flush()


@dataclass
class _Person:
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


async def _pulse_history(db: AsyncSession, keyring: Keyring, community: Community, today: date, people: list[_Person]) -> None:
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
        answer_sets = []
        for person in answering:
            answers: dict[str, int | None] = {}
            for item in instrument.items:
                if rng.random() < 0.02:
                    answers[item.key] = None  # prefer not to answer
                    continue
                if survey is monthly:
                    mean = _vitality_level(item.dimension, window.number) + person.offset
                else:
                    mean = _safety_level(week, person.team) + person.offset
                keyed = min(7, max(1, round(rng.gauss(mean + nudges[item.key], 0.9))))
                answers[item.key] = 8 - keyed if item.reverse else keyed
            answer_sets.append((person, answers))
        await _fold(db, round_, instrument.key, answer_sets)
        if len(answering) >= community.comment_threshold:
            texts = VITALITY_COMMENTS if survey is monthly else DEMO_COMMENTS
            for text in rng.sample(texts, rng.randint(0, 2)):
                comment_id = uuid.uuid4()
                aad = associated_data("pending_comment", "body", f"{round_.id}/{comment_id}")
                db.add(PendingComment(id=comment_id, round_id=round_.id, instrument=instrument.key,
                                      group_key=pulse.COMMUNITY, body=keyring.seal(text, aad)))
        await db.flush()
        await lifecycle.close_round(db, keyring, round_.id, window.closes_at)
        if survey is weekly and window.number in ROUND_NOTES:
            await trend_figures.add_note(db, round_, ROUND_NOTES[window.number])
    await lifecycle.open_round(db, weekly, cadence_rules.window(weekly_cadence, PAST_ROUNDS + 1), keyring)


def _who_answers(rng: random.Random, present: list[_Person], holiday: bool, usual: float) -> list[_Person]:
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


async def _fold(db: AsyncSession, round_: Round, instrument: str, answer_sets: list[tuple[_Person, dict]]) -> None:
    """Fold a round's answers into its tallies (the community's and each counted team's) and note
    who answered in the ledger, as the answer path does for a batch of answers."""
    db.add_all([Participation(round_id=round_.id, person_id=person.person_id) for person, _answers in answer_sets])
    for row in await db.scalars(select(Tally).where(Tally.round_id == round_.id, Tally.instrument == instrument)):
        group = [answers for person, answers in answer_sets if row.group_key in (pulse.COMMUNITY, str(person.team_id))]
        folded = tally_rules.fold_all(msgspec.json.decode(row.data, type=tally_rules.Tally), group)
        row.data, row.respondents = msgspec.json.encode(folded), folded.respondents


async def demo_links(db: AsyncSession, community: Community) -> dict[str, str]:
    """Fresh one-time sign-in tokens for the demo facilitator and a demo member."""
    tokens = {}
    for role, (_name, email) in {"facilitator": FACILITATOR, "member": DEMO_MEMBER}.items():
        person = await db.scalar(select(Person).where(Person.email == email))
        assert person is not None
        tokens[role] = await signin.issue_link(db, person.id, community.id)
    return tokens
