"""The demo community: created once, found again on every later run."""

from __future__ import annotations

import json
import os
import random
import uuid
from dataclasses import dataclass
from datetime import date, timedelta
from zoneinfo import ZoneInfo

import msgspec
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from safespace import clock
from safespace.identity import services, signin
from safespace.identity.models import Community, Membership, Person
from safespace.insights import objective_figures, trend_figures
from safespace.privacy.crypto import Keyring, associated_data
from safespace.pulse import lifecycle
from safespace.pulse import services as pulse
from safespace.pulse.models import Participation, PendingComment, Tally
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
TEAMS = {
    "Energy": [
        ("Ines Duarte", "ines@climate.example"),
        ("Tomás Rivera", "tomas@climate.example"),
        ("Kwame Asante", "kwame@climate.example"),
        ("Lena Fischer", "lena@climate.example"),
        ("Priya Natarajan", "priya@climate.example"),
        ("Jonas Berg", "jonas@climate.example"),
        ("Aiko Tanaka", "aiko@climate.example"),
    ],
    "Circular economy": [
        ("Sofia Lindqvist", "sofia@climate.example"),
        ("Mateo Gómez", "mateo@climate.example"),
        ("Chloe Martin", "chloe@climate.example"),
        ("Daniel Okoro", "daniel@climate.example"),
        ("Hana Novak", "hana@climate.example"),
    ],
}
DEMO_MEMBER = TEAMS["Energy"][0]


SURVEY_TITLE = "Weekly pulse"
PAST_ROUNDS = 12
DEMO_COMMENTS = [
    "Say thank you when someone admits a mistake in the weekly call.",
    "Facilitators could share their own failures first.",
    "Fewer people in the review meetings; it is hard to speak up in front of thirty people.",
    "Keep the monthly 'what went wrong' session, it really helps.",
    "Answer questions in the forum faster so newcomers feel welcome.",
    "Make it normal to say 'I don't know' in meetings.",
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
]


DEMO_REPLIES = [
    "Same here. What helped us was a short checklist before every public meeting.",
    "Thank you for writing this down; I am about to make the same mistake.",
    "We had this too. Asking one person outside the team to read it first caught most of it.",
    "Could you share the template you use now?",
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
    for team_name, people in TEAMS.items():
        team = await services.create_team(db, community.id, team_name)
        for display_name, email in people:
            person, _ = await services.get_or_create_person(db, email)
            person.display_name = display_name
            services.add_membership(db, community.id, person.id, team.id, "active")
    await db.flush()
    today = today or clock.now().astimezone(ZoneInfo(community.time_zone)).date()
    await _pulse_history(db, keyring, community, today)
    await _stories(db, keyring, community, today)
    await objective_figures.add_objective(
        db, community, "Everyone feels able to raise a problem", "psychological_safety", "5.5",
        (today + timedelta(days=120)).isoformat(),
    )  # fmt: skip
    await objective_figures.add_objective(
        db, community, "Most of us answer every pulse", "response_rate", "85", (today + timedelta(days=90)).isoformat()
    )
    return Demo(community, created=True)


async def _stories(db: AsyncSession, keyring: Keyring, community: Community, today: date) -> None:
    """Eight released stories in three weekly batches, written as good failure stories read."""
    for batch, (start, end) in enumerate([(0, 3), (3, 6), (6, 8)]):
        day = today - timedelta(weeks=3 - batch)
        for position, (title, happened, learned, differently, tags) in enumerate(DEMO_STORIES[start:end]):
            story_id = uuid.uuid4()
            locator, salt, hashed = receipts.seal(receipts.new_code())  # nobody holds these codes
            text = {"title": title, "happened": happened, "learned": learned, "differently": differently}
            db.add(Story(id=story_id, community_id=community.id, status="released", released_on=day, position=position,
                         tags=tags, wants_advice=batch == 2, body=keyring.seal(json.dumps(text), associated_data("story", "body", story_id)),
                         receipt_locator=locator, receipt_salt=salt, receipt_hash=hashed))
            await db.flush()
            rng = random.Random(f"{batch}-{position}")
            for kind in ("been_there", "helps_me", "thank_you"):
                for _i in range(rng.randint(0, 6)):  # demo reactions: random markers, nobody's
                    db.add(Reaction(story_id=story_id, kind=kind, month=day.strftime("%Y-%m"), marker=os.urandom(32)))
            for reply_position, reply_text in enumerate(rng.sample(DEMO_REPLIES, rng.randint(0, 2))):
                reply_id = uuid.uuid4()
                db.add(Reply(id=reply_id, story_id=story_id, status="released", released_on=day + timedelta(days=7),
                             position=reply_position, body=keyring.seal(reply_text, associated_data("reply", "body", reply_id))))
    await db.flush()


HOLIDAY_ROUND = 3
ROUND_NOTES = {
    HOLIDAY_ROUND: "Holiday week: most of us were away",
    7: "Monthly failure-sharing sessions began",
}


async def _pulse_history(db: AsyncSession, keyring: Keyring, community: Community, today: date) -> None:
    """A weekly survey with 12 closed rounds (trust rising after week 6) and one open round.

    The past answers are folded into tallies exactly as real ones are, from a seeded generator;
    they are never stored one by one.
    """
    start = today - timedelta(weeks=PAST_ROUNDS)
    form = pulse.CadenceForm("weekly", today.weekday(), 1, 3, start.isoformat())
    survey = await pulse.create_survey(db, community.id, community.time_zone, SURVEY_TITLE, ["psychological_safety"], form)
    cadence = pulse.survey_cadence(survey)
    instrument = builtin_instruments()["psychological_safety"]
    members = list(
        await db.scalars(select(Membership).where(Membership.community_id == community.id, Membership.role == "member"))
    )
    rng = random.Random(2026)
    for number in range(1, PAST_ROUNDS + 1):
        window = cadence_rules.window(cadence, number)
        round_ = await lifecycle.open_round(db, survey, window, keyring, token_key_bits=None)  # closed below
        level = 4.2 + (0.13 * (number - 6) if number > 6 else 0.0) + rng.uniform(-0.15, 0.15)
        # One holiday week: too few answered, so the round shows as a labelled gap, not a zero.
        answering = rng.sample(members, 4 if number == HOLIDAY_ROUND else rng.randint(9, len(members)))
        for membership in answering:
            answers = {}
            for item in instrument.items:
                if rng.random() < 0.04:
                    answers[item.key] = None  # prefer not to answer
                    continue
                keyed = min(7, max(1, round(rng.gauss(level, 1.1))))
                answers[item.key] = 8 - keyed if item.reverse else keyed
            await _fold(db, round_, membership, answers)
        if len(answering) >= 10:
            for text in rng.sample(DEMO_COMMENTS, 2):
                comment_id = uuid.uuid4()
                aad = associated_data("pending_comment", "body", f"{round_.id}/{comment_id}")
                db.add(PendingComment(id=comment_id, round_id=round_.id, instrument=instrument.key,
                                      group_key=pulse.COMMUNITY, body=keyring.seal(text, aad)))
        await db.flush()
        await lifecycle.close_round(db, keyring, round_.id, window.closes_at)
        if number in ROUND_NOTES:
            await trend_figures.add_note(db, round_, ROUND_NOTES[number])
    await lifecycle.open_round(db, survey, cadence_rules.window(cadence, PAST_ROUNDS + 1), keyring)


async def _fold(db: AsyncSession, round_, membership: Membership, answers: dict) -> None:  # noqa: ANN001
    db.add(Participation(round_id=round_.id, person_id=membership.person_id))
    groups = [pulse.COMMUNITY, str(membership.team_id)]
    for row in await db.scalars(select(Tally).where(Tally.round_id == round_.id, Tally.group_key.in_(groups))):
        folded = tally_rules.fold(msgspec.json.decode(row.data, type=tally_rules.Tally), answers)
        row.data, row.respondents = msgspec.json.encode(folded), folded.respondents


async def demo_links(db: AsyncSession, community: Community) -> dict[str, str]:
    """Fresh one-time sign-in tokens for the demo facilitator and a demo member."""
    tokens = {}
    for role, (_name, email) in {"facilitator": FACILITATOR, "member": DEMO_MEMBER}.items():
        person = await db.scalar(select(Person).where(Person.email == email))
        assert person is not None
        tokens[role] = await signin.issue_link(db, person.id, community.id)
    return tokens
