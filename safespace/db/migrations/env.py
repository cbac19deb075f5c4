"""Alembic environment: runs migrations on the engine `safespace migrate` hands over."""

from __future__ import annotations

import asyncio

from alembic import context
from sqlalchemy.engine import Connection

from safespace.db.models import metadata

config = context.config


def _run(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=metadata,
        render_as_batch=connection.dialect.name == "sqlite",  # SQLite alters tables by copying
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()


async def _run_async() -> None:
    from safespace.db.engine import make_engine
    from safespace.settings import load_settings

    engine = config.attributes.get("engine") or make_engine(load_settings())
    async with engine.connect() as connection:
        await connection.run_sync(_run)
        await connection.commit()
    if "engine" not in config.attributes:
        await engine.dispose()


if context.is_offline_mode():
    raise SystemExit("Safespace migrations run online: use `safespace migrate`.")
asyncio.run(_run_async()) if not config.attributes.get("connection") else _run(config.attributes["connection"])
