"""An app that stops closes its database connections (the hundredth app of a process, the test
suite's, as well as the only one of a served process), and serves again when started again."""

from __future__ import annotations

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession

from safespace.app import create_app
from safespace.settings import Settings
from safespace.web.guards import DATABASE_STATE_KEY
from tests.conftest import browser_like
from tests.helpers import csrf, make_community, sign_in


async def _backends(engine: AsyncEngine) -> int | None:
    """PostgreSQL: the server's connections to this database, ours included; SQLite: None."""
    if engine.dialect.name != "postgresql":
        return None
    async with engine.connect() as connection:
        return await connection.scalar(text("SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()"))


async def test_an_app_that_stops_leaves_none_of_its_database_connections_open(settings: Settings, db: AsyncSession, engine) -> None:
    before = await _backends(engine)
    for _ in range(2):  # from the second app of a process on, advanced_alchemy's lifespan left its engine alone
        app = create_app(settings)
        app_engine = app.state[DATABASE_STATE_KEY].get_engine()
        async with browser_like(app) as client:
            # A sign-in link is looked up through the request's session: a connection of the app's pool.
            assert (await client.get("/signin/not-a-real-link")).status_code == 410  # gone: no such link
            assert app_engine.sync_engine.pool.checkedin() >= 1
        assert app_engine.sync_engine.pool.checkedin() == 0
        assert await _backends(engine) == before


async def test_an_app_serves_again_after_it_stopped(settings: Settings, db: AsyncSession) -> None:
    """The suite serves one app to test after test, entering its lifespan anew each time
    (tests/conftest.py, shared_app): an app that stopped (engine disposed, batchers idle, channels
    closed) signs in, serves pages and takes forms again when started. (The check-in tests' streams
    run on the same shared app: tests/safespace/checkin/conftest.py.)"""
    app = create_app(settings)
    for attempt in range(3):
        world = await make_community(db, f"Community {attempt}", f"f{attempt}@x.org", teams={"All": [f"m{attempt}-{n}@x.org" for n in range(5)]})
        async with browser_like(app) as client:
            await sign_in(client, db, world.facilitator)  # the link, then the session through the batched reads
            home = await client.get(f"/c/{world.community.id}")
            assert home.status_code == 200 and f"Community {attempt}" in home.text
            teams = await client.get(f"/c/{world.community.id}/teams")
            sent = await client.post(f"/c/{world.community.id}/teams", data={"name": f"Team {attempt}", "_csrf_token": csrf(client)})
            assert teams.status_code == 200 and sent.status_code in (302, 303), sent.text
            assert f"Team {attempt}" in (await client.get(f"/c/{world.community.id}/teams")).text
