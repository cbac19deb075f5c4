"""Magic-link sign-in, sessions, rate limits and CSRF."""

from __future__ import annotations

import asyncio
from datetime import timedelta

import httpx
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from safespace import clock, ratelimit
from safespace.db.engine import Reads
from safespace.identity import signin
from safespace.identity.models import LoginLink, Membership, Person, WebSession
from tests.helpers import follow_link, make_community, post_form, sign_in


async def _link_token(client, inbox, address: str) -> str:
    await client.get("/signin")
    response = await post_form(client, "/signin", {"email": address})
    assert response.status_code == 200
    return inbox.last_link(address).rsplit("/", 1)[1]


async def test_magic_link_signs_in_once(client, db: AsyncSession, inbox) -> None:
    world = await make_community(db)
    token = await _link_token(client, inbox, world.facilitator)

    # Opening the link (as a mail scanner would) uses nothing up; the button signs in.
    for _ in range(2):
        preview = await client.get(f"/signin/{token}")
        assert preview.status_code == 200 and preview.headers["referrer-policy"] == "no-referrer"
        assert "safespace_session" not in preview.cookies
    first = await follow_link(client, f"/signin/{token}")
    assert first.status_code == 303
    assert first.headers["referrer-policy"] == "no-referrer"
    home = await client.get(first.headers["location"])
    while home.status_code in (302, 303):
        home = await client.get(home.headers["location"])
    assert home.status_code == 200 and world.community.name in home.text

    client.cookies.clear()
    second = await client.get(f"/signin/{token}")
    assert second.status_code == 410
    assert "no longer works" in second.text
    await client.get("/signin")
    replay = await post_form(client, f"/signin/{token}", {})
    assert replay.status_code == 410 and "safespace_session" not in replay.cookies


async def test_magic_link_fails_after_fifteen_minutes(client, db: AsyncSession, inbox) -> None:
    world = await make_community(db)
    token = await _link_token(client, inbox, world.facilitator)
    # Age the link by 15 minutes and a second, as if the person came back too late.
    for link in await db.scalars(select(LoginLink)):
        link.created_at -= timedelta(minutes=15, seconds=1)
        link.expires_at -= timedelta(minutes=15, seconds=1)
    await db.commit()
    response = await follow_link(client, f"/signin/{token}")
    assert response.status_code == 410


async def test_database_holds_only_the_link_hash(client, db: AsyncSession, inbox) -> None:
    world = await make_community(db)
    token = await _link_token(client, inbox, world.facilitator)
    stored = (await db.scalars(select(LoginLink.token_hash))).all()
    assert stored == [signin.token_hash(token)]
    dump = repr([row for row in (await db.execute(select(LoginLink))).all()]) + repr(stored)
    assert token not in dump and token.encode() not in b"".join(stored)


async def test_newer_link_replaces_older_one(client, db: AsyncSession, inbox) -> None:
    world = await make_community(db)
    older = await _link_token(client, inbox, world.facilitator)
    newer = await _link_token(client, inbox, world.facilitator)
    assert (await follow_link(client, f"/signin/{older}")).status_code == 410
    assert (await follow_link(client, f"/signin/{newer}")).status_code == 303


async def test_sign_in_page_answers_the_same_for_unknown_addresses(client, db: AsyncSession, inbox) -> None:
    world = await make_community(db)
    await client.get("/signin")
    known = await post_form(client, "/signin", {"email": world.facilitator})
    unknown = await post_form(client, "/signin", {"email": "stranger@x.org"})
    assert known.status_code == unknown.status_code == 200
    assert known.text.replace(world.facilitator, "ADDRESS") == unknown.text.replace("stranger@x.org", "ADDRESS")
    assert len(inbox.to(world.facilitator)) == 1
    assert inbox.to("stranger@x.org") == []
    assert await db.scalar(select(func.count()).select_from(Person).where(Person.email == "stranger@x.org")) == 0


async def test_sign_in_mails_to_one_address_are_limited(client, db: AsyncSession, inbox) -> None:
    world = await make_community(db)
    await client.get("/signin")
    answers = [await post_form(client, "/signin", {"email": world.facilitator}) for _ in range(8)]
    # The page answers the same every time (nothing tells a stranger the address is limited)...
    assert {a.status_code for a in answers} == {200}
    assert len({a.text for a in answers}) == 1
    # ...but no more than the limit of mails reaches the inbox.
    assert len(inbox.to(world.facilitator)) == signin.RATE_LIMIT_PER_ADDRESS


async def test_rate_limit_is_counted_in_the_database(settings, db: AsyncSession) -> None:
    """Two app replicas share the count: it lives in the database, not in a process."""
    key = ratelimit.rate_key(settings.secret_key(), "address", "a@x.org")
    results = [await ratelimit.over_limit(db, key, limit=2) for _ in range(3)]
    await db.commit()
    assert results == [False, False, True]


async def test_post_without_csrf_token_is_refused_and_changes_nothing(client, db: AsyncSession) -> None:
    world = await make_community(db)
    await sign_in(client, db, world.facilitator)
    await client.get(f"/c/{world.community.id}/teams")
    response = await client.post(f"/c/{world.community.id}/teams", data={"name": "Sneaky"})
    assert response.status_code == 403
    teams = await client.get(f"/c/{world.community.id}/teams")
    assert "Sneaky" not in teams.text
    json_response = await client.post(f"/api/v1/communities/{world.community.id}/teams", json={"name": "Sneaky"})
    assert json_response.status_code == 403
    assert json_response.headers["content-type"].startswith("application/problem+json")


async def test_the_csrf_token_is_bound_to_the_session(client, db: AsyncSession) -> None:
    """A CSRF token that passed its HMAC but came from outside the session (taken before sign-in,
    planted in the browser by someone on a sibling host, or another person's) is refused; the
    session's own token works, and the browser is given it at sign-in and on its next page."""
    world = await make_community(db, teams={"T": ["m@x.org"]})
    await client.get("/signin")
    before = client.cookies.get("safespace_csrf")  # a valid token, from before sign-in
    await sign_in(client, db, world.facilitator)
    session = client.cookies.get("safespace_session")
    given = client.cookies.get("safespace_csrf")
    assert given != before, "sign-in must give the browser the new session's own CSRF token"
    teams = f"/c/{world.community.id}/teams"

    async def post_with(token: str, name: str, as_session: str = session) -> httpx.Response:
        return await client.post(teams, data={"name": name, "_csrf_token": token},
                                 headers={"cookie": f"safespace_session={as_session}; safespace_csrf={token}"})  # fmt: skip

    assert (await post_with(before, "Planted")).status_code == 403
    other = await signin.start_session(db, (await db.scalar(select(Person).where(Person.email == "m@x.org"))).id, None)
    await db.commit()
    others_page = await client.get("/profile", headers={"cookie": f"safespace_session={other}; safespace_csrf={before}"})
    others_token = others_page.cookies.get("safespace_csrf")  # the other session is given its own token
    assert others_token and others_token not in (before, given)
    assert (await post_with(others_token, "Borrowed")).status_code == 403
    bound = await post_with(given, "Ours")
    assert bound.status_code == 303
    names = (await client.get(teams)).text
    assert "Ours" in names and "Planted" not in names and "Borrowed" not in names


async def test_sign_out_ends_the_session_on_the_server(client, db: AsyncSession) -> None:
    world = await make_community(db)
    await sign_in(client, db, world.facilitator)
    stolen = client.cookies.get("safespace_session")
    await client.get("/profile")
    response = await post_form(client, "/signout", {})
    assert response.status_code in (302, 303)
    assert await db.scalar(select(func.count()).select_from(WebSession)) == 0
    client.cookies.set("safespace_session", stolen, domain="testserver.local")
    assert (await client.get("/profile")).status_code == 302


async def test_session_id_changes_at_sign_in(client, db: AsyncSession) -> None:
    world = await make_community(db)
    client.cookies.set("safespace_session", "planted-by-an-attacker", domain="testserver.local")
    await sign_in(client, db, world.facilitator)
    assert client.cookies.get("safespace_session") not in (None, "planted-by-an-attacker")


async def test_idle_session_expires(client, db: AsyncSession, settings) -> None:
    world = await make_community(db)
    await sign_in(client, db, world.facilitator)
    assert (await client.get("/profile")).status_code == 200
    for web_session in await db.scalars(select(WebSession)):
        web_session.last_seen_at -= timedelta(minutes=settings.session_idle_minutes + 1)
    await db.commit()
    response = await client.get("/profile")
    assert response.status_code == 302 and response.headers["location"].startswith("/signin")


async def test_no_session_is_sent_to_sign_in(client, db: AsyncSession) -> None:
    world = await make_community(db)
    for path in ("/profile", "/communities", f"/c/{world.community.id}", f"/c/{world.community.id}/members"):
        response = await client.get(path)
        assert response.status_code == 302, path
        assert response.headers["location"] == f"/signin?next={path}"
    api = await client.get("/api/v1/communities")
    assert api.status_code == 401
    assert api.json()["status"] == 401


async def test_sign_in_returns_to_the_page_that_asked_for_it(client, db: AsyncSession, inbox) -> None:
    world = await make_community(db)
    wanted = f"/c/{world.community.id}/members"
    sent_away = await client.get(wanted)
    form = await client.get(sent_away.headers["location"])
    assert f'name="next" value="{wanted}"' in form.text
    await post_form(client, "/signin", {"email": world.facilitator, "next": wanted})
    response = await follow_link(client, inbox.last_link(world.facilitator))
    assert response.headers["location"] == wanted


async def test_sign_in_lands_in_the_community_last_opened_not_on_the_chooser(client, db: AsyncSession, inbox) -> None:
    """Issue 17 item 6: each sign-in starts a new session, which forgot the last community."""
    first = await make_community(db, "Coastal Planners", teams={"Energy": ["both@x.org"]})
    second = await make_community(db, "River Keepers", facilitator="fac2@x.org", teams={"Water": ["both@x.org"]})

    async def sign_in_and_land() -> str:
        client.cookies.clear()
        await sign_in(client, db, "both@x.org")  # a link without next=, as `login-link` prints
        landed = await client.get("/")
        while landed.status_code in (302, 303):
            where = landed.headers["location"]
            landed = await client.get(where)
        return where

    assert await sign_in_and_land() == "/communities"  # nothing opened yet: the chooser
    for community in (second.community, first.community, second.community):
        assert (await client.get(f"/c/{community.id}")).status_code == 200
        assert await post_form(client, "/signout", {})
        assert await sign_in_and_land() == f"/c/{community.id}"
    # A community the person has left is not a place to land.
    membership = await db.scalar(
        select(Membership).where(Membership.community_id == second.community.id, Membership.person_id == Person.id, Person.email == "both@x.org")
    )
    membership.status = "deactivated"
    await db.commit()
    assert await sign_in_and_land() == f"/c/{first.community.id}"
    # An explicit next= still wins.
    wanted = f"/c/{first.community.id}/stories"
    client.cookies.clear()
    await post_form(client, "/signin", {"email": "both@x.org", "next": wanted})
    assert (await follow_link(client, inbox.last_link("both@x.org"))).headers["location"] == wanted


async def test_sign_in_never_sends_people_to_another_site(client, db: AsyncSession, inbox) -> None:
    world = await make_community(db)
    await client.get("/signin")
    for target in ("https://evil.example/", "//evil.example/", "/\\evil.example"):
        await post_form(client, "/signin", {"email": world.facilitator, "next": target})
        link = inbox.last_link(world.facilitator)
        assert "evil" not in link
        token = link.rsplit("/", 1)[1].split("?")[0]
        await client.get(f"/signin/{token}", params={"next": target})
        response = await post_form(client, f"/signin/{token}", {"next": target})
        assert "evil" not in response.headers["location"]


async def test_sign_in_requests_are_rate_limited_per_client(client, db: AsyncSession, still_clock) -> None:
    await client.get("/signin")
    answers = [
        (await post_form(client, "/signin", {"email": f"person{i}@x.org"})).status_code
        for i in range(signin.RATE_LIMIT_PER_CLIENT + 1)
    ]
    assert answers == [200] * signin.RATE_LIMIT_PER_CLIENT + [429]


async def test_signing_in_as_someone_else_ends_the_previous_session(client, db: AsyncSession) -> None:
    world = await make_community(db, teams={"Energy": ["e1@x.org"]})
    await sign_in(client, db, world.facilitator)
    await sign_in(client, db, "e1@x.org")
    owners = (await db.execute(select(WebSession.person_id))).scalars().all()
    member = await db.scalar(select(Person).where(Person.email == "e1@x.org"))
    assert owners == [member.id]


async def test_old_links_and_idle_sessions_are_forgotten(db: AsyncSession, client) -> None:
    world = await make_community(db)
    await sign_in(client, db, world.facilitator)
    person = await db.scalar(select(Person).where(Person.email == world.facilitator))
    await signin.issue_link(db, person.id)  # an unused, still valid link stays
    for web_session in await db.scalars(select(WebSession)):
        web_session.last_seen_at -= timedelta(days=4)
    await db.commit()
    await signin.forget_old_sign_ins(db, timedelta(days=3))
    await db.commit()
    assert await db.scalar(select(func.count()).select_from(WebSession)) == 0
    assert await db.scalar(select(func.count()).select_from(LoginLink)) == 1


async def test_session_is_written_at_most_once_an_hour(db: AsyncSession, engine, monkeypatch) -> None:
    """Requests read the session; last_seen_at (kept to the hour) moves on at most hourly."""
    from datetime import UTC, datetime

    from sqlalchemy import event

    world = await make_community(db)
    person = await db.scalar(select(Person).where(Person.email == world.facilitator))
    times = [datetime(2026, 3, 2, 9, 0, tzinfo=UTC)]
    monkeypatch.setattr(clock, "now", lambda: times[0])
    token = await signin.start_session(db, person.id, None)
    await db.commit()
    writes: list[str] = []

    def note(_conn, _cursor, statement: str, *_args) -> None:
        if "web_session" in statement and not statement.lstrip().upper().startswith("SELECT"):
            writes.append(statement)

    event.listen(engine.sync_engine, "before_cursor_execute", note)
    try:
        start = times[0]
        reader, idle = signin.SessionReader(Reads(engine)), timedelta(hours=8)
        for minutes in range(0, 180, 7):  # a request every seven minutes for three hours, as the middleware does
            times[0] = start + timedelta(minutes=minutes)
            live = await reader.read(token)
            assert live is not None and live.person_id == person.id
            if signin.needs_settling(live, idle):
                async with reader.engine.connect() as conn:
                    live = await signin.settle(conn, live, idle)
                    assert live is not None and live.touched
                    await conn.commit()
    finally:
        event.remove(engine.sync_engine, "before_cursor_execute", note)
    assert len(writes) == 2  # at 10:03 (to 10:00) and 11:04 (to 11:00); 26 requests
    db.expire_all()
    last_seen = await db.scalar(select(WebSession.last_seen_at))
    assert last_seen == datetime(2026, 3, 2, 11, 0, tzinfo=UTC)


async def test_concurrent_requests_read_their_sessions_together_each_its_own(client, db: AsyncSession) -> None:
    """Sessions are read in batches under load (identity.signin.SessionReader): every request
    still gets its own person, and a session ended a moment ago is not read from anywhere."""
    emails = [f"reader{i}@x.org" for i in range(12)]
    world = await make_community(db, teams={"Readers": emails})
    tokens = {}
    for email in emails:
        person = await db.scalar(select(Person).where(Person.email == email))
        tokens[email] = await signin.start_session(db, person.id, world.community.id)
    await db.commit()
    reader = client.app.state.sessions.batcher
    before = reader.batches, reader.items

    async def profile(email: str) -> str:
        response = await client.get("/profile", headers={"cookie": f"safespace_session={tokens[email]}"})
        assert response.status_code == 200
        return response.text

    pages = await asyncio.gather(*(profile(email) for email in emails))
    for email, page in zip(emails, pages, strict=True):
        assert email in page and not any(other in page for other in emails if other != email)
    assert reader.items - before[1] == 12 and reader.batches - before[0] < 12  # read together
    await signin.end_session(db, tokens[emails[0]])
    await db.commit()
    gone = await client.get("/profile", headers={"cookie": f"safespace_session={tokens[emails[0]]}"})
    assert gone.status_code == 302 and gone.headers["location"].startswith("/signin")


async def test_asking_for_a_link_does_the_same_work_for_known_and_unknown_addresses(client, db: AsyncSession, inbox) -> None:
    """Looking the person up and writing their link took 2-4 ms more for a known address, which an
    outsider can time. Every statement before the response is sent is now the same for both; the
    lookup happens after it (bench/signin_timing.py measures the times)."""
    from sqlalchemy import event
    from sqlalchemy.engine import Engine

    world = await make_community(db)
    app = client.app
    statements: list[tuple[bool, str]] = []
    answered = [False]

    async def watched(scope, receive, send):
        async def sending(message):
            await send(message)
            if message["type"] == "http.response.body" and not message.get("more_body"):
                answered[0] = True

        await app(scope, receive, sending)

    def record(_conn, _cursor, statement, *_args) -> None:
        statements.append((answered[0], " ".join(statement.split())))

    async def ask(address: str) -> tuple[list[str], list[str]]:
        statements.clear()
        answered[0] = False
        transport = httpx.ASGITransport(app=watched, client=("203.0.113.7", 50000))
        async with httpx.AsyncClient(transport=transport, base_url=str(client.base_url), cookies=client.cookies) as watcher:
            response = await post_form(watcher, "/signin", {"email": address})
        assert response.status_code == 200
        return [s for after, s in statements if not after], [s for after, s in statements if after]

    await client.get("/signin")
    event.listen(Engine, "before_cursor_execute", record)
    try:
        known_before, known_after = await ask(world.facilitator)
        unknown_before, unknown_after = await ask("stranger@x.org")
    finally:
        event.remove(Engine, "before_cursor_execute", record)
    assert known_before == unknown_before, "the response path must not depend on whether the address is known"
    assert not any("FROM person" in s for s in known_before), "the person is looked up only after the response"
    assert any("INSERT INTO login_link" in s for s in known_after) and not any("login_link" in s for s in unknown_after)
    assert len(inbox.to(world.facilitator)) == 1 and inbox.to("stranger@x.org") == []


async def test_the_sessions_csrf_cookie_lasts_as_long_as_the_session_cookie(client, db: AsyncSession) -> None:
    """The CSRF cookie of a session is kept by the browser as long as the session cookie: a member
    who reopens the browser the next day (the round mail's link) still sends both, and their pages
    set no cookie. A browser-session cookie was dropped on closing, and every first page after
    that computed and set it again."""
    world = await make_community(db)
    person = await db.scalar(select(Person).where(Person.email == world.facilitator))
    token = await signin.issue_link(db, person.id)
    await db.commit()
    signed_in = await follow_link(client, f"/signin/{token}")
    assert signed_in.status_code == 303
    set_cookies = {c.split("=", 1)[0]: c for c in signed_in.headers.get_list("set-cookie")}
    assert "Max-Age=2592000" in set_cookies["safespace_session"], set_cookies
    assert "Max-Age=2592000" in set_cookies["safespace_csrf"], set_cookies
    page = await client.get("/profile")  # both cookies sent, as a browser holds them
    assert page.status_code == 200 and "set-cookie" not in page.headers, page.headers.get_list("set-cookie")
    # A browser that lost it anyway (cleared by hand) gets it back, kept as long.
    session = client.cookies.get("safespace_session")
    again = await client.get("/profile", headers={"cookie": f"safespace_session={session}"})
    assert "Max-Age=2592000" in again.headers["set-cookie"] and again.headers["set-cookie"].startswith("safespace_csrf="), again.headers


async def test_sign_out_drops_the_sessions_csrf_cookie_too(client, db: AsyncSession) -> None:
    """The session's CSRF cookie is kept as long as the session cookie (30 days): signing out drops
    both, so nothing derived from the ended session keeps travelling with a signed-out browser."""
    world = await make_community(db)
    await sign_in(client, db, world.facilitator)
    session_csrf = client.cookies.get("safespace_csrf")
    gone = await post_form(client, "/signout", {})
    assert gone.status_code in (302, 303)
    expired = {c.split("=", 1)[0]: c for c in gone.headers.get_list("set-cookie")}
    assert "Max-Age=0" in expired["safespace_session"] and "Max-Age=0" in expired["safespace_csrf"], expired
    signin_page = await client.get("/signin")  # the sign-in form gets a CSRF cookie of its own
    assert signin_page.status_code == 200 and client.cookies.get("safespace_csrf") not in (None, session_csrf)
