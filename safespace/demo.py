"""The demo community: created once, found again on every later run."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from safespace.identity import services, signin
from safespace.identity.models import Community, Person

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


@dataclass
class Demo:
    community: Community
    created: bool


async def ensure_demo(db: AsyncSession) -> Demo:
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
    return Demo(community, created=True)


async def demo_links(db: AsyncSession, community: Community) -> dict[str, str]:
    """Fresh one-time sign-in tokens for the demo facilitator and a demo member."""
    tokens = {}
    for role, (_name, email) in {"facilitator": FACILITATOR, "member": DEMO_MEMBER}.items():
        person = await db.scalar(select(Person).where(Person.email == email))
        assert person is not None
        tokens[role] = await signin.issue_link(db, person.id, community.id)
    return tokens
