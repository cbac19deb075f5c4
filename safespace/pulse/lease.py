"""Whose turn it is to run the schedule: one process at a time, and a dead one's turn ends with it.

PostgreSQL: a session-level advisory lock, taken on a connection of its own and held for the
pass. It ends with that connection, so a tick killed midway lets go as soon as the server sees
the connection drop; a killed process closes its sockets as it exits, even while it stays a
zombie (os.kill(pid, 0) still reaches a zombie; the server never asks).
SQLite (one machine): a lease row with an expiry. A holder that was a process of this machine
and has exited, or is a zombie, is taken over at once; any other holder is left to expire.
"""

from __future__ import annotations

import logging
import os
import socket
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import datetime, timedelta

from sqlalchemy import delete, select, text, update
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession

from safespace.db.upsert import insert_once
from safespace.pulse.models import Lease

log = logging.getLogger(__name__)
LEASE_NAME = "schedule"
LEASE_TIME = timedelta(minutes=2)
# Any fixed number names the lock; advisory locks belong to one database, not the whole server.
ADVISORY_LOCK = int.from_bytes(b"schedule", "big")
# A dying holder's connection ends a moment after the process: wait that long, no longer.
ADVISORY_WAIT = "1s"
SCRUB_DUE = "scrub-due"  # a lease row that is a note: old row versions wait to be scrubbed


async def note_scrub_due(db: AsyncSession, moment: datetime) -> None:
    """In a close's own transaction (a round's or a check-in's): the note that old row versions
    wait to be scrubbed. Whoever closed scrubs after the commit; the note makes the schedule's next
    pass scrub too (schedule.tick), so a process that died between its commit and its scrub leaves
    them no longer than one pass."""
    await insert_once(db, Lease, {"name": SCRUB_DUE, "holder": holder_name(), "expires_at": moment}, ["name"])


def _pid_namespace() -> str:
    try:
        return os.readlink("/proc/self/ns/pid").removeprefix("pid:[").removesuffix("]")
    except OSError:  # no /proc: other hosts' pids cannot be told apart, so never judge them gone
        return "?"


_HOST = socket.gethostname()[:40]  # lease.holder is 80 characters
# host, pid, pid namespace (containers may share a host name), and a random part: unique everywhere
_HOLDER = f"{_HOST}:{os.getpid()}:{_pid_namespace()}:{uuid.uuid4().hex[:8]}"


def holder_name() -> str:
    return _HOLDER


def _process_ended(pid: int) -> bool:
    """True if no process has this pid, or it has exited and waits to be reaped (a zombie)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except OSError:  # alive, under another user (or a zombie of theirs: read on)
        pass
    try:
        stat = open(f"/proc/{pid}/stat").read()
    except FileNotFoundError:  # reaped between the two looks
        return True
    except OSError:
        return False
    # "pid (command) state ...": the command may hold spaces and parentheses, the state follows the last ")".
    return stat.rpartition(")")[2].split()[:1] in (["Z"], ["X"])


def _holder_gone(holder: str) -> bool:
    """True if the lease's holder was a process of this machine and pid namespace that has ended.

    A pass killed midway (SIGKILL, OOM, a crashed container) leaves its lease until it expires;
    its transaction rolled back, so the work is still to do and the next pass may take it over at
    once. Holders elsewhere, or whose pid now runs another process, are left to expire.
    """
    host, pid, namespace, _ = [*holder.split(":"), "", "", ""][:4]
    if host != _HOST or namespace in ("?", "") or namespace != _pid_namespace() or not pid.isdigit():
        return False
    return _process_ended(int(pid))


async def take_lease(db: AsyncSession, holder: str, moment: datetime) -> bool:
    """True if this process may do the periodic work now (committed before returning)."""
    taken = await db.execute(
        update(Lease)
        .where(Lease.name == LEASE_NAME, (Lease.expires_at < moment) | (Lease.holder == holder))
        .values(holder=holder, expires_at=moment + LEASE_TIME)
    )
    if taken.rowcount == 0:
        held_by = await db.scalar(select(Lease.holder).where(Lease.name == LEASE_NAME))
        if held_by is not None:
            if _holder_gone(held_by):
                taken = await db.execute(
                    update(Lease)
                    .where(Lease.name == LEASE_NAME, Lease.holder == held_by)  # unless another took it first
                    .values(holder=holder, expires_at=moment + LEASE_TIME)
                )
                if taken.rowcount == 1:
                    log.warning("schedule: took over the lease of %s, which stopped before its pass ended", held_by)
                    await db.commit()
                    return True
            await db.rollback()
            return False
        db.add(Lease(name=LEASE_NAME, holder=holder, expires_at=moment + LEASE_TIME))
        try:
            await db.flush()
        except Exception:  # noqa: BLE001 - another replica inserted it first
            await db.rollback()
            return False
    await db.commit()
    return True


async def release_lease(db: AsyncSession, holder: str) -> None:
    await db.execute(delete(Lease).where(Lease.name == LEASE_NAME, Lease.holder == holder))
    await db.commit()


@asynccontextmanager
async def _advisory_lock(engine: AsyncEngine) -> AsyncIterator[bool]:
    """PostgreSQL: True inside if this process holds the schedule's lock; it ends on leaving."""
    async with engine.connect() as connection:
        try:
            # Autocommit: no transaction stays open for the whole pass. The settings below stay with
            # this connection, which is closed at the end rather than handed back to the pool.
            locker = await connection.execution_options(isolation_level="AUTOCOMMIT")
            # A holder whose machine vanished without closing its socket is noticed within about a
            # minute (the lease row's two minutes, no longer), not after the system's two hours.
            await locker.execute(
                text("SELECT set_config('lock_timeout', :wait, false), set_config('tcp_keepalives_idle', '30', false), "
                     "set_config('tcp_keepalives_interval', '10', false), set_config('tcp_keepalives_count', '3', false)"),
                {"wait": ADVISORY_WAIT},
            )  # fmt: skip
            try:
                await locker.execute(text("SELECT pg_advisory_lock(:key)"), {"key": ADVISORY_LOCK})
                held = True
            except DBAPIError as exc:
                if getattr(exc.orig, "sqlstate", None) != "55P03":  # lock_not_available: another pass runs
                    raise
                held = False
            yield held
        finally:
            await connection.invalidate()  # closed: the lock ends with it, whatever happened above


@asynccontextmanager
async def schedule_turn(db: AsyncSession, holder: str, moment: datetime) -> AsyncIterator[bool]:
    """True inside if this process runs the schedule's pass now; the turn ends on leaving."""
    if db.bind.dialect.name == "postgresql":
        async with _advisory_lock(db.bind) as held:
            yield held
        return
    taken = await take_lease(db, holder, moment)
    try:
        yield taken
    finally:
        if taken:
            # Whatever the pass left undone is rolled back first (the pass commits its work): a
            # shutdown's cancel in the middle of a statement leaves the transaction broken, and
            # releasing inside it raised PendingRollbackError in place of the cancel.
            await db.rollback()
            await release_lease(db, holder)
