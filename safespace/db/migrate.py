"""Apply Alembic migrations (what `safespace migrate` runs)."""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config
from sqlalchemy.ext.asyncio import AsyncEngine

MIGRATIONS = Path(__file__).with_name("migrations")


def alembic_config() -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    return config


async def upgrade(engine: AsyncEngine, revision: str = "head") -> None:
    config = alembic_config()
    async with engine.begin() as connection:
        config.attributes["connection"] = connection

        def run(sync_connection) -> None:  # noqa: ANN001
            config.attributes["connection"] = sync_connection
            command.upgrade(config, revision)

        await connection.run_sync(run)


async def current_revision(engine: AsyncEngine) -> str | None:
    from alembic.runtime.migration import MigrationContext

    async with engine.connect() as connection:
        return await connection.run_sync(lambda c: MigrationContext.configure(c).get_current_revision())
