"""Apply Alembic migrations (what `safespace migrate` runs), and tell whether a database is at the code's revision."""

from __future__ import annotations

import functools
from dataclasses import dataclass
from pathlib import Path

from alembic import command
from alembic.config import Config
from sqlalchemy.ext.asyncio import AsyncEngine

MIGRATIONS = Path(__file__).with_name("migrations")


class MigrationsMissing(Exception):
    """The installation lacks its migrations (a partial copy, a wheel built without them)."""


def alembic_config() -> Config:
    if not (MIGRATIONS / "versions").is_dir():
        raise MigrationsMissing(
            f"Safespace's migrations are missing ({MIGRATIONS / 'versions'} is not there): "
            "the installation is incomplete; install Safespace again."
        )
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
    """The database's schema revision, None if it has none. Read directly rather than through
    Alembic's MigrationContext, which logs two INFO lines each time (and /readyz asks often)."""
    from sqlalchemy import inspect, text

    def read(connection) -> str | None:  # noqa: ANN001
        if not inspect(connection).has_table("alembic_version"):
            return None
        return connection.execute(text("SELECT version_num FROM alembic_version")).scalar()

    async with engine.connect() as connection:
        return await connection.run_sync(read)


@functools.cache
def _revisions() -> tuple[str, frozenset[str]]:
    """The code's head revision and every revision it knows (read once: /readyz asks often)."""
    from alembic.script import ScriptDirectory

    scripts = ScriptDirectory.from_config(alembic_config())
    return scripts.get_current_head(), frozenset(s.revision for s in scripts.walk_revisions())


@dataclass(frozen=True)
class SchemaMismatch:
    """The database is not at the schema revision this code needs: its pages would answer 500."""

    found: str | None  # None: no Safespace tables yet
    needed: str
    newer: bool  # a revision this code does not know: the database was migrated by a newer Safespace

    def message(self) -> str:
        """One line for an operator: what is wrong and what to do."""
        if self.newer:
            return (
                f"The database's schema is at revision {self.found}, which this Safespace does not know (it needs "
                f"{self.needed}): the code is older than the database. Run the Safespace version that migrated it."
            )
        found = f"at revision {self.found}" if self.found else "not set up (no revision)"
        return f"The database's schema is {found}, and this Safespace needs revision {self.needed}: run `safespace migrate`."

    def status(self) -> str:
        """The same for /readyz, short."""
        if self.newer:
            return f"database schema at {self.found}, newer than this code, which needs {self.needed}"
        return f"database schema at {self.found or 'none'}, this code needs {self.needed}; run safespace migrate"


def schema_mismatch(revision: str | None) -> SchemaMismatch | None:
    """None when a database at `revision` is what this code needs."""
    head, known = _revisions()
    if revision == head:
        return None
    return SchemaMismatch(revision, head, newer=revision is not None and revision not in known)
