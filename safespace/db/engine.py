"""Engine and session set-up for SQLite and PostgreSQL."""

from __future__ import annotations

from advanced_alchemy.extensions.litestar import (
    AsyncSessionConfig,
    EngineConfig,
    SQLAlchemyAsyncConfig,
)
from sqlalchemy import event
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from safespace.settings import Settings


def _sqlite_pragmas(dbapi_connection, _record) -> None:  # noqa: ANN001
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA busy_timeout=5000")
    cursor.execute("PRAGMA foreign_keys=ON")
    # Deleted rows are overwritten, so a copy of the file does not keep what was removed.
    cursor.execute("PRAGMA secure_delete=ON")
    cursor.close()


def configure_engine(engine: AsyncEngine) -> AsyncEngine:
    if engine.dialect.name == "sqlite":
        event.listen(engine.sync_engine, "connect", _sqlite_pragmas)
    return engine


def make_engine(settings: Settings) -> AsyncEngine:
    if settings.is_sqlite:
        from pathlib import Path

        Path(settings.data_dir).mkdir(parents=True, exist_ok=True)
    # hide_parameters: an error on the answer path must not log the values it was writing (P7).
    if settings.is_sqlite:
        return configure_engine(create_async_engine(settings.database, hide_parameters=True))
    # A stuck lock or query fails the request instead of holding a worker forever.
    timeouts = {"server_settings": {"lock_timeout": "10s", "statement_timeout": "30s"}}
    return configure_engine(
        # No ping before every checkout (a round trip per request); stale connections are
        # recycled instead, and a dropped one fails one request rather than all.
        create_async_engine(settings.database, pool_recycle=1800, connect_args=timeouts, hide_parameters=True)
    )


def alchemy_config(settings: Settings) -> SQLAlchemyAsyncConfig:
    engine = make_engine(settings)
    return SQLAlchemyAsyncConfig(
        engine_instance=engine,
        session_config=AsyncSessionConfig(expire_on_commit=False),
        engine_config=EngineConfig(),
        # plain "autocommit" rolls back a form POST that answers with a redirect
        before_send_handler="autocommit_include_redirects",
        create_all=False,
    )
