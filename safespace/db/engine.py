"""Engine and session set-up for SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
import time
import weakref
from collections import deque
from collections.abc import AsyncIterator, Sequence
from typing import TYPE_CHECKING, Any

from sqlalchemy import Executable, Row, create_engine, event
from sqlalchemy.dialects.sqlite.aiosqlite import (
    AsyncAdapt_aiosqlite_connection,
    AsyncAdapt_aiosqlite_cursor,
    AsyncAdapt_aiosqlite_dbapi,
)
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import OperationalError
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, create_async_engine

from safespace.settings import Settings

if TYPE_CHECKING:
    from advanced_alchemy.extensions.litestar import SQLAlchemyAsyncConfig

COMMAND_BUSY_SECONDS = 5  # SQLite: how long commands and the schedule wait for another writer's lock
# SQLite reads on the event loop (Reads): the longest one may hold it before it moves to a thread.
# Every-visit reads take microseconds; 20 ms is what a busy loop can spare without being noticed.
INLINE_LIMIT_SECONDS = 0.02
PROGRESS_STEPS = 1000  # SQLite VM steps between checks of the time: a few microseconds


def _sqlite_pragmas(dbapi_connection, _record, busy_seconds: float = COMMAND_BUSY_SECONDS) -> None:  # noqa: ANN001
    cursor = dbapi_connection.cursor()
    # First: setting the journal mode may meet a lock.
    cursor.execute(f"PRAGMA busy_timeout={int(busy_seconds * 1000)}")
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    # Deleted rows are overwritten, so a copy of the file does not keep what was removed.
    cursor.execute("PRAGMA secure_delete=ON")
    cursor.close()


class _OneHopCursor(AsyncAdapt_aiosqlite_cursor):
    """SQLAlchemy's aiosqlite cursor, with each statement done in one trip to the driver's thread.

    The stock adapter makes four trips per SELECT (open a cursor, execute, fetch, close) and three
    per write, each a thread hand-off and an event-loop wake-up; that was most of the CPU time
    of a small transaction on SQLite. Same statements, same results, same errors.
    """

    __slots__ = ()

    def execute(self, operation: Any, parameters: Any = None) -> None:
        def run(conn: sqlite3.Connection) -> tuple[Any, list | None, int | None, int]:
            cursor = conn.cursor()
            try:
                cursor.execute(operation) if parameters is None else cursor.execute(operation, parameters)
                rows = cursor.fetchall() if cursor.description else None
                return cursor.description, rows, cursor.lastrowid, cursor.rowcount
            finally:
                cursor.close()

        try:
            description, rows, lastrowid, rowcount = self.await_(self._connection._execute(run, self._connection._conn))
        except Exception as error:  # noqa: BLE001 - translated exactly as the stock cursor does
            self._adapt_connection._handle_exception(error)
        if description:
            self.description, self.lastrowid, self.rowcount = description, -1, -1
            self._rows = deque(rows)
        else:
            self.description, self.lastrowid, self.rowcount = None, lastrowid, rowcount

    def executemany(self, operation: Any, seq_of_parameters: Any) -> None:
        def run(conn: sqlite3.Connection) -> tuple[int | None, int]:
            cursor = conn.cursor()
            try:
                cursor.executemany(operation, seq_of_parameters)
                return cursor.lastrowid, cursor.rowcount
            finally:
                cursor.close()

        try:
            lastrowid, rowcount = self.await_(self._connection._execute(run, self._connection._conn))
        except Exception as error:  # noqa: BLE001
            self._adapt_connection._handle_exception(error)
        self.description, self.lastrowid, self.rowcount = None, lastrowid, rowcount


class _OneHopConnection(AsyncAdapt_aiosqlite_connection):
    __slots__ = ()

    def _idle(self) -> bool:
        # in_transaction is SQLite's own flag, safe to read from here.
        try:
            return not self._connection._conn.in_transaction
        except ValueError:  # no connection: let the stock path raise its error
            return False

    def rollback(self) -> None:
        # The pool rolls back every connection it takes back; with no transaction open (a
        # request that only read) that is a trip to the thread for nothing.
        if not self._idle():
            super().rollback()

    def commit(self) -> None:
        # Likewise the commit of a request that only read (every page view): nothing to commit.
        if not self._idle():
            super().commit()

    def cursor(self, server_side: bool = False) -> AsyncAdapt_aiosqlite_cursor:
        return super().cursor(server_side) if server_side else _OneHopCursor(self)


class _OneHopDBAPI(AsyncAdapt_aiosqlite_dbapi):
    def connect(self, *arg: Any, **kw: Any) -> AsyncAdapt_aiosqlite_connection:
        adapted = super().connect(*arg, **kw)
        if type(adapted) is AsyncAdapt_aiosqlite_connection:
            return _OneHopConnection(self, adapted._connection)
        return adapted  # the async_fallback flavour (not used by the app): unchanged


def _sqlite_dbapi() -> dict[str, Any]:
    """create_async_engine's module= for SQLite: the one-trip cursor where aiosqlite allows it."""
    import aiosqlite

    # _execute (queue a function for the connection's thread) and _conn are aiosqlite internals
    # (0.17 to 0.22); without them the stock adapter is used.
    if not (hasattr(aiosqlite.Connection, "_execute") and hasattr(aiosqlite.Connection, "_conn")):
        return {}
    return {"module": _OneHopDBAPI(aiosqlite, sqlite3)}


def _savepoint_as_writer(conn: Connection, _name: str) -> None:
    """A SAVEPOINT outside a transaction opens one as a reader: its reads pin a snapshot, and its
    first write then fails at once with "database is locked" if another connection committed
    since (a snapshot cannot become a write; the busy timeout does not apply). The code that
    takes savepoints (opening a round now, the schedule, sign-in, story release) writes after
    reading, so such a transaction begins as a writer instead, waiting its turn on the busy
    timeout like any other write."""
    if not conn.connection.driver_connection.in_transaction:
        conn.exec_driver_sql("BEGIN IMMEDIATE")


def configure_engine(engine: AsyncEngine, busy_seconds: float = COMMAND_BUSY_SECONDS) -> AsyncEngine:
    if engine.dialect.name == "sqlite":
        event.listen(engine.sync_engine, "connect", lambda dbapi_connection, record: _sqlite_pragmas(dbapi_connection, record, busy_seconds))
        event.listen(engine.sync_engine, "savepoint", _savepoint_as_writer)
    return engine


def make_engine(settings: Settings, *, request_limits: bool = False) -> AsyncEngine:
    """The engine of a command, or with request_limits the served app's: a request waits at most
    SAFESPACE_DATABASE_POOL_TIMEOUT_SECONDS for a connection and each of its statements runs at most
    SAFESPACE_DATABASE_STATEMENT_TIMEOUT_SECONDS, so a stuck or frozen database answers 503 instead
    of holding every visitor for as long as it is stuck. Commands (tick, backup, restore, migrate)
    and the schedule inside serve do long work on purpose, and get no such limits."""
    if settings.is_sqlite:
        from pathlib import Path

        Path(settings.data_dir).mkdir(parents=True, exist_ok=True)
    # hide_parameters: an error on the answer path must not log the values it was writing (P7).
    # The pool keeps SAFESPACE_DATABASE_POOL_SIZE connections and opens no more: a request
    # beyond them waits for one. SQLAlchemy's default, 5 kept and 10 more
    # opened and closed again as needed, opened and closed connections all the time as soon as
    # more than 5 requests ran at once: a thread and four PRAGMAs each on SQLite, a server
    # process on PostgreSQL. That cost a simple page two thirds of its speed at 16 requests at
    # once (bench/dashboard.py's floor). A request uses one connection at a time (the session
    # middleware's is back before the handler takes one); a tick may use two, hence at least 2.
    pool: dict[str, Any] = {"pool_size": settings.database_pool_size, "max_overflow": 0, "hide_parameters": True}
    if request_limits:
        pool["pool_timeout"] = settings.database_pool_timeout_seconds
    limit = settings.database_statement_timeout_seconds
    if settings.is_sqlite:
        # SQLite's only wait is for another writer's lock: the busy timeout is the statement limit.
        engine = create_async_engine(settings.database, **pool, **_sqlite_dbapi())
        return configure_engine(engine, busy_seconds=limit if request_limits else COMMAND_BUSY_SECONDS)
    connect_args: dict[str, Any] = {}
    if request_limits:
        connect_args = {
            "timeout": settings.database_pool_timeout_seconds,  # opening a connection (asyncpg waits 60 s)
            # The server cancels a slow statement, waits for locks included, and the connection stays usable.
            "server_settings": {"statement_timeout": f"{limit}s"},
            # The client's own limit, for a server that does not answer at all (stopped, frozen,
            # cut off); later than the server's, which fails more cleanly when it can.
            "command_timeout": limit + 2,
        }
    return configure_engine(
        # No ping before every checkout (a round trip per request); stale connections are
        # recycled instead, and a dropped one fails one request rather than all.
        create_async_engine(settings.database, pool_recycle=1800, connect_args=connect_args, **pool)
    )


class Reads:
    """A page's every-visit reads, one statement at a time, on bare connections: Core, no ORM
    session, no transaction to begin and end. Only for index lookups that cost microseconds (the
    signed-in session, the trend page's state); anything larger goes through the request's session.

    - PostgreSQL: each statement stands alone (autocommit: no BEGIN and ROLLBACK round trips).
    - SQLite: run on the event loop's own thread by the standard library's driver. aiosqlite's
      hand-off to its thread and back (a thread switch each way and a wake-up of the loop) cost
      more than the lookup itself: a third of a trend page's CPU time. The connection is read
      only (query_only) and never waits for a lock (busy_timeout 0), so the loop never waits on
      SQLite: a read that finds the database busy (WAL recovery, another process holding it
      exclusively) is done again through aiosqlite, which waits in its own thread. A read that
      runs past INLINE_LIMIT_SECONDS (a cold page cache, a plan gone wrong) is interrupted by
      SQLite's progress handler and done again there too, as datasette bounds its queries.
    """

    def __init__(self, engine: AsyncEngine) -> None:
        self.moved_to_thread = 0  # SQLite: reads done again in aiosqlite's thread (busy, or too long)
        postgresql = engine.dialect.name == "postgresql"
        # Also the connection for the few writes that go with these reads (identity.signin.settle).
        self.engine = engine.execution_options(isolation_level="AUTOCOMMIT") if postgresql else engine
        self._inline: Engine | None = None
        if engine.dialect.name == "sqlite":
            # One connection, kept (the loop's thread reads one statement at a time); a second
            # thread (a test's) gets one of its own for the moment instead of waiting for it.
            self._inline = create_engine(
                engine.url.set(drivername="sqlite+pysqlite"),
                pool_size=1,
                max_overflow=-1,
                hide_parameters=True,
                connect_args={"check_same_thread": False},
            )
            event.listen(self._inline, "connect", _sqlite_read_pragmas)

    async def rows(self, statement: Executable, parameters: dict[str, Any], *, inline: bool = True) -> Sequence[Row]:
        """The statement's rows. inline=False: on SQLite, in aiosqlite's thread all the same (a
        batch's reads, whose lists of ids would hold the loop for a millisecond or more)."""
        if self._inline is not None and inline:
            try:
                with self._inline.connect() as conn:
                    deadline = time.perf_counter() + INLINE_LIMIT_SECONDS
                    # Called every PROGRESS_STEPS virtual-machine steps; a true answer interrupts.
                    conn.connection.dbapi_connection.set_progress_handler(lambda: time.perf_counter() > deadline, PROGRESS_STEPS)
                    return conn.execute(statement, parameters).all()
            except OperationalError as error:
                if not getattr(error.orig, "sqlite_errorname", "").startswith(("SQLITE_BUSY", "SQLITE_LOCKED", "SQLITE_INTERRUPT")):
                    raise
                self.moved_to_thread += 1
        async with self.engine.connect() as conn:
            return (await conn.execute(statement, parameters)).all()

    def dispose(self) -> None:
        if self._inline is not None:
            self._inline.dispose()


def _sqlite_read_pragmas(dbapi_connection, _record) -> None:  # noqa: ANN001
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA busy_timeout=0")
    cursor.execute("PRAGMA query_only=ON")
    cursor.close()


def alchemy_config(settings: Settings) -> SQLAlchemyAsyncConfig:
    # Imported here: the Litestar integration is for the served app, and the commands that only
    # need an engine (migrate, tick, backup...) start half a second sooner without it.
    from advanced_alchemy.extensions.litestar import AsyncSessionConfig, EngineConfig, SQLAlchemyAsyncConfig

    engine = make_engine(settings, request_limits=True)
    return SQLAlchemyAsyncConfig(
        engine_instance=engine,
        session_config=AsyncSessionConfig(expire_on_commit=False),
        engine_config=EngineConfig(),
        # plain "autocommit" rolls back a form POST that answers with a redirect; the app puts
        # web.transaction.commit_before_send in its place, which also refuses to answer success for a failed commit
        before_send_handler="autocommit_include_redirects",
        create_all=False,
    )


# One SQLite database, one writer at a time: SQLite makes a second writer poll (sleeping 1 to
# 100 ms between tries, up to busy_timeout), so under load the lock sits free while the waiters
# sleep. The writers that run all the time under load, the two group commits (answers,
# pulse/group_commit.py; answer tokens, pulse/token_queue.py), each one batch at a time, take
# turns here instead and are handed the lock at once. The other writers (a request's session,
# the schedule, commands) are rare and left to SQLite's busy timeout: the driver begins their
# transaction at its first write (a savepoint's with BEGIN IMMEDIATE: _savepoint_as_writer), so
# they wait for the lock and never fail to upgrade a read to a write. This only orders this
# process's writers; correctness rests on SQLite's own lock.
_write_turns: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, weakref.WeakKeyDictionary[Engine, asyncio.Lock]] = (
    weakref.WeakKeyDictionary()
)


@contextlib.asynccontextmanager
async def write_turn(db: AsyncSession) -> AsyncIterator[None]:
    """On SQLite, wait for this process's previous write transaction to end; elsewhere nothing.

    Hold it from before the transaction's first write until after its commit; a transaction
    that fails inside is rolled back before the turn passes on.
    """
    engine = db.bind
    if engine is None or engine.dialect.name != "sqlite":
        yield
        return
    per_engine = _write_turns.setdefault(asyncio.get_running_loop(), weakref.WeakKeyDictionary())
    lock = per_engine.setdefault(engine.sync_engine if isinstance(engine, AsyncEngine) else engine, asyncio.Lock())
    async with lock:
        try:
            yield
        except BaseException:
            await db.rollback()
            raise
