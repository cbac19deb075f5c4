"""safespace.db.engine.Reads on SQLite: reads on the event loop's thread that never make it wait."""

from __future__ import annotations

import asyncio
import sqlite3
import threading
import time
from pathlib import Path

import pytest
from sqlalchemy import column, event, select, table, text
from sqlalchemy.exc import OperationalError
from sqlalchemy.ext.asyncio import AsyncSession, create_async_engine

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


async def test_a_savepoint_that_opens_a_transaction_takes_the_write_lock_first(database: Path) -> None:
    """What opening a round now does (a SAVEPOINT, reads, then writes) while another connection
    writes in between, as the mail sender of a publication does: the savepoint's transaction
    begins as a writer, so the other write waits for it instead of this one failing at its first
    write with "database is locked" (a read snapshot cannot become a write after another commit)."""
    engine = configure_engine(create_async_engine(f"sqlite+aiosqlite:///{database}"))
    other = configure_engine(create_async_engine(f"sqlite+aiosqlite:///{database}"))
    try:
        async with AsyncSession(engine) as db:
            async with db.begin_nested():
                assert await db.scalar(text("SELECT count(*) FROM note")) == 1

                async def write_elsewhere() -> None:
                    async with other.begin() as conn:
                        await conn.execute(NOTE.insert().values(body="elsewhere"))

                elsewhere = asyncio.create_task(write_elsewhere())
                await asyncio.sleep(0.3)
                assert not elsewhere.done()  # it waits for this transaction's lock
                await db.execute(NOTE.insert().values(body="here"))
            await db.commit()
        await asyncio.wait_for(elsewhere, 5)
        async with engine.connect() as conn:
            assert sorted((await conn.execute(select(NOTE.c.body))).scalars()) == ["elsewhere", "first", "here"]
    finally:
        await engine.dispose()
        await other.dispose()


async def test_a_savepoint_that_cannot_get_the_write_lock_fails_alone(database: Path) -> None:
    """As a page's housekeeping write does (identity.signin.remember_community): another writer
    holds the database past the busy timeout, so the savepoint's write fails, and the page's
    transaction goes on reading and ends cleanly."""
    holder = sqlite3.connect(database, isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")
    engine = configure_engine(create_async_engine(f"sqlite+aiosqlite:///{database}"), busy_seconds=0.1)
    try:
        async with AsyncSession(engine) as db:
            assert await db.scalar(text("SELECT count(*) FROM note")) == 1
            with pytest.raises(OperationalError, match="locked"):
                async with db.begin_nested():
                    await db.execute(NOTE.insert().values(body="not now"))
            assert await db.scalar(text("SELECT count(*) FROM note")) == 1
            await db.commit()
        holder.execute("COMMIT")
        async with AsyncSession(engine) as db:  # and the next transaction writes as usual
            async with db.begin_nested():
                await db.execute(NOTE.insert().values(body="later"))
            await db.commit()
            assert await db.scalar(text("SELECT count(*) FROM note")) == 2
    finally:
        holder.close()
        await engine.dispose()


async def test_a_read_sent_to_the_thread_leaves_the_event_loop_alone(database: Path) -> None:
    """inline=False (a batch's reads): done in aiosqlite's thread from the start, not interrupted there."""
    engine = configure_engine(create_async_engine(f"sqlite+aiosqlite:///{database}"))
    reads = Reads(engine)
    threads: list[int] = []
    event.listen(reads._inline, "connect", lambda *_args: threads.append(threading.get_ident()))
    try:
        assert [row.body for row in await reads.rows(select(NOTE.c.body), {}, inline=False)] == ["first"]
        assert threads == [] and reads.moved_to_thread == 0  # the loop's own connection was never opened
        assert [row.body for row in await reads.rows(select(NOTE.c.body), {})] == ["first"]
        assert threads == [threading.get_ident()]
    finally:
        reads.dispose()
        await engine.dispose()
