"""A community whose members answer a round over HTTP, then the round closes: the insights' raw material."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import timedelta
from zoneinfo import ZoneInfo

import httpx
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from safespace.identity.services import now
from safespace.privacy.crypto import Keyring
from safespace.pulse import schedule, services
from safespace.pulse.models import Round
from tests.helpers import World, make_community
from tests.safespace.pulse.conftest import PS, post_as, session_cookie


@dataclass
class Closed:
    world: World
    survey_id: uuid.UUID
    round: Round
    keyring: Keyring
    sessionmaker: async_sessionmaker[AsyncSession]

    @property
    def base(self) -> str:
        return f"/c/{self.world.community.id}/insights"


def form(value: int, comment: str | None = None, skip: tuple[str, ...] = ()) -> dict[str, str]:
    """One member's answers: every psychological-safety item at `value`, some skipped."""
    answers = {f"psychological_safety.{key}": ("" if key in skip else str(value)) for key in PS.item_keys}
    return answers | ({"psychological_safety.comment": comment} if comment else {})


async def answered_round(
    client: httpx.AsyncClient,
    db: AsyncSession,
    engine: AsyncEngine,
    settings,  # noqa: ANN001
    teams: dict[str, list[str]],
    answers: dict[str, dict[str, str]],
    k: int = 5,
    close: bool = True,
) -> Closed:
    """Teams as given, a weekly survey with one open round; `answers` maps email -> form."""
    world = await make_community(db, teams=teams, k=k)
    today = now().astimezone(ZoneInfo("Europe/Madrid")).date()
    cadence = services.CadenceForm("weekly", today.weekday(), 1, 3, today.isoformat())
    survey = await services.create_survey(db, world.community.id, "Europe/Madrid", "Pulse", ["psychological_safety"], cadence)
    await db.commit()
    keyring = Keyring.load(settings.encryption_key_path)
    sessionmaker = async_sessionmaker(engine, expire_on_commit=False)
    assert (await schedule.tick(sessionmaker, keyring, None, moment=now())).opened == 1
    round_ = await db.scalar(select(Round).where(Round.survey_id == survey.id))
    url = f"/c/{world.community.id}/rounds/{round_.id}"
    for email, values in answers.items():
        response = await post_as(client, await session_cookie(db, email), url, values)
        assert response.status_code == 303, response.text
    if close:
        report = await schedule.tick(sessionmaker, keyring, None, moment=round_.closes_at + timedelta(seconds=1))
        assert report.closed == 1
        await db.refresh(round_)
    return Closed(world, survey.id, round_, keyring, sessionmaker)
