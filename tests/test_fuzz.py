"""Schemathesis against /schema/openapi.json: no operation answers 500 or breaks its documented schema.

Every operation of the API is fuzzed against a community with data (teams, a survey with a closed
and an open round, released stories), by its facilitator, a member, a deactivated member and the
facilitator of another community, with ids drawn from that community as well as random ones,
valid requests and invalid ones. The anonymous token routes are fuzzed without
the session (they refuse a cookie). `make fuzz` runs the same with FUZZ_EXAMPLES=1000.
"""

from __future__ import annotations

import asyncio
import os
import re
import uuid
from collections.abc import Callable
from datetime import timedelta

import httpx
import hypothesis
import pytest
import schemathesis
from hypothesis import HealthCheck
from hypothesis import strategies as st
from schemathesis.checks import not_a_server_error
from schemathesis.generation import GenerationMode
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)
from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession

from safespace import clock, schedule
from safespace.app import ANONYMOUS
from safespace.checkin import services as checkins
from safespace.identity.models import Membership, Person
from safespace.pulse.models import Round
from safespace.stories import services as stories
from safespace.stories.models import Story
from tests.conftest import BASE_URL
from tests.helpers import csrf, make_community, sign_in
from tests.safespace.insights.conftest import answered_round, form

# Examples per operation; the suite keeps both databases together under a minute.
EXAMPLES = int(os.environ.get("FUZZ_EXAMPLES", "12"))
CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance]
TEAMS = {"Energy": [f"e{i}@x.org" for i in range(6)], "Water": [f"w{i}@x.org" for i in range(5)]}


async def _fuzzed_community(client: httpx.AsyncClient, db: AsyncSession, engine: AsyncEngine, settings, caller: str) -> dict[str, list]:
    """The facilitator's community with a closed round, the next round open and released stories;
    the client signed in as `caller` (see CALLERS)."""
    answers = {email: form(2 + i % 4, comment="More time to prepare.") for i, email in enumerate([*TEAMS["Energy"], *TEAMS["Water"]])}
    closed = await answered_round(client, db, engine, settings, TEAMS, answers)
    community = closed.world.community
    report = await schedule.tick(closed.sessionmaker, closed.keyring, None, moment=closed.round.opens_at + timedelta(days=7, minutes=1))
    assert report.opened == 1
    open_round = await db.scalar(select(Round).where(Round.survey_id == closed.survey_id, Round.id != closed.round.id))
    for n in range(stories.BATCH_SIZE):  # a full batch goes out at the next tick
        text = stories.StoryText(f"Story {n}", "We announced it too late.", "Start earlier.", "Ask first.")
        await stories.store_story(db, closed.keyring, community.id, text, ["planning"], False, False)
    await db.commit()
    await schedule.tick(closed.sessionmaker, closed.keyring, None, moment=closed.round.opens_at + timedelta(days=7, minutes=2))
    assert await db.scalar(select(Story.id).where(Story.community_id == community.id, Story.status == "released"))
    members = list(await db.scalars(select(Membership.id).where(Membership.community_id == community.id, Membership.role == "member")))
    if caller == "deactivated member":
        person = await db.scalar(select(Person.id).where(Person.email == TEAMS["Water"][0]))
        await db.execute(update(Membership).where(Membership.person_id == person).values(status="deactivated"))
        await db.commit()
    if caller == "facilitator of another community":
        await make_community(db, name="Another community", facilitator="other@x.org")
    # An open meeting check-in, for the private-mode routes by join code.
    choices = await checkins.statement_choices(db, community.id)
    instrument = checkins.checkin_instrument(choices, list(choices)[:2], "", 5, "en")
    checkin = await checkins.start(db, community, instrument, "", clock.now(), 2)
    await db.commit()
    await sign_in(client, db, CALLERS[caller] or closed.world.facilitator)
    return {
        "code": [checkin.code, "ZZZZZZ"],
        "community_id": [community.id],
        "round_id": [closed.round.id, open_round.id],
        "team_id": list(closed.world.teams.values()),
        "membership_id": members,
        "survey": [closed.survey_id],
    }


def _strategy(operation, known: dict[str, list]) -> st.SearchStrategy:
    """Valid and invalid requests, with the community's own ids and with random ones."""
    names = [p.name for p in operation.path_parameters]
    ids = st.fixed_dictionaries({name: st.sampled_from(known[name]) for name in names})
    query = {"survey": str(known["survey"][0])} if any(p.name == "survey" for p in operation.query) else None

    def ours(mode: GenerationMode) -> st.SearchStrategy:
        return ids.flatmap(lambda path: operation.as_strategy(generation_mode=mode, path_parameters=path, query=query))

    # A third each: random ids mostly meet the same 404, so they get one branch between them.
    anywhere = st.one_of(operation.as_strategy(generation_mode=mode) for mode in GenerationMode)
    return st.one_of(ours(GenerationMode.POSITIVE), ours(GenerationMode.NEGATIVE), anywhere)


def _fuzz(operation, strategy: st.SearchStrategy, send: Callable) -> str | None:
    """Runs in a worker thread (Hypothesis is synchronous); `send` hands requests to the test's loop."""

    @hypothesis.settings(
        max_examples=EXAMPLES,
        deadline=None,
        database=None,
        derandomize="FUZZ_EXAMPLES" not in os.environ,  # the suite replays the same cases; `make fuzz` explores
        suppress_health_check=list(HealthCheck),
        phases=[hypothesis.Phase.generate, hypothesis.Phase.shrink],
        report_multiple_bugs=False,
    )
    @hypothesis.given(case=strategy)
    def run(case) -> None:
        case.validate_response(send(case), checks=CHECKS)

    try:
        run()
    except (Exception, BaseExceptionGroup) as exc:  # noqa: BLE001 - schemathesis' FailureGroup is a BaseExceptionGroup
        return f"{operation.label}: {exc}"
    return None


# Who sends the fuzzed requests (the anonymous token routes go without a session whoever it is):
# a 500 that only a member, a former member or a stranger can reach fails the build too.
CALLERS = {
    "facilitator": None,
    "member": TEAMS["Energy"][0],
    "deactivated member": TEAMS["Water"][0],
    "facilitator of another community": "other@x.org",
}


@pytest.mark.parametrize("caller", list(CALLERS))
async def test_api_answers_every_fuzzed_request_as_documented(client, db: AsyncSession, engine: AsyncEngine, settings, caller: str) -> None:
    known = await _fuzzed_community(client, db, engine, settings, caller)
    raw = (await client.get("/schema/openapi.json")).json()
    schema = schemathesis.openapi.from_dict(raw)
    loop = asyncio.get_running_loop()
    anonymous = httpx.AsyncClient(transport=httpx.ASGITransport(app=client.app), base_url=BASE_URL)  # type: ignore[attr-defined]

    async def request(case) -> httpx.Response:
        kwargs = case.as_transport_kwargs(base_url=BASE_URL)
        signed_in = not any(re.match(pattern, case.path) for pattern in ANONYMOUS)
        headers = {k: v for k, v in kwargs["headers"].items() if k.lower() != "cookie"}
        if signed_in:
            headers["x-csrftoken"] = csrf(client)
        body = {"json": kwargs["json"]} if "json" in kwargs else {"content": kwargs.get("data")}
        return await (client if signed_in else anonymous).request(
            kwargs["method"], kwargs["url"], params=kwargs.get("params"), headers=headers, **body
        )

    def send(case) -> httpx.Response:
        return asyncio.run_coroutine_threadsafe(request(case), loop).result()

    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) >= 20, "the schema lost its operations"
    failures = []
    for operation in operations:
        failure = await asyncio.to_thread(_fuzz, operation, _strategy(operation, known), send)
        if failure:
            failures.append(failure)
    await anonymous.aclose()
    assert not failures, "\n\n".join(failures)


TOKEN = {"key_id": str(uuid.uuid4()), "msg": "AA", "sig": "AA"}


@pytest.mark.parametrize(
    ("path", "body"),
    [
        ("/api/v1/answers", TOKEN | {"round_id": str(uuid.uuid4()), "answers": {}}),
        ("/api/v1/stories", TOKEN),
        ("/api/v1/replies", TOKEN | {"story_id": str(uuid.uuid4()), "reply": "Thank you."}),
        ("/api/v1/checkin-answers", TOKEN | {"answers": {"a.s1": "3"}}),
    ],
)
async def test_anonymous_routes_refuse_a_session_cookie(client, db: AsyncSession, path: str, body: dict) -> None:
    client.cookies.set("safespace_session", "any")
    response = await client.post(path, json=body)
    assert response.status_code == 400
    assert response.json()["title"] == "Sent with a session"
