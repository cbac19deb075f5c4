"""Security headers on every response: pages, exports, API answers, static files, error pages and
problem documents. Every GET route is found by walking the app's router, so a new page is checked
without anyone listing it here; a route with a path parameter this file cannot fill fails."""

from __future__ import annotations

import re
import uuid

import httpx
from litestar import Litestar
from sqlalchemy.ext.asyncio import AsyncSession

from safespace.insights import actions
from safespace.pulse.token_routes import REDEEM_PATH
from tests.helpers import api, make_community, post_form, sign_in
from tests.safespace.insights.conftest import Closed, answered_round, form

# The policy as promised (docs/THREAT_MODEL.md): our own origin only, nothing inline, no framing.
CSP = {
    "default-src": ["'self'"],
    "script-src": ["'self'"],
    "style-src": ["'self'"],
    "img-src": ["'self'"],
    "object-src": ["'none'"],
    "base-uri": ["'none'"],
    "form-action": ["'self'"],
    "frame-ancestors": ["'none'"],
}
NEVER_ALLOWED = {"camera", "microphone", "geolocation", "payment", "usb", "interest-cohort", "browsing-topics"}


def get_routes(app: Litestar) -> list[str]:
    """The path template of every route that answers GET."""
    return sorted(route.path for route in app.routes if "GET" in getattr(route, "methods", ()))


def fill(template: str, closed: Closed, action_id: uuid.UUID, checkin_id: str | None = None) -> str:
    """A real value for each path parameter, from the world the test built."""
    values = {
        "action_id": str(action_id),
        "checkin_id": checkin_id or str(uuid.uuid4()),  # none started: its 404 page carries the headers too
        "community_id": str(closed.world.community.id),
        "round_id": str(closed.round.id),
        "survey_id": str(closed.survey_id),
        "code": "es",
        "token": "a-sign-in-token-that-was-never-issued",
        "file_path": "safespace.css",
        "path": "nothing-here",
        "provider_id": "no-such-provider",  # no single sign-on here: its 404 page carries the headers too
    }

    def value(match: re.Match[str]) -> str:
        name = match.group(1)
        assert name in values, f"{template}: no value for path parameter {name!r}; add one to fill()"
        return values[name]

    path = re.sub(r"\{(\w+):\w+\}", value, template)
    return path + (f"?survey={closed.survey_id}" if "/insights/trend" in path else "")


def check_headers(response: httpx.Response) -> None:
    where = f"{response.request.method} {response.request.url.path} ({response.status_code})"
    headers = response.headers
    directives = {}
    for part in headers.get("content-security-policy", "").split(";"):
        name, *sources = part.split()
        directives[name] = sources
    assert directives == CSP, f"{where}: {headers.get('content-security-policy')}"
    assert headers.get_list("content-security-policy") == [headers["content-security-policy"]], where
    assert headers.get("x-content-type-options") == "nosniff", where
    assert headers.get("x-frame-options") == "DENY", where
    assert headers.get("cross-origin-opener-policy") == "same-origin", where
    assert headers.get("cross-origin-resource-policy") == "same-origin", where

    features = dict(item.strip().split("=", 1) for item in headers.get("permissions-policy", "").split(","))
    assert NEVER_ALLOWED <= features.keys(), f"{where}: {sorted(NEVER_ALLOWED - features.keys())} not turned off"
    assert set(features.values()) == {"()"}, f"{where}: a feature is allowed: {features}"

    path = response.request.url.path
    if path.startswith("/signin/"):
        # The path is a sign-in token: even the error page for a used one names it to nobody.
        assert headers.get("referrer-policy") == "no-referrer", where
    else:
        assert headers.get("referrer-policy") in {"same-origin", "no-referrer"}, where
    if path.startswith("/static/"):
        assert headers.get("cache-control") == "no-cache", where  # revalidated: scripts carry SRI hashes
    else:
        assert headers.get_list("cache-control") == ["no-store"], where


async def world(client: httpx.AsyncClient, db: AsyncSession, engine, settings) -> tuple[Closed, uuid.UUID]:
    """A community of two teams of five who answered a round that has closed, and an action
    planned from its results."""
    teams = {"North": [f"north{i}@x.org" for i in range(5)], "South": [f"south{i}@x.org" for i in range(5)]}
    answers = {email: form(5, comment="Comments need ten people.") for members in teams.values() for email in members}
    closed = await answered_round(client, db, engine, settings, teams, answers)
    about = await actions.subject(db, closed.world.community, str(closed.round.id), "psychological_safety", "")
    action = await actions.create_action(db, closed.world.community, title="Speak first", owner="", due_on="", about=about)
    await db.commit()
    return closed, action.id


async def test_every_get_route_sends_the_security_headers_to_a_facilitator(client, db: AsyncSession, engine, settings) -> None:
    closed, action_id = await world(client, db, engine, settings)
    await sign_in(client, db, closed.world.facilitator)
    form = {"statement": ["psychological_safety/ps_mistakes"], "prompt": "", "question": "", "points": "5"}
    started = await post_form(client, f"/c/{closed.world.community.id}/checkins", form)
    assert started.status_code == 303, started.text
    checkin_id = started.headers["location"].rsplit("/", 1)[1]  # its page is walked like the others
    statuses: dict[str, int] = {}
    for template in get_routes(client.app):
        response = await client.get(fill(template, closed, action_id, checkin_id))
        check_headers(response)
        statuses[template] = response.status_code
    assert len(statuses) >= 50, sorted(statuses)
    assert all(status < 500 for status in statuses.values()), statuses
    # The walk reached the pages themselves, not only sign-in redirects and error pages.
    community = {t: s for t, s in statuses.items() if t.startswith(("/c/", "/api/v1/communities/"))}
    assert sum(s == 200 for s in community.values()) >= len(community) - 2, {t: s for t, s in community.items() if s != 200}  # token-key: 409 once closed
    assert statuses["/static/{file_path:path}"] == 200


async def test_every_get_route_sends_the_security_headers_without_a_session(client, db: AsyncSession, engine, settings) -> None:
    """Signed out: sign-in redirects and 401 problem documents carry them too."""
    closed, action_id = await world(client, db, engine, settings)
    client.cookies.clear()
    statuses = set()
    for template in get_routes(client.app):
        response = await client.get(fill(template, closed, action_id))
        check_headers(response)
        statuses.add(response.status_code)
    assert {200, 401} <= statuses and statuses & {302, 303}, statuses  # sign-in redirects and problems


async def test_error_pages_and_problem_documents_send_the_security_headers(client, db: AsyncSession) -> None:
    world = await make_community(db, teams={"North": ["member@x.org"]})
    community = world.community.id
    await sign_in(client, db, "member@x.org")
    answers = {
        "unknown page": (await client.get("/no-such-page"), 404, "text/html"),
        "unknown community": (await client.get(f"/c/{uuid.uuid4()}"), 404, "text/html"),
        "facilitators only": (await client.get(f"/c/{community}/settings"), 403, "text/html"),
        "form without CSRF": (await client.post(f"/c/{community}/settings", data={"name": "x"}), 403, "text/html"),
        "used sign-in link": (await client.get("/signin/not-a-live-token"), 410, "text/html"),
        "API: unknown community": (await client.get(f"/api/v1/communities/{uuid.uuid4()}"), 404, "application/problem+json"),
        "API: facilitators only": (
            await api(client, "PATCH", f"/api/v1/communities/{community}", {"name": "Taken over"}),
            403,
            "application/problem+json",
        ),
        "API: malformed JSON": (
            await client.post(
                "/api/v1/communities",
                content=b"{not json",
                headers={"content-type": "application/json", "x-csrftoken": client.cookies["safespace_csrf"]},
            ),
            400,
            "application/problem+json",
        ),
        "anonymous answer without a token": (
            await httpx.AsyncClient(transport=client._transport, base_url=str(client.base_url)).post(REDEEM_PATH, json={}),
            None,
            "application/problem+json",
        ),
    }
    await post_form(client, "/signout", {})
    answers["API: signed out"] = (await client.get("/api/v1/communities"), 401, "application/problem+json")
    for name, (response, status, media_type) in answers.items():
        assert status is None or response.status_code == status, f"{name}: {response.status_code} {response.text[:200]}"
        assert response.status_code >= 400, name
        assert response.headers["content-type"].startswith(media_type), f"{name}: {response.headers['content-type']}"
        check_headers(response)


async def test_schema_is_the_openapi_document_and_no_viewer_page_is_served(client) -> None:
    """Litestar's viewer pages load their scripts from a CDN, which the policy refuses: blank pages."""
    document = await client.get("/schema")
    assert document.status_code == 200 and document.json()["openapi"].startswith("3.")
    assert "\nopenapi: 3." in (await client.get("/schema/openapi.yaml")).text
    for viewer in ("swagger", "redoc", "rapidoc", "elements", "scalar"):
        assert (await client.get(f"/schema/{viewer}")).status_code == 404, viewer


async def test_an_https_installation_pins_https_and_keeps_every_cookie_secure(settings, db: AsyncSession) -> None:
    """Under an https:// base URL: Strict-Transport-Security on every answer, and the language
    cookie (set before anyone signs in) is Secure like the session and CSRF cookies."""
    import msgspec

    from safespace.app import create_app
    from tests.conftest import browser_like

    secure = msgspec.structs.replace(settings, base_url="https://safespace.example")
    async with browser_like(create_app(secure)) as client:
        for path in ("/signin", "/healthz", "/no-such-page", "/api/v1/token-keys/rounds/" + str(uuid.uuid4())):
            response = await client.get(path)
            assert response.headers.get("strict-transport-security") == "max-age=31536000; includeSubDomains", path
        chosen = await client.get("/language/es")
        cookie = chosen.headers["set-cookie"]
        assert cookie.startswith("safespace_lang=es") and "secure" in cookie.lower(), cookie
    async with browser_like(create_app(settings)) as plain:  # http:// (development): no pin, no Secure
        assert "strict-transport-security" not in (await plain.get("/signin")).headers
        assert "secure" not in (await plain.get("/language/es")).headers["set-cookie"].lower()


async def test_options_and_405_name_every_method_of_the_path(client) -> None:
    """RFC 9110: OPTIONS and a 405 carry an Allow header naming every method the path answers.
    Litestar's OPTIONS named one handler's methods (OPTIONS /signin said "OPTIONS, POST") and its
    405 named none. Every route, found by walking the router, with no session."""
    from litestar.routes import HTTPRoute

    routes = [route for route in client.app.routes if isinstance(route, HTTPRoute)]
    by_path: dict[str, set[str]] = {}
    for route in routes:
        path = re.sub(r"\{(\w+):(\w+)\}", lambda m: "safespace.css" if m.group(2) == "path" else str(uuid.uuid4()), route.path)
        by_path.setdefault(path, set()).update(route.methods)
    assert len(by_path) > 40
    for path, methods in by_path.items():
        options = await client.options(path)
        assert options.status_code == 204 and set(options.headers["allow"].split(", ")) == methods, (path, options.headers)
        unused = next(m for m in ("DELETE", "PUT", "PATCH", "POST") if m not in methods)
        refused = await client.request(unused, path)
        assert refused.status_code == 405, (unused, path, refused.status_code)
        assert set(refused.headers["allow"].split(", ")) == methods, (path, refused.headers)
