"""INSERT ... ON CONFLICT DO NOTHING on both databases: make a row once, however many race for it."""

from __future__ import annotations

from typing import Any

from sqlalchemy import Insert, Table
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.ext.asyncio import AsyncSession


def insert_ignoring(dialect: str, table: Table, unique: list[str]) -> Insert:
    """INSERT INTO table ... ON CONFLICT (unique) DO NOTHING, for the given dialect's name."""
    insert = pg_insert if dialect == "postgresql" else sqlite_insert
    return insert(table).on_conflict_do_nothing(index_elements=unique)


async def insert_once(db: AsyncSession, model: type, values: dict[str, Any], unique: list[str]) -> None:
    """Insert the row unless one with the same `unique` columns exists (no error, no rollback).

    A plain INSERT that loses a race raises, and the rollback that follows throws away the rest of
    the request's transaction and expires its loaded objects; this never does.
    """
    await db.execute(insert_ignoring(db.bind.dialect.name, model.__table__, unique).values(**values))
