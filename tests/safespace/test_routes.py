"""Every route of the app, found by walking its router: who may call it, and what a facilitator
can learn from it. A new route fails the authorisation matrix until it is given a rule below, and
is read by the disclosure walk without anyone listing it."""

from __future__ import annotations

import html
from datetime import timedelta
from urllib.parse import quote
from zoneinfo import ZoneInfo

import httpx
from litestar.handlers import HTTPRouteHandler
from litestar.utils.sync import AsyncCallable
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession

from safespace import clock, schedule
from safespace.app import create_app
from safespace.identity import members as membership_rules
from safespace.identity.models import Membership, Person
from safespace.insights import objective_figures, trend_figures
from safespace.pulse import services as pulse
from safespace.pulse.models import Round
from safespace.stories import services as stories
from safespace.stories.models import Story
from tests.helpers import api, app_routes, make_community, minimal_body, post_form, sign_in, url_for
from tests.safespace.insights.conftest import (
    answered_round,
    assert_open_round_hidden,
    assert_teams_hidden,
    csv_rows,
    form,
    read_every_page,
    route_values,
)
from tests.safespace.pulse.conftest import post_as, session_cookie

# --- the rules ---------------------------------------------------------------------------------------

PUBLIC = "public"  # anyone, signed in or not
SIGNED_IN = "signed in"  # any session; not about one community
MEMBER = "member"  # active members of the community in the path (facilitators are members too)
FACILITATOR = "facilitator"  # the community's facilitators
ANONYMOUS = "anonymous token route"  # no session is read; a request that carries one is refused

C = "/c/{community_id:uuid}"
API = "/api/v1/communities/{community_id:uuid}"

# Every route of the app, by (method, path template). A route missing here fails the matrix: decide
# who may call it and add it. An entry for a route that no longer exists fails too.
RULES: dict[tuple[str, str], str] = {
    # health, sign-in, language, static files, the OpenAPI description
    ("GET", "/healthz"): PUBLIC,
    ("GET", "/readyz"): PUBLIC,
    ("GET", "/privacy"): PUBLIC,  # what is stored and who sees what, for members and visitors alike
    ("GET", "/"): PUBLIC,  # redirects: to sign-in, or to the viewer's community
    ("GET", "/signin"): PUBLIC,
    ("POST", "/signin"): PUBLIC,
    ("GET", "/signin/{token:str}"): PUBLIC,
    ("POST", "/signin/{token:str}"): PUBLIC,
    ("POST", "/signout"): PUBLIC,
    ("GET", "/signin/sso/{provider_id:str}"): PUBLIC,  # single sign-on: 404 for a provider not configured
    ("GET", "/signin/sso/{provider_id:str}/callback"): PUBLIC,
    ("GET", "/language/{code:str}"): PUBLIC,
    ("GET", "/static/{file_path:path}"): PUBLIC,
    ("GET", "/schema"): PUBLIC,
    ("GET", "/schema/openapi.json"): PUBLIC,
    ("GET", "/schema/openapi.yaml"): PUBLIC,
    ("GET", "/schema/openapi.yml"): PUBLIC,
    ("GET", "/schema/{path:str}"): PUBLIC,
    # one's own profile and communities
    ("GET", "/profile"): SIGNED_IN,
    ("POST", "/profile"): SIGNED_IN,
    ("POST", "/profile/language"): SIGNED_IN,
    ("POST", "/profile/delete"): SIGNED_IN,  # the walk's empty form does not confirm: nobody is deleted
    ("GET", "/communities"): SIGNED_IN,
    ("POST", "/communities"): SIGNED_IN,
    ("GET", "/communities/new"): SIGNED_IN,
    ("POST", "/communities/{community_id:uuid}/accept"): SIGNED_IN,  # only one's own invitation (404 otherwise)
    ("GET", "/api/v1/communities"): SIGNED_IN,
    ("POST", "/api/v1/communities"): SIGNED_IN,
    # a community's pages for its members
    ("GET", C): MEMBER,
    ("GET", f"{C}/rounds/{{round_id:uuid}}"): MEMBER,
    ("POST", f"{C}/rounds/{{round_id:uuid}}"): MEMBER,
    ("GET", f"{C}/rounds/{{round_id:uuid}}/results"): MEMBER,
    ("GET", f"{C}/summary"): MEMBER,
    ("GET", f"{C}/stories"): MEMBER,
    ("POST", f"{C}/stories"): MEMBER,
    ("GET", f"{C}/stories/new"): MEMBER,
    ("POST", f"{C}/stories/check"): MEMBER,
    ("GET", f"{C}/stories/mine"): MEMBER,
    # My story with a receipt code: the code is the credential, no session is read.
    ("GET", "/stories/mine"): PUBLIC,
    ("POST", "/stories/mine"): PUBLIC,
    ("POST", "/stories/mine/edit"): PUBLIC,
    ("POST", "/stories/mine/withdraw"): PUBLIC,
    ("POST", f"{C}/stories/{{story_id:uuid}}/react"): MEMBER,
    ("POST", f"{C}/stories/{{story_id:uuid}}/reply"): MEMBER,
    ("POST", f"{C}/stories/{{story_id:uuid}}/flag"): MEMBER,
    ("GET", API): MEMBER,
    ("GET", f"{API}/rounds/{{round_id:uuid}}/results"): MEMBER,
    ("GET", f"{API}/rounds/{{round_id:uuid}}/token-key"): MEMBER,
    ("GET", f"{API}/rounds/{{round_id:uuid}}/keys"): MEMBER,
    ("POST", f"{API}/rounds/{{round_id:uuid}}/token"): MEMBER,
    ("GET", f"{API}/story-tokens/key"): MEMBER,
    ("POST", f"{API}/story-tokens"): MEMBER,
    # answers, stories and replies sent with a token and nothing else
    ("POST", "/api/v1/answers"): ANONYMOUS,
    ("POST", "/api/v1/stories"): ANONYMOUS,
    ("POST", "/api/v1/replies"): ANONYMOUS,
    # Token keys for anyone, no session read: the browser checks its key against them.
    ("GET", "/api/v1/token-keys/rounds/{round_id:uuid}"): PUBLIC,
    ("GET", "/api/v1/token-keys/communities/{community_id:uuid}"): PUBLIC,
    # facilitators: the community, its teams and members
    ("GET", f"{C}/settings"): FACILITATOR,
    ("POST", f"{C}/settings"): FACILITATOR,
    ("GET", f"{C}/notifications"): FACILITATOR,  # the facilitator's own choice of mails
    ("POST", f"{C}/notifications"): FACILITATOR,
    ("POST", f"{C}/settings/chat"): FACILITATOR,
    ("POST", f"{C}/settings/retention"): FACILITATOR,
    ("POST", f"{C}/settings/chat/remove"): FACILITATOR,
    ("POST", f"{C}/settings/chat/test"): FACILITATOR,
    ("GET", f"{C}/webhooks"): FACILITATOR,
    ("POST", f"{C}/webhooks"): FACILITATOR,
    ("POST", f"{C}/webhooks/{{endpoint_id:uuid}}/rotate"): FACILITATOR,
    ("POST", f"{C}/webhooks/{{endpoint_id:uuid}}/remove"): FACILITATOR,
    ("POST", f"{C}/webhooks/{{endpoint_id:uuid}}/test"): FACILITATOR,
    ("GET", f"{C}/teams"): FACILITATOR,
    ("POST", f"{C}/teams"): FACILITATOR,
    ("POST", f"{C}/teams/{{team_id:uuid}}"): FACILITATOR,
    ("GET", f"{C}/members"): FACILITATOR,
    ("POST", f"{C}/members"): FACILITATOR,
    ("POST", f"{C}/members/{{membership_id:uuid}}"): FACILITATOR,
    ("PATCH", API): FACILITATOR,
    ("GET", f"{API}/teams"): FACILITATOR,
    ("POST", f"{API}/teams"): FACILITATOR,
    ("PATCH", f"{API}/teams/{{team_id:uuid}}"): FACILITATOR,
    ("GET", f"{API}/members"): FACILITATOR,
    ("POST", f"{API}/members"): FACILITATOR,
    ("PATCH", f"{API}/members/{{membership_id:uuid}}"): FACILITATOR,
    # facilitators: surveys, instruments, story moderation
    ("GET", f"{C}/surveys"): FACILITATOR,
    ("POST", f"{C}/surveys"): FACILITATOR,
    ("POST", f"{C}/surveys/private-mode"): FACILITATOR,
    ("GET", f"{C}/surveys/{{survey_id:uuid}}"): FACILITATOR,
    ("POST", f"{C}/surveys/{{survey_id:uuid}}/pause"): FACILITATOR,
    ("POST", f"{C}/surveys/{{survey_id:uuid}}/resume"): FACILITATOR,
    ("POST", f"{C}/surveys/{{survey_id:uuid}}/schedule"): FACILITATOR,
    ("GET", f"{C}/surveys/{{survey_id:uuid}}/close-round"): FACILITATOR,
    ("POST", f"{C}/surveys/{{survey_id:uuid}}/close-round"): FACILITATOR,
    ("GET", f"{C}/surveys/{{survey_id:uuid}}/open-round"): FACILITATOR,
    ("POST", f"{C}/surveys/{{survey_id:uuid}}/open-round"): FACILITATOR,
    ("GET", f"{C}/instruments/new"): FACILITATOR,
    ("POST", f"{C}/instruments"): FACILITATOR,
    # meeting check-ins: the facilitator's side under the community ...
    ("GET", f"{C}/checkins"): FACILITATOR,
    ("POST", f"{C}/checkins"): FACILITATOR,
    ("GET", f"{C}/checkins/{{checkin_id:uuid}}"): FACILITATOR,
    ("POST", f"{C}/checkins/{{checkin_id:uuid}}/reveal"): FACILITATOR,
    ("POST", f"{C}/checkins/{{checkin_id:uuid}}/close"): FACILITATOR,
    ("POST", f"{C}/checkins/{{checkin_id:uuid}}/outcome"): FACILITATOR,
    # ... and the members' by join code: any session; the code's community decides (404 for others,
    # as for a wrong code: tests/safespace/checkin/test_checkin.py)
    ("GET", "/checkin"): SIGNED_IN,
    ("GET", "/checkin/{code:str}"): SIGNED_IN,
    ("POST", "/checkin/{code:str}"): SIGNED_IN,
    ("GET", "/checkin/{code:str}/events"): SIGNED_IN,
    # private mode: the member's token (signed in, the code decides as above); the answer with it
    # (anonymous); the key and the members' live count without a session (the stream by its key)
    ("GET", "/api/v1/checkins/{code:str}/token-key"): SIGNED_IN,
    ("POST", "/api/v1/checkins/{code:str}/token"): SIGNED_IN,
    ("POST", "/api/v1/checkin-answers"): ANONYMOUS,
    ("GET", "/api/v1/token-keys/checkins/{code:str}"): PUBLIC,
    ("GET", "/api/v1/checkins/{code:str}/events"): PUBLIC,
    ("GET", f"{C}/stories/review"): FACILITATOR,
    ("POST", f"{C}/stories/review/moderation/on"): FACILITATOR,
    ("POST", f"{C}/stories/review/moderation/off"): FACILITATOR,
    ("POST", f"{C}/stories/review/release-time"): FACILITATOR,
    ("POST", f"{C}/stories/review/topics"): FACILITATOR,
    ("POST", f"{C}/stories/review/hide"): FACILITATOR,
    ("POST", f"{C}/stories/review/dismiss"): FACILITATOR,
    ("POST", f"{C}/stories/review/approve"): FACILITATOR,
    ("POST", f"{C}/stories/review/decline"): FACILITATOR,
    # facilitators: insights pages, exports and API
    ("GET", f"{C}/insights"): FACILITATOR,
    ("GET", f"{C}/insights/trend.csv"): FACILITATOR,
    ("GET", f"{C}/insights/trend.json"): FACILITATOR,
    ("GET", f"{C}/insights/rounds/{{round_id:uuid}}"): FACILITATOR,
    ("GET", f"{C}/insights/rounds/{{round_id:uuid}}/report"): FACILITATOR,
    ("GET", f"{C}/insights/rounds/{{round_id:uuid}}/results.csv"): FACILITATOR,
    ("GET", f"{C}/insights/rounds/{{round_id:uuid}}/results.json"): FACILITATOR,
    ("GET", f"{C}/insights/rounds/{{round_id:uuid}}/teams.csv"): FACILITATOR,
    ("GET", f"{C}/insights/rounds/{{round_id:uuid}}/teams.json"): FACILITATOR,
    ("POST", f"{C}/insights/rounds/{{round_id:uuid}}/notes"): FACILITATOR,
    ("POST", f"{C}/insights/rounds/{{round_id:uuid}}/notes/{{note_id:uuid}}/delete"): FACILITATOR,
    ("GET", f"{C}/insights/teams"): FACILITATOR,
    ("GET", f"{C}/insights/vitality"): FACILITATOR,
    ("GET", f"{C}/insights/vitality.csv"): FACILITATOR,
    ("GET", f"{C}/insights/vitality.json"): FACILITATOR,
    ("GET", f"{C}/insights/objectives"): FACILITATOR,
    ("POST", f"{C}/insights/objectives"): FACILITATOR,
    ("POST", f"{C}/insights/objectives/{{objective_id:uuid}}/delete"): FACILITATOR,
    ("GET", f"{C}/insights/objectives.csv"): FACILITATOR,
    ("GET", f"{C}/insights/objectives.json"): FACILITATOR,
    ("GET", f"{C}/insights/actions"): FACILITATOR,
    ("POST", f"{C}/insights/actions"): FACILITATOR,
    ("GET", f"{C}/insights/actions/{{action_id:uuid}}"): FACILITATOR,
    ("POST", f"{C}/insights/actions/{{action_id:uuid}}"): FACILITATOR,
    ("GET", f"{C}/insights/actions/export.csv"): FACILITATOR,
    ("GET", f"{C}/insights/actions/export.json"): FACILITATOR,
    ("POST", f"{C}/insights/actions/summaries/{{round_id:uuid}}"): FACILITATOR,
    ("GET", f"{API}/insights/trend"): FACILITATOR,
    ("GET", f"{API}/insights/rounds/{{round_id:uuid}}/teams"): FACILITATOR,
    ("GET", f"{API}/insights/vitality"): FACILITATOR,
    ("GET", f"{API}/insights/objectives"): FACILITATOR,
    ("GET", f"{API}/insights/actions"): FACILITATOR,
    # single sign-on required or not, and the audit log
    ("GET", f"{C}/settings/sso"): FACILITATOR,
    ("POST", f"{C}/settings/sso"): FACILITATOR,
    ("GET", f"{C}/audit"): FACILITATOR,
    ("GET", f"{C}/audit/export.csv"): FACILITATOR,
    ("GET", f"{C}/members/import"): FACILITATOR,
    ("POST", f"{C}/members/import"): FACILITATOR,
    ("POST", f"{C}/members/import/apply"): FACILITATOR,
    ("POST", f"{API}/roster"): FACILITATOR,
}

# Who calls: (name, email). The former member was deactivated: for the community they are a stranger.
CALLERS = [
    ("no session", None),
    ("member", "m0@x.org"),
    ("former member", "m5@x.org"),
    ("facilitator of another community", "elsewhere@x.org"),
    ("facilitator", "fac@x.org"),
]

# What each rule lets a caller do: "allowed", or the guard's answer.
EXPECTED = {
    PUBLIC: {name: "allowed" for name, _email in CALLERS},
    SIGNED_IN: {name: "allowed" for name, _email in CALLERS} | {"no session": "sign in"},
    MEMBER: {
        "no session": "sign in",
        "member": "allowed",
        "former member": "not found",
        "facilitator of another community": "not found",
        "facilitator": "allowed",
    },
    FACILITATOR: {
        "no session": "sign in",
        "member": "forbidden",
        "former member": "not found",
        "facilitator of another community": "not found",
        "facilitator": "allowed",
    },
    ANONYMOUS: {name: "cookie refused" for name, _email in CALLERS} | {"no session": "allowed"},  # the token decides
}

NOT_FOUND = "There is no community at this address."
FORBIDDEN = "Only the community's facilitators can do this."


def verdict(path: str, response: httpx.Response) -> str:
    """What a response says about the caller, in the words of EXPECTED."""
    status, location, text = response.status_code, response.headers.get("location", ""), html.unescape(response.text)
    assert status < 500, f"{path}: {status} {text[:300]}"
    if path.startswith("/api/") and status == 401 or status == 302 and location == f"/signin?next={quote(path)}":
        return "sign in"
    if status == 404 and NOT_FOUND in text:
        return "not found"
    if status == 403 and FORBIDDEN in text:
        return "forbidden"
    if status == 400 and "Sent with a session" in text:
        return "cookie refused"
    return "allowed"


async def call(client: httpx.AsyncClient, method: str, template: str, url: str) -> httpx.Response:
    """The request a browser or program would make, with a valid CSRF pair and the smallest body."""
    if method == "GET":
        return await client.get(url)
    if url.startswith("/api/"):
        return await api(client, method, url, minimal_body(client.app, method, template))
    return await post_form(client, url, {})


def test_no_request_waits_for_a_thread_to_run_a_hook(settings) -> None:
    """Litestar runs a plain function given as a guard, a before_request or after_response hook, a
    before_send handler or a dependency marked sync_to_thread in a worker thread, for every request
    it applies to. The app's OPTIONS hook was one: every request, /healthz too, waited for a thread
    and for that thread to get the GIL from a busy event loop (loaded /healthz p99 up by ms)."""
    app = create_app(settings)
    threaded = set()
    for route in app.routes:
        for handler in getattr(route, "route_handlers", ()):
            if not isinstance(handler, HTTPRouteHandler):
                continue
            hooks = [*handler.resolve_guards(), handler.resolve_before_request(), handler.resolve_after_response()]
            hooks += [provide.dependency for provide in handler.resolve_dependencies().values()]
            threaded |= {hook.func.__qualname__ for hook in hooks if isinstance(hook, AsyncCallable)}
    threaded |= {hook.func.__qualname__ for hook in [*app.before_send, *app.after_exception] if isinstance(hook, AsyncCallable)}
    assert not threaded, f"run in a thread for each request: {sorted(threaded)}"


async def test_every_route_answers_each_caller_as_its_rule_says(client, db: AsyncSession, engine: AsyncEngine, settings) -> None:
    routes = app_routes(client.app)
    unclassified = sorted(set(routes) - set(RULES))
    assert not unclassified, f"give these routes a rule in RULES (who may call them?): {unclassified}"
    stale = sorted(set(RULES) - set(routes))
    assert not stale, f"these RULES name routes that no longer exist: {stale}"

    # One community with a team, an open round, a released story, a note and an objective; and a
    # second community with its own facilitator.
    members = [f"m{i}@x.org" for i in range(6)]
    pulse_ = await answered_round(client, db, engine, settings, {"Team": members}, {}, close=False)
    community = pulse_.world.community
    await make_community(db, name="Elsewhere", facilitator="elsewhere@x.org")
    for n in range(stories.BATCH_SIZE):
        await stories.store_story(db, pulse_.keyring, community.id, stories.StoryText(f"t{n}", "h", "l", "d"), [], False, False)
    await stories.release_due(db, pulse_.keyring, clock.now(), 0, 0)
    story_id = await db.scalar(select(Story.id).where(Story.community_id == community.id, Story.status == "released"))
    memberships = {
        p.email: m for m, p in (await db.execute(select(Membership, Person).join(Person).where(Membership.community_id == community.id)))
    }
    await membership_rules.change_member(db, community.id, memberships["m5@x.org"].id, status="deactivated")
    note = await trend_figures.add_note(db, pulse_.round, "A holiday week.")
    objective = await objective_figures.add_objective(
        db, community, title="Answer more", metric="response_rate", direction="raise", target="90", baseline="60", due_on="2099-01-01"
    )
    await db.commit()
    assert story_id is not None
    values = route_values(
        pulse_, story_id=story_id, membership_id=memberships["m1@x.org"].id, note_id=note.id, objective_id=objective.id
    )

    found: dict[tuple[str, str, str], str] = {}
    for name, email in CALLERS:
        client.cookies.clear()
        if email:
            await sign_in(client, db, email)
        for method, template in sorted(routes, key=lambda route: route == ("POST", "/signout")):  # signing out last
            url = url_for(client.app, method, template, values)
            found[(name, method, template)] = verdict(url.split("?")[0], await call(client, method, template, url))

    wrong = {
        (caller, method, template, RULES[(method, template)]): (answer, EXPECTED[RULES[(method, template)]][caller])
        for (caller, method, template), answer in found.items()
        if answer != EXPECTED[RULES[(method, template)]][caller]
    }
    assert not wrong, "\n".join(f"{key}: got {got!r}, expected {want!r}" for key, (got, want) in sorted(wrong.items()))


# --- disclosure ------------------------------------------------------------------------------------


async def test_no_route_shows_a_hidden_team_or_an_open_round(client, db: AsyncSession, engine: AsyncEngine, settings) -> None:
    """A facilitator reads every GET route (pages, CSV, JSON, API) of a community with a team of 4
    (below k) and a team of 8 (hidden too: 12 - 8 would be the four) in a closed round, and a second
    survey whose round is open with answers. Nothing about either team, nor the open round's
    scores or comments, can be read or worked out from totals."""
    small = [f"small{i}@x.org" for i in range(4)]
    big = [f"big{i}@x.org" for i in range(8)]
    answers = {e: form(1, comment=f"the small team's secret {i}") for i, e in enumerate(small)} | {e: form(6) for e in big}
    closed = await answered_round(client, db, engine, settings, {"Small": small, "Big": big}, answers)
    community = closed.world.community
    today = clock.now().astimezone(ZoneInfo("Europe/Madrid")).date()
    cadence = pulse.CadenceForm("weekly", today.weekday(), 1, 3, today.isoformat())
    survey = await pulse.create_survey(db, community.id, "Europe/Madrid", "Check-in", ["psychological_safety"], cadence)
    await objective_figures.add_objective(
        db, community, title="Feel safe", metric="psychological_safety", direction="raise", target="6", baseline="",
        due_on=(today + timedelta(days=90)).isoformat(),
    )  # fmt: skip
    await db.commit()
    assert (await schedule.tick(closed.sessionmaker, closed.keyring, None, moment=clock.now())).opened == 1
    open_round = await db.scalar(select(Round).where(Round.survey_id == survey.id))
    url = f"/c/{community.id}/rounds/{open_round.id}"
    live = {e: form(2, comment="live thought") for e in small} | {e: form(3) for e in big[:6]}
    for email, values in live.items():
        assert (await post_as(client, await session_cookie(db, email), url, values)).status_code == 303

    await sign_in(client, db, "fac@x.org")
    membership = await db.scalar(select(Membership.id).join(Person).where(Person.email == "small0@x.org"))
    common = {"membership_id": membership, "team_id": closed.world.teams["Small"]}
    bodies = {}
    for values in (
        route_values(closed, **common),  # the closed round of the first survey
        route_values(closed, **common, survey=survey.id, survey_id=survey.id, round_id=open_round.id),  # the open one
    ):
        bodies |= {url: response.text for url, response in (await read_every_page(client, values)).items()}
    gets = [template for method, template in app_routes(client.app) if method == "GET"]
    assert len(bodies) > len(gets), "the second pass read no page of the open round"

    # The attack is not defeated by emptiness: the community's closed result is there.
    results = bodies[f"/c/{community.id}/insights/rounds/{closed.round.id}/results.json"]
    assert '"respondents":12' in results.replace(" ", ""), results[:300]
    assert csv_rows("teams.csv", bodies[f"/c/{community.id}/insights/rounds/{closed.round.id}/teams.csv"])
    # Closed round: the team of 4 answered 1 and the team of 8 answered 6 to everything; their own
    # means appear nowhere, and neither team's row holds a figure. Open round: the four answered 2,
    # six of the eight 3 (together 2.60); none of these, nor the comment, shows before it closes.
    assert_teams_hidden(bodies, ("Small", "Big"), ("1.00", "6.00"), "secret")
    assert_open_round_hidden(bodies, open_round.id, ("2.00", "3.00", "2.60"), "live thought")
    trend = bodies[f"/api/v1/communities/{community.id}/insights/trend?survey={survey.id}"]
    assert '"response_rate":' in trend and str(open_round.id) in trend  # its response rate only
