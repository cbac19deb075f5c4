"""safespace.db.engine.Reads on SQLite: reads on the event loop's thread that never make it wait."""

from __future__ import annotations

import asyncio
import sqlite3
import time
from pathlib import Path

import pytest
from sqlalchemy import column, select, table, text
from sqlalchemy.exc import OperationalError
from sqlalchemy.ext.asyncio import create_async_engine

from safespace.db.engine import Reads, configure_engine

NOTE = table("note", column("body"))


@pytest.fixture
def database(tmp_path: Path) -> Path:
    path = tmp_path / "reads.db"
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("CREATE TABLE note (body TEXT)")
    conn.execute("INSERT INTO note VALUES ('first')")
    conn.close()
    return path


async def test_a_read_sees_what_was_committed_a_moment_before_and_writes_nothing(database: Path) -> None:
    engine = configure_engine(create_async_engine(f"sqlite+aiosqlite:///{database}"))
    reads = Reads(engine)
    try:
        assert [row.body for row in await reads.rows(select(NOTE.c.body), {})] == ["first"]
        async with engine.begin() as conn:
            await conn.execute(NOTE.insert().values(body="second"))
        assert sorted(row.body for row in await reads.rows(select(NOTE.c.body), {})) == ["first", "second"]
        with pytest.raises(OperationalError, match="readonly"):  # query_only: a read is all it can do
            await reads.rows(text("DELETE FROM note"), {})
    finally:
        reads.dispose()
        await engine.dispose()


async def test_a_busy_database_is_waited_for_off_the_event_loop(database: Path) -> None:
    """Another process holds the database exclusively: the read waits for it in aiosqlite's
    thread (its busy timeout), and the event loop goes on serving everything else meanwhile."""
    holder = sqlite3.connect(database, isolation_level=None)
    holder.execute("PRAGMA locking_mode=EXCLUSIVE")
    holder.execute("BEGIN IMMEDIATE")
    holder.execute("INSERT INTO note VALUES ('held')")
    holder.execute("COMMIT")  # in exclusive locking mode the lock stays after the commit
    engine = configure_engine(create_async_engine(f"sqlite+aiosqlite:///{database}"))
    reads = Reads(engine)
    try:
        read = asyncio.create_task(reads.rows(select(NOTE.c.body), {}))
        started = time.monotonic()
        await asyncio.sleep(0.3)
        assert time.monotonic() - started < 1.0  # the loop was not held by the busy read
        assert not read.done()  # still waiting for the lock, in its thread
        holder.close()  # exclusive from its first access: only closing gives the lock up
        assert sorted(row.body for row in await asyncio.wait_for(read, 5)) == ["first", "held"]
        assert len(await reads.rows(select(NOTE.c.body), {})) == 2  # and on the loop's thread again
    finally:
        holder.close()
        reads.dispose()
        await engine.dispose()


async def test_a_long_read_leaves_the_event_loop_for_a_thread(database: Path) -> None:
    """A read that outlives the inline time limit is interrupted and done again in aiosqlite's
    thread, with the same result, while the loop goes on (datasette's sql_time_limit_ms)."""
    engine = configure_engine(create_async_engine(f"sqlite+aiosqlite:///{database}"))
    reads = Reads(engine)
    long_read = text("WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 3000000) SELECT count(*) FROM n")
    ticks = 0

    async def tick() -> None:
        nonlocal ticks
        while True:
            await asyncio.sleep(0.005)
            ticks += 1

    ticker = asyncio.create_task(tick())
    try:
        assert (await reads.rows(long_read, {})) == [(3000000,)]
        assert reads.moved_to_thread == 1
        # Held inline, the loop would not have ticked once during the whole count (about a second).
        assert ticks >= 10
        assert [row.body for row in await reads.rows(select(NOTE.c.body), {})] == ["first"]
        assert reads.moved_to_thread == 1  # a short read stays on the loop
    finally:
        ticker.cancel()
        reads.dispose()
        await engine.dispose()
