"""Small helpers the tests share: sign in, post a form the way a browser does, build a community,
walk the app's routes."""

from __future__ import annotations

import html
import re
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlencode

import httpx
import msgspec
from httpx import AsyncClient as AsyncTestClient
from litestar import Litestar
from litestar.handlers import HTTPRouteHandler
from litestar.params import QueryParameter
from sqlalchemy.ext.asyncio import AsyncSession

from safespace.identity import services, signin
from safespace.identity.models import Community


def csrf(client: AsyncTestClient) -> str:
    token = client.cookies.get("safespace_csrf")
    assert token, "GET a page before posting: the CSRF cookie is set by the first page"
    return token


async def post_form(client: AsyncTestClient, url: str, data: dict[str, str], **kwargs):
    if not client.cookies.get("safespace_csrf"):
        await client.get("/signin")
    return await client.post(url, data={**data, "_csrf_token": csrf(client)}, **kwargs)


async def api(client: AsyncTestClient, method: str, url: str, json: object | None = None):
    if not client.cookies.get("safespace_csrf"):
        await client.get("/signin")
    return await client.request(method, url, json=json, headers={"x-csrftoken": csrf(client)})


async def follow_link(client: AsyncTestClient, link: str):
    """Open a mailed link and press its Continue button, as a person does; returns the answer."""
    path = link.removeprefix("http://testserver.local")
    page = await client.get(path)
    if page.status_code != 200:
        return page
    found = re.search(r'name="next" value="([^"]*)"', page.text)
    form = {"_csrf_token": csrf(client)} | ({"next": html.unescape(found.group(1))} if found else {})
    return await client.post(path.split("?", 1)[0], data=form)


async def sign_in(client: AsyncTestClient, db: AsyncSession, email: str) -> None:
    """Sign in the way `safespace login-link` lets an operator do it: issue a link, follow it."""
    person = await services.find_person(db, email)
    assert person is not None, f"{email} is not known"
    token = await signin.issue_link(db, person.id)
    await db.commit()
    response = await follow_link(client, f"/signin/{token}")
    assert response.status_code == 303, response.text


@dataclass
class World:
    community: Community
    facilitator: str
    members: dict[str, str]  # email -> team name ("" for none)
    teams: dict[str, uuid.UUID]


async def make_community(
    db: AsyncSession,
    name: str = "Coastal Planners",
    facilitator: str = "fac@x.org",
    teams: dict[str, list[str]] | None = None,
    k: int = 5,
) -> World:
    person, _ = await services.get_or_create_person(db, facilitator)
    community = await services.create_community(db, person.id, name, "We learn together.", k, "Europe/Madrid")
    team_ids: dict[str, uuid.UUID] = {}
    members: dict[str, str] = {}
    for team_name, emails in (teams or {}).items():
        team = await services.create_team(db, community.id, team_name)
        team_ids[team_name] = team.id
        for address in emails:
            member, _ = await services.get_or_create_person(db, address)
            services.add_membership(db, community.id, member.id, team.id, "active")
            members[address] = team_name
    await db.commit()
    return World(community, facilitator, members, team_ids)


# --- the router ---------------------------------------------------------------------------------

PATH_PARAM = re.compile(r"\{(\w+):(\w+)\}")


def app_routes(app: Litestar) -> list[tuple[str, str]]:
    """(method, path template) of every route of the app, from its router (HEAD and OPTIONS aside)."""
    return sorted(
        (method, route.path)
        for route in app.routes
        for method in getattr(route, "methods", ())
        if method not in ("HEAD", "OPTIONS")
    )


def fill_path(template: str, values: dict[str, object]) -> str:
    """A path template with its parameters filled from `values`; a UUID not given is a random one."""

    def value(found: re.Match[str]) -> str:
        name, kind = found.groups()
        if name in values:
            return str(values[name])
        assert kind == "uuid", f"{template}: no value for the path parameter {name!r}: add one"
        return str(uuid.uuid4())

    return PATH_PARAM.sub(value, template)


def route_handler(app: Litestar, method: str, template: str) -> HTTPRouteHandler:
    (route,) = [r for r in app.routes if r.path == template and method in getattr(r, "methods", ())]
    return route.route_handler_map[method][0] if hasattr(route, "route_handler_map") else route.route_handlers[0]


def minimal_body(app: Litestar, method: str, template: str) -> object | None:
    """The smallest JSON body of the route's declared type (required fields only), or None.

    A body that parses lets the request reach the handler, so what answers is the route's own
    rule, not the body's validation."""
    handler = route_handler(app, method, template)
    data = handler.parsed_fn_signature.parameters.get("data")
    if data is None:
        return None
    return _smallest(msgspec.inspect.type_info(data.annotation))


def _smallest(info: msgspec.inspect.Type) -> object:
    match info:
        case msgspec.inspect.StructType():
            return {f.encode_name: _smallest(f.type) for f in info.fields if f.required}
        case msgspec.inspect.UnionType():
            return _smallest(info.types[0])
        case msgspec.inspect.LiteralType():
            return info.values[0]
        case msgspec.inspect.UUIDType():
            return str(uuid.uuid4())
        case msgspec.inspect.StrType():
            return "x"
        case msgspec.inspect.IntType() | msgspec.inspect.FloatType():
            return 0
        case msgspec.inspect.BoolType():
            return False
        case msgspec.inspect.ListType() | msgspec.inspect.SetType() | msgspec.inspect.TupleType():
            return []
        case msgspec.inspect.DictType() | msgspec.inspect.AnyType():
            return {}
        case msgspec.inspect.NoneType():
            return None
    raise AssertionError(f"minimal_body: teach it {info!r}")


RESERVED = {"self", "request", "data", "socket", "state", "scope", "headers", "cookies", "query", "body"}


def query_for(app: Litestar, method: str, template: str, values: dict[str, object]) -> str:
    """The query string of the route's declared query parameters that `values` names ("" if none).

    A required query parameter without a value fails: give the new parameter a value."""
    handler = route_handler(app, method, template)
    skip = set(handler.resolve_dependencies()) | RESERVED | {name for name, _kind in PATH_PARAM.findall(template)}
    found = {}
    for name, field in handler.parsed_fn_signature.parameters.items():
        kwarg = field.kwarg_definition
        if name in skip or not (isinstance(kwarg, QueryParameter) or kwarg is None):
            continue
        key = (kwarg.query or kwarg.name or name) if kwarg else name
        if key in values:
            found[key] = str(values[key])
        else:
            assert field.has_default, f"{method} {template}: no value for the query parameter {key!r}: add one"
    return ("?" + urlencode(found)) if found else ""


def url_for(app: Litestar, method: str, template: str, values: dict[str, object]) -> str:
    """A route's address with its path and query parameters filled from `values`."""
    return fill_path(template, values) + query_for(app, method, template, values)


@contextmanager
def serving(env: dict[str, str], log: Path, port: int | None = None, *, base_url: bool = True) -> Iterator[str]:
    """`safespace serve` in a process of its own (on `port`, or a free one); yields its base URL.
    `base_url=False`: SAFESPACE_BASE_URL is left to the server (it follows the port)."""
    from tests.conftest import free_port

    port = port or free_port()
    base = f"http://127.0.0.1:{port}"
    with log.open("w") as out:
        server = subprocess.Popen(
            [sys.executable, "-m", "safespace", "serve", "--port", str(port)],
            env=({"SAFESPACE_BASE_URL": base} if base_url else {}) | env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
        try:
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline:
                try:
                    if httpx.get(f"{base}/healthz", timeout=1).status_code == 200:
                        break
                except httpx.TransportError:
                    time.sleep(0.2)
            else:
                raise AssertionError("the server did not start: " + log.read_text())
            yield base
        finally:
            server.terminate()
            server.wait(timeout=10)


def session_csrf(client: AsyncTestClient, session: str) -> str:
    """The CSRF token of a session (safespace/web/session.py bound_csrf_token), for a test that sends a
    session cookie by hand: a token from before sign-in does not pass for it."""
    from safespace.web.session import bound_csrf_token

    return bound_csrf_token(client.app.csrf_config.secret, session)
