"""The insights pages, exports and API, attacked as a curious facilitator would (P1–P3).

Every GET route of the app (insights pages, exports and API, and every other page) is found by
walking the app's router, so a new page or export is attacked without anyone listing it here.
tests/safespace/test_routes.py runs the same checks on one world with hidden teams and an open
round at once.
"""

from __future__ import annotations

import json
import re

import httpx
from litestar import Litestar
from sqlalchemy.ext.asyncio import AsyncSession

from tests.helpers import app_routes, make_community, post_form, sign_in, url_for
from tests.safespace.insights.conftest import (
    Closed,
    answered_round,
    assert_open_round_hidden,
    assert_teams_hidden,
    csv_rows,
    form,
    read_every_page,
    route_values,
    team_rows,
)
from tests.safespace.pulse.conftest import post_as, session_cookie

INSIGHTS = ("/c/{community_id:uuid}/insights", "/api/v1/communities/{community_id:uuid}/insights")


def insight_routes(app: Litestar) -> list[tuple[str, str]]:
    """(method, path template) of every insights page, export and API route."""
    return [(method, path) for method, path in app_routes(app) if path.startswith(INSIGHTS)]


def fill(app: Litestar, path: str, closed: Closed, method: str = "GET") -> str:
    return url_for(app, method, path, route_values(closed))


async def everything_a_facilitator_can_read(client: httpx.AsyncClient, closed: Closed) -> dict[str, str]:
    """GET every GET route of the app, insights or not: address -> body. An action is planned on
    the round's first statement first (once it is closed), so its page, which follows the
    statement, is read too."""
    base = f"/c/{closed.world.community.id}/insights/actions"
    await client.get(f"{base}/")
    statement = closed.round.instruments[0]["items"][0]["key"]
    about = {"round": str(closed.round.id), "instrument": closed.round.instruments[0]["key"], "item": statement}
    about = about if closed.round.closed else {"round": "", "instrument": "", "item": ""}  # only released results
    planned = (await client.get(f"/api/v1/communities/{closed.world.community.id}/insights/actions")).json()
    if planned:  # read twice in one test: the same action
        action_id = planned[0]["id"]
    else:
        made = await post_form(client, f"{base}/", about | {"title": "Act on it", "owner": "", "due_on": ""})
        assert made.status_code == 303, made.text
        action_id = made.headers["location"].rsplit("/", 1)[1]
    responses = await read_every_page(client, route_values(closed, action_id=action_id))
    for url, response in responses.items():
        if "/insights" in url:  # every insights page and export opens on a real round and survey
            assert response.status_code == 200, f"{url}: {response.status_code} {response.text[:300]}"
    return {url: response.text for url, response in responses.items()}


def uncovered(community: dict[str, int], shown_teams: list[dict[str, int]]) -> dict[str, int]:
    return {key: n - sum(t.get(key, 0) for t in shown_teams) for key, n in community.items()}


# --- a team of 4 in a community of 12 ---------------------------------------------------------------


async def test_a_team_of_four_appears_nowhere_and_cannot_be_differenced(client, db: AsyncSession, engine, settings) -> None:
    small = [f"small{i}@x.org" for i in range(4)]
    big = [f"big{i}@x.org" for i in range(8)]
    answers = {e: form(1, comment=f"the small team's secret {i}") for i, e in enumerate(small)}
    answers |= {e: form(6) for e in big}
    closed = await answered_round(client, db, engine, settings, {"Small": small, "Big": big}, answers)
    await sign_in(client, db, "fac@x.org")
    bodies = await everything_a_facilitator_can_read(client, closed)
    assert len(bodies) >= 12, sorted(bodies)

    # The community's own result is there (12 answered): the attack is not defeated by emptiness.
    results = json.loads(bodies[fill(client.app, "/c/{community_id:uuid}/insights/rounds/{round_id:uuid}/results.json", closed)])
    assert results["respondents"] == 12
    ps = results["instruments"][0]
    assert ps["score"]["mean"] > 1.0
    teams_csv = bodies[fill(client.app, "/c/{community_id:uuid}/insights/rounds/{round_id:uuid}/teams.csv", closed)]
    assert csv_rows("teams.csv", teams_csv), "the teams export is empty: the attack would prove nothing"
    # Teams: the small team (below k) and the big one (12 - 8 = 4 would be the small team) are
    # both hidden in every output: HTML, CSV, JSON and API alike. The small team's answers were
    # all 1 and the big team's 6: a mean of exactly 1.00 or 6.00 would be one of the teams'.
    # Comments of the round (12 >= threshold 10) are released for the community, never per team.
    assert_teams_hidden(bodies, ("Small", "Big"), ("1.00", "6.00"), "secret")


async def test_teams_of_three_and_nine_are_both_hidden(client, db: AsyncSession, engine, settings) -> None:
    three = [f"three{i}@x.org" for i in range(3)]
    nine = [f"nine{i}@x.org" for i in range(9)]
    answers = {e: form(2) for e in three} | {e: form(5) for e in nine}
    closed = await answered_round(client, db, engine, settings, {"Three": three, "Nine": nine}, answers)
    await sign_in(client, db, "fac@x.org")
    response = await client.get(f"/api/v1/communities/{closed.world.community.id}/insights/rounds/{closed.round.id}/teams")
    assert response.status_code == 200
    for team in ("Three", "Nine"):
        assert all(v is None for row in team_rows(response.text, team) for v in row["values"])


async def test_one_item_few_answered_hides_the_sibling_too(client, db: AsyncSession, engine, settings) -> None:
    """Teams of 6 and 6: in team A two skip a statement, leaving 4 answers to it. Showing team B's
    answers to that statement would give A's four by subtraction, so both teams are hidden."""
    a = [f"a{i}@x.org" for i in range(6)]
    b = [f"b{i}@x.org" for i in range(6)]
    skipped = ("ps_mistakes",)
    item = next(iter(skipped))
    answers = {e: form(3, skip=skipped if i < 2 else ()) for i, e in enumerate(a)} | {e: form(5) for e in b}
    closed = await answered_round(client, db, engine, settings, {"A": a, "B": b}, answers)
    await sign_in(client, db, "fac@x.org")
    grids = (await client.get(f"{closed.base}/rounds/{closed.round.id}/teams.json")).json()
    assert item in grids[0]["column_keys"], grids[0]["column_keys"]
    for team in ("A", "B"):
        (row,) = [r for r in grids[0]["rows"] if r["name"] == team]
        assert all(v is None for v in row["values"]), (team, row)
    # The statements everyone answered do not make a team visible: a team is shown whole or not at all.
    assert len(grids[0]["rows"][0]["values"]) == len(grids[0]["column_keys"])


async def test_shown_teams_never_leave_a_small_remainder(client, db: AsyncSession, engine, settings) -> None:
    """Three teams of 5, 6 and 7 and two members without a team: whatever is shown, the community
    minus the shown teams is 0 or at least k people for every statement."""
    teams = {"Five": [f"f{i}@x.org" for i in range(5)], "Six": [f"s{i}@x.org" for i in range(6)], "Seven": [f"v{i}@x.org" for i in range(7)]}
    answers = {e: form(2 + i % 5) for members in teams.values() for i, e in enumerate(members)}
    closed = await answered_round(client, db, engine, settings, teams, answers)
    await sign_in(client, db, "fac@x.org")
    grids = (await client.get(f"{closed.base}/rounds/{closed.round.id}/teams.json")).json()
    shown = [row["name"] for row in grids[0]["rows"] if any(v is not None for v in row["values"])]
    sizes = {name: len(members) for name, members in teams.items()}
    remainder = sum(sizes.values()) - sum(sizes[name] for name in shown)
    assert remainder == 0 or remainder >= 5, (shown, remainder)
    assert shown, "every team hidden: the rule would be trivially safe and useless"


# --- an open round ----------------------------------------------------------------------------------


async def test_an_open_round_shows_only_the_response_rate(client, db: AsyncSession, engine, settings) -> None:
    members = [f"m{i}@x.org" for i in range(8)]
    answers = {e: form(4 + i % 3, comment="live thought") for i, e in enumerate(members[:6])}
    closed = await answered_round(client, db, engine, settings, {"Team": members}, answers, close=False)
    await sign_in(client, db, "fac@x.org")
    trend = (await client.get(f"/api/v1/communities/{closed.world.community.id}/insights/trend?survey={closed.survey_id}")).json()
    assert trend["open_round"]["response_rate"] == 6 / 9  # 6 of 8 members and the facilitator
    assert all(not i["rounds"] for i in trend["instruments"])
    bodies = await everything_a_facilitator_can_read(client, closed)
    assert_open_round_hidden(bodies, closed.round.id, ("4.00", "5.00", "6.00", "4.83", "5.17"), "live thought")
    results = (await client.get(f"{closed.base}/rounds/{closed.round.id}/results.json")).json()
    assert results["status"] == "open" and results["instruments"] == [] and results["respondents"] is None


async def test_results_never_change_after_release(client, db: AsyncSession, engine, settings) -> None:
    members = [f"m{i}@x.org" for i in range(7)]
    closed = await answered_round(client, db, engine, settings, {"Team": members}, {e: form(5) for e in members[:5]})
    await sign_in(client, db, "fac@x.org")
    before = await everything_a_facilitator_can_read(client, closed)
    url = f"/c/{closed.world.community.id}/rounds/{closed.round.id}"
    for email in members[5:]:  # the two who did not answer try now
        response = await post_as(client, await session_cookie(db, email), url, form(1))
        assert response.status_code == 409
    after = await everything_a_facilitator_can_read(client, closed)
    assert {p: strip_tokens(b) for p, b in before.items() if released(p)} == {p: strip_tokens(b) for p, b in after.items() if released(p)}


def released(url: str) -> bool:
    """The pages and exports of released figures (others, like home, change with every visit)."""
    return any(part in url for part in ("/insights", "/results", "/summary"))


def strip_tokens(body: str) -> str:
    return re.sub(r'name="_csrf_token" value="[^"]*"', "", body)


# --- who may read ------------------------------------------------------------------------------------


async def test_members_get_403_and_other_facilitators_404(client, db: AsyncSession, engine, settings) -> None:
    members = [f"m{i}@x.org" for i in range(6)]
    closed = await answered_round(client, db, engine, settings, {"Team": members}, {e: form(5) for e in members})
    routes = insight_routes(client.app)
    assert len(routes) >= 20, routes
    await make_community(db, name="Elsewhere", facilitator="elsewhere@x.org")

    async def statuses(email: str) -> dict[tuple[str, str], int]:
        client.cookies.clear()
        await sign_in(client, db, email)
        found = {}
        for method, path in routes:
            url = fill(client.app, path, closed, method)
            if method == "GET":
                found[(method, path)] = (await client.get(url)).status_code
            else:
                found[(method, path)] = (await post_form(client, url, {"title": "x", "note": "x"})).status_code
        return found

    assert set((await statuses("m0@x.org")).values()) == {403}
    assert set((await statuses("elsewhere@x.org")).values()) == {404}
    client.cookies.clear()
    for method, path in routes:  # signed out
        url = fill(client.app, path, closed, method)
        response = await (client.get(url) if method == "GET" else post_form(client, url, {}))
        assert response.status_code in (302, 401), (path, response.status_code)
