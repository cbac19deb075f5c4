"""A community whose members answer a round over HTTP, then the round closes: the insights' raw material."""

from __future__ import annotations

import csv
import io
import json
import re
import uuid
from dataclasses import dataclass
from datetime import timedelta
from zoneinfo import ZoneInfo

import httpx
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from safespace import clock, schedule
from safespace.privacy.crypto import Keyring
from safespace.pulse import services
from safespace.pulse.models import Round
from tests.helpers import World, app_routes, make_community, url_for
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
    settings,
    teams: dict[str, list[str]],
    answers: dict[str, dict[str, str]],
    k: int = 5,
    close: bool = True,
) -> Closed:
    """Teams as given, a weekly survey with one open round; `answers` maps email -> form."""
    world = await make_community(db, teams=teams, k=k)
    today = clock.now().astimezone(ZoneInfo("Europe/Madrid")).date()
    cadence = services.CadenceForm("weekly", today.weekday(), 1, 3, today.isoformat())
    survey = await services.create_survey(db, world.community.id, "Europe/Madrid", "Pulse", ["psychological_safety"], cadence)
    await db.commit()
    keyring = Keyring.load(settings.encryption_key_path)
    sessionmaker = async_sessionmaker(engine, expire_on_commit=False)
    assert (await schedule.tick(sessionmaker, keyring, None, moment=clock.now())).opened == 1
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


# --- every page a facilitator can open, walked from the router ---------------------------------------


def route_values(closed: Closed, **more: object) -> dict[str, object]:
    """A value for every path and query parameter of the app's routes, from the built world.

    Ids the world does not hold (a note, a story...) are random UUIDs: those handlers answer 404."""
    world = closed.world
    return {
        "community_id": world.community.id,
        "round_id": closed.round.id,
        "survey_id": closed.survey_id,
        "survey": closed.survey_id,
        "team_id": next(iter(world.teams.values()), uuid.uuid4()),
        "code": "en",
        "token": "not-a-sign-in-token",
        "file_path": "safespace.css",
        "path": "no-such-schema-page",
        "provider_id": "no-such-provider",  # single sign-on: none is configured in these tests
    } | more


async def read_every_page(client: httpx.AsyncClient, values: dict[str, object]) -> dict[str, httpx.Response]:
    """GET every GET route of the app (found by walking its router, so a new page, export or API
    route is read without anyone listing it), filled with `values`: address -> response."""
    responses = {}
    for method, template in app_routes(client.app):
        if method == "GET":
            url = url_for(client.app, method, template, values)
            responses[url] = response = await client.get(url)
            assert response.status_code < 500, f"{url}: {response.status_code} {response.text[:300]}"
    return responses


def without_scale_legend(body: str) -> str:
    """A chart's colour legend names the ends of the scale (1.00, 7.00...): nobody's figures."""
    return re.sub(r'<g class="legend-item".*?</g>', "", body, flags=re.S)


def json_objects(body: str) -> list[dict]:
    """Every JSON object in a body, however deep ([] when the body is not JSON)."""
    try:
        data = json.loads(body)
    except ValueError:
        return []
    found, todo = [], [data]
    while todo:
        item = todo.pop()
        if isinstance(item, dict):
            found.append(item)
            todo.extend(item.values())
        elif isinstance(item, list):
            todo.extend(item)
    return found


def team_rows(body: str, team: str) -> list[dict]:
    """The rows about one team in any team grid of a JSON body."""
    return [item for item in json_objects(body) if "values" in item and item.get("name") == team]


def csv_rows(url: str, body: str) -> list[dict[str, str]]:
    return list(csv.DictReader(io.StringIO(body))) if url.split("?")[0].endswith(".csv") else []


def shown(body: str, figures: tuple[str, ...]) -> list[str]:
    """Which of these formatted figures a body shows (outside a chart's scale legend)."""
    return re.findall(r"(?<![\d.])(?:" + "|".join(re.escape(f) for f in figures) + r")(?![\d])", without_scale_legend(body))


def assert_teams_hidden(bodies: dict[str, str], teams: tuple[str, ...], means: tuple[str, ...], secret: str) -> None:
    """These teams' figures appear nowhere: every team row in JSON and in CSV is empty with a
    reason, no body shows one of their own means, and their comments never sit on a team page.
    Some JSON grid must name the teams (hidden), else the check proved nothing."""
    named = 0
    for url, body in bodies.items():
        for team in teams:
            rows = team_rows(body, team)
            named += len(rows)
            assert all(v is None for row in rows for v in row["values"]), (url, rows)
            assert all(why for row in rows for why in row["empty_because"]), (url, rows)
        rows = [r for r in csv_rows(url, body) if r.get("team") in teams]
        assert all(r["value"] == "" and r["empty_because"] for r in rows), (url, rows)
        assert not shown(body, means), f"{url} shows {shown(body, means)}: a hidden team's own mean"
        if "/teams" in url:
            assert secret not in body, url
    assert named, "no team grid named the teams: the attack would prove nothing"


def assert_open_round_hidden(bodies: dict[str, str], round_id: uuid.UUID, means: tuple[str, ...], comment: str) -> None:
    """Nothing of an open round shows but its response rate: no score, no mean, no comment, and
    every JSON answer about it (results, team grids) is empty."""
    for url, body in bodies.items():
        assert comment not in body, url
        assert not shown(body, means), f"{url} shows {shown(body, means)} while the round is open"
        for item in json_objects(body):
            if str(round_id) in (str(item.get("round_id")), str(item.get("id"))) and "instruments" in item:
                assert item["status"] == "open" and item["instruments"] == [] and item["respondents"] is None, (url, item)
            assert not (str(round_id) in url and "values" in item), f"{url}: a team row of a round still open: {item}"
