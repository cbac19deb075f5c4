"""A community with an open pulse round, and members who can answer it over HTTP."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta

import httpx
import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from safespace import clock, schedule
from safespace.identity import signin
from safespace.identity.models import Person
from safespace.privacy.crypto import Keyring
from safespace.pulse import services
from safespace.pulse.answering import read_tally
from safespace.pulse.models import Round, Tally
from surveys import tally as tally_rules
from surveys.instrument import builtin_instruments
from tests.helpers import World, make_community, session_csrf

PS = builtin_instruments()["psychological_safety"]


@dataclass
class Pulse:
    world: World
    survey_id: uuid.UUID
    round: Round
    keyring: Keyring
    sessionmaker: async_sessionmaker[AsyncSession]

    @property
    def url(self) -> str:
        return f"/c/{self.world.community.id}/rounds/{self.round.id}"

    async def tick(self, moment: datetime) -> schedule.TickReport:
        return await schedule.tick(self.sessionmaker, self.keyring, None, moment=moment)


def answers(value: int = 5, comment: str | None = None, **overrides: str) -> dict[str, str]:
    form = {f"psychological_safety.{key}": str(value) for key in PS.item_keys}
    if comment is not None:
        form["psychological_safety.comment"] = comment
    return form | overrides


async def session_cookie(db: AsyncSession, email: str) -> str:
    person = await db.scalar(select(Person).where(Person.email == email))
    token = await signin.start_session(db, person.id, None)
    await db.commit()
    return token


async def post_as(client: httpx.AsyncClient, session: str, url: str, form: dict[str, str]) -> httpx.Response:
    """POST a form as one member, with that member's session and a valid CSRF pair."""
    token = session_csrf(client, session)  # the session's own CSRF token
    return await client.post(
        url,
        data=form | {"_csrf_token": token},
        headers={"cookie": f"safespace_session={session}; safespace_csrf={token}"},
    )


async def open_pulse(db: AsyncSession, engine: AsyncEngine, settings, members: int = 6, k: int = 5) -> Pulse:
    emails = [f"m{i}@x.org" for i in range(members)]
    world = await make_community(db, teams={"Energy": emails}, k=k)
    today = clock.now().astimezone(__import__("zoneinfo").ZoneInfo("Europe/Madrid")).date()
    form = services.CadenceForm("weekly", today.weekday(), 1, 3, today.isoformat())
    survey = await services.create_survey(db, world.community.id, "Europe/Madrid", "Pulse", ["psychological_safety"], form)
    await db.commit()
    keyring = Keyring.load(settings.encryption_key_path)
    sessionmaker = async_sessionmaker(engine, expire_on_commit=False)
    report = await schedule.tick(sessionmaker, keyring, None, moment=clock.now())
    assert report.opened == 1
    round_ = await db.scalar(select(Round).where(Round.survey_id == survey.id))
    return Pulse(world, survey.id, round_, keyring, sessionmaker)


@pytest.fixture
async def pulse(db: AsyncSession, engine: AsyncEngine, settings) -> Pulse:
    return await open_pulse(db, engine, settings)


async def community_tally(db: AsyncSession, pulse: Pulse) -> tally_rules.Tally:
    """The round's community tally as it stands (sealed under the round's key while it is open)."""
    row = await db.scalar(select(Tally.data).where(Tally.round_id == pulse.round.id, Tally.group_key == "community"))
    return read_tally(pulse.keyring, pulse.round.id, PS.key, "community", row)


def after_close(pulse: Pulse) -> datetime:
    return pulse.round.closes_at + timedelta(seconds=1)
