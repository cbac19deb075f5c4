"""Storage: migrations match the models; SQLite connections carry the pragmas we rely on."""

from __future__ import annotations

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession

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


async def test_health_and_readiness(client) -> None:  # noqa: ANN001
    assert (await client.get("/healthz")).json() == {"status": "ok"}
    assert (await client.get("/readyz")).json() == {"status": "ok"}


async def test_openapi_documents_the_api(client) -> None:  # noqa: ANN001
    schema = (await client.get("/schema/openapi.json")).json()
    assert "/api/v1/communities/{community_id}/members" in schema["paths"]
    # Pages are for people; the schema documents what programs may call.
    assert all(path.startswith("/api/v1/") for path in schema["paths"])
