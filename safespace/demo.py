"""The demo community: created once, found again on every later run. Its people, teams, stories
and objectives are here; its year of rounds and answers is in demo_rounds.py."""

from __future__ import annotations

import json
import os
import random
import uuid
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from zoneinfo import ZoneInfo

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from safespace import clock
from safespace.demo_rounds import PAST_ROUNDS, Member, year_of_rounds
from safespace.identity import services, signin
from safespace.identity.models import Community, Person
from safespace.insights import objective_figures
from safespace.privacy.crypto import Keyring, associated_data
from safespace.stories import receipts
from safespace.stories.models import Reaction, Reply, Story

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
    people: list[Member] = []
    for team_name, members in [*TEAMS.items(), (None, WITHOUT_TEAM)]:
        team = await services.create_team(db, community.id, team_name) if team_name else None
        for display_name, email in members:
            person, _ = await services.get_or_create_person(db, email)
            person.display_name = display_name
            people.append(Member(person.id, team.id if team else None, team_name, LATE_JOINERS.get(email, 0)))
    await db.flush()
    await year_of_rounds(db, keyring, community, today, people)
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


async def demo_links(db: AsyncSession, community: Community) -> dict[str, str]:
    """Fresh one-time sign-in tokens for the demo facilitator and a demo member."""
    tokens = {}
    for role, (_name, email) in {"facilitator": FACILITATOR, "member": DEMO_MEMBER}.items():
        person = await db.scalar(select(Person).where(Person.email == email))
        assert person is not None
        tokens[role] = await signin.issue_link(db, person.id, community.id)
    return tokens
