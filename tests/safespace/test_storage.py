"""Storage: migrations match the models; SQLite connections carry the pragmas we rely on."""

from __future__ import annotations

import asyncio

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import event, text
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession

from safespace.db.engine import make_engine
from safespace.db.models import metadata


async def test_migrations_match_the_models(engine: AsyncEngine) -> None:
    async with engine.connect() as connection:
        differences = await connection.run_sync(
            lambda sync: compare_metadata(MigrationContext.configure(sync, opts={"compare_type": False}), metadata)
        )
    assert differences == []


async def test_sqlite_connections_are_configured(db: AsyncSession) -> None:
    if db.bind.dialect.name != "sqlite":
        return
    pragmas = {name: (await db.execute(text(f"PRAGMA {name}"))).scalar() for name in
               ("journal_mode", "busy_timeout", "foreign_keys", "secure_delete")}
    assert pragmas == {"journal_mode": "wal", "busy_timeout": 5000, "foreign_keys": 1, "secure_delete": 1}


async def test_bursts_of_requests_reuse_the_pools_connections_and_open_no_more(settings) -> None:
    """Thirty requests at once, three times over, with a pool of 20: the 20 connections opened
    for the first burst serve every request, and the ten beyond them wait their turn. (SQLAlchemy's
    default pool kept 5 and opened and closed 10 more on every burst: a thread each on SQLite, a
    server process on PostgreSQL.)"""
    engine = make_engine(settings)
    opened, busy, most = [], [0], [0]
    event.listen(engine.sync_engine, "connect", lambda *_: opened.append(1))

    async def request() -> None:
        async with engine.connect() as conn:
            busy[0] += 1
            most[0] = max(most[0], busy[0])
            await conn.execute(text("SELECT 1"))
            await asyncio.sleep(0.02)  # the rest of a request, holding its connection
            busy[0] -= 1

    try:
        for _burst in range(3):
            await asyncio.gather(*(request() for _ in range(30)))
        assert len(opened) == most[0] == settings.database_pool_size == 20, (len(opened), most[0])
    finally:
        await engine.dispose()


async def test_health_and_readiness(client) -> None:
    assert (await client.get("/healthz")).json() == {"status": "ok"}
    assert (await client.get("/readyz")).json() == {"status": "ok"}


async def test_openapi_documents_the_api(client) -> None:
    schema = (await client.get("/schema/openapi.json")).json()
    assert "/api/v1/communities/{community_id}/members" in schema["paths"]
    # Pages are for people; the schema documents what programs may call.
    assert all(path.startswith("/api/v1/") for path in schema["paths"])


async def test_healthz_answers_without_the_database(tmp_path) -> None:
    """Liveness needs no database; readiness says the database is down."""
    from safespace.app import create_app
    from safespace.settings import Settings
    from tests.conftest import browser_like, free_port

    unreachable = f"postgresql+asyncpg://nobody@127.0.0.1:{free_port()}/nothing"
    app = create_app(Settings(data_dir=str(tmp_path), database_url=unreachable))
    async with browser_like(app) as client:
        assert (await client.get("/healthz")).status_code == 200
        ready = await client.get("/readyz")
        assert ready.status_code == 503 and ready.json() == {"status": "database unavailable"}


async def test_unknown_pages_get_a_friendly_404(client) -> None:
    page = await client.get("/no/such/page", headers={"accept-language": "es"})
    assert page.status_code == 404
    assert "text/html" in page.headers["content-type"] and "Página no encontrada" in page.text
    assert "Not Found" not in page.text  # no English default under a Spanish title
    api = await client.get("/api/v1/nothing-here")
    assert api.status_code == 404 and api.headers["content-type"].startswith("application/problem+json")


async def test_pages_are_not_cached(client) -> None:
    page = await client.get("/signin")
    assert page.headers["cache-control"] == "no-store"
    assert page.headers["x-content-type-options"] == "nosniff"
    csp = page.headers["content-security-policy"]
    assert "frame-ancestors 'none'" in csp and "script-src 'self'" in csp and "unsafe-inline" not in csp
    assert page.headers["x-frame-options"] == "DENY"
    css = await client.get("/static/safespace.css")
    assert css.status_code == 200 and "no-store" not in css.headers.get("cache-control", "")


def test_every_page_title_is_plain_text() -> None:
    """A page's <title> block holds words, never markup (a misplaced edit once put sections there)."""
    import re

    from safespace.web.templates import TEMPLATES

    for path in TEMPLATES.rglob("*.html"):
        found = re.search(r"{% block title %}(.*?){% endblock %}", path.read_text(), flags=re.DOTALL)
        if found:
            assert "<" not in found.group(1) and "\n" not in found.group(1).strip(), path.name


async def test_names_made_unique_by_migration_0009_rename_later_duplicates_and_keep_their_members(engine: AsyncEngine, db: AsyncSession, caplog) -> None:
    """Issue 21 item 5: before 0009 a database could hold "Gold" twice. Upgrading keeps the oldest
    name as it is, gives each later one a number no community had, and loses nothing else; after
    it, the database itself refuses a second "gold"."""
    import logging
    import uuid
    from datetime import UTC, datetime, timedelta

    from alembic import command
    from sqlalchemy import delete, insert, select
    from sqlalchemy.exc import IntegrityError

    from safespace.db.migrate import alembic_config, upgrade
    from safespace.identity.models import Community, Membership, Person, community_name_key

    async def downgrade(revision: str) -> None:
        config = alembic_config()
        async with engine.begin() as connection:
            def run(sync) -> None:
                config.attributes["connection"] = sync
                command.downgrade(config, revision)

            await connection.run_sync(run)

    long = "Long" + "g" * 116
    names = ["Gold", "GOLD", "Gold", "Gold (2)", "Silver", long, long.upper()]  # in the order they were made
    ids = [uuid.uuid4() for _ in names]
    start = datetime(2026, 1, 1, tzinfo=UTC)
    await db.close()
    try:
        await downgrade("0008")
        async with engine.begin() as connection:
            person = uuid.uuid4()
            await connection.execute(insert(Person.__table__).values(id=person, email="f@x.org", created_at=start))
            for n, (community_id, name) in enumerate(zip(ids, names, strict=True)):
                await connection.execute(insert(Community.__table__).values(
                    id=community_id, name=name, min_group_size=5, comment_threshold=10, time_zone="UTC",
                    created_at=start + timedelta(days=n),
                ))  # fmt: skip
                await connection.execute(insert(Membership.__table__).values(
                    person_id=person, community_id=community_id, role="facilitator", status="active", created_at=start,
                ))  # fmt: skip
        with caplog.at_level(logging.WARNING, logger="safespace.migrations"):
            await upgrade(engine)
        async with engine.connect() as connection:
            after = dict((await connection.execute(select(Community.id, Community.name))).all())
            keys = dict((await connection.execute(select(Community.id, Community.name_key))).all())
            members = set(await connection.scalars(select(Membership.community_id)))
        assert [after[i] for i in ids] == ["Gold", "GOLD (3)", "Gold (4)", "Gold (2)", "Silver", long, long.upper()[:116] + " (2)"]
        assert keys == {i: community_name_key(name) for i, name in after.items()}
        assert members == set(ids)
        assert sum("renamed from 'GOLD' to 'GOLD (3)'" in r.getMessage() for r in caplog.records) == 1
        with pytest.raises(IntegrityError):
            async with engine.begin() as connection:
                await connection.execute(insert(Community.__table__).values(
                    name="gold", name_key="gold", min_group_size=5, comment_threshold=10, time_zone="UTC", created_at=start,
                ))  # fmt: skip

        await downgrade("0008")  # back down and up again: the renamed names stay, the index goes and comes back
        await upgrade(engine)
    finally:
        await upgrade(engine)
        async with engine.begin() as connection:
            await connection.execute(delete(Membership.__table__))
            await connection.execute(delete(Community.__table__))
            await connection.execute(delete(Person.__table__))


async def test_sqlite_runs_each_statement_in_one_trip_to_the_driver_thread(tmp_path) -> None:
    """db/engine.py's one-trip cursor depends on aiosqlite internals; if an aiosqlite upgrade
    removed them, the engine would quietly fall back to the stock adapter (four thread hand-offs
    per SELECT instead of one). This fails instead (issue 16 item 5)."""
    from safespace.db.engine import _OneHopConnection, _OneHopCursor, make_engine
    from safespace.settings import Settings

    engine = make_engine(Settings(data_dir=str(tmp_path), database_url=f"sqlite+aiosqlite:///{tmp_path / 'x.db'}"))
    try:
        async with engine.connect() as connection:
            raw = (await connection.get_raw_connection()).dbapi_connection
            assert isinstance(raw, _OneHopConnection)
            assert isinstance(raw.cursor(), _OneHopCursor)
            assert (await connection.execute(text("SELECT 1 + 1"))).scalar() == 2
    finally:
        await engine.dispose()
