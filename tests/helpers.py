"""Small helpers the tests share: sign in, post a form the way a browser does, build a community."""

from __future__ import annotations

import html
import re
import uuid
from dataclasses import dataclass

from httpx import AsyncClient as AsyncTestClient
from sqlalchemy.ext.asyncio import AsyncSession

from safespace.identity import services, signin
from safespace.identity.models import Community


def csrf(client: AsyncTestClient) -> str:
    token = client.cookies.get("safespace_csrf")
    assert token, "GET a page before posting: the CSRF cookie is set by the first page"
    return token


async def post_form(client: AsyncTestClient, url: str, data: dict[str, str], **kwargs):  # noqa: ANN201
    if not client.cookies.get("safespace_csrf"):
        await client.get("/signin")
    return await client.post(url, data={**data, "_csrf_token": csrf(client)}, **kwargs)


async def api(client: AsyncTestClient, method: str, url: str, json: object | None = None):  # noqa: ANN201
    if not client.cookies.get("safespace_csrf"):
        await client.get("/signin")
    return await client.request(method, url, json=json, headers={"x-csrftoken": csrf(client)})


async def follow_link(client: AsyncTestClient, link: str):  # noqa: ANN201
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
