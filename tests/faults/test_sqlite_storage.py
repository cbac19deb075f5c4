"""SQLite's file turns read-only, or its disk fills up: a clear 503 page, then recovery, no corruption.

Root ignores file modes, so "read-only" is `chattr +i` (immutable) on the database and its WAL,
which stops root too: the server's open connection gets SQLITE_IOERR_WRITE, a new one
SQLITE_READONLY. The -shm file stays writable: SQLite maps it into memory, and an immutable
mapping kills the process with SIGBUS at the next write (found while writing this test).
"Disk full" is a real one: the data directory on a 4 MB tmpfs mounted for the test, filled up
with a spare file (SQLITE_FULL). A max_page_count PRAGMA would need a hook in the product, and a
loop device needs mkfs and more clean-up; tmpfs needs only mount, which root has here.
"""

from __future__ import annotations

import asyncio
import shutil
import sqlite3
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from safespace.db.engine import make_engine
from safespace.settings import Settings
from tests.faults.conftest import ALREADY_ANSWERED, DATABASE_DOWN, open_forms, post_answer, seed_pulse
from tests.faults.conftest import request as http

MEMBERS, BEFORE, DURING = 20, 6, 6


def _run(*command: str) -> subprocess.CompletedProcess:
    return subprocess.run(command, capture_output=True, text=True, timeout=60)


@pytest.fixture
def read_only(tmp_path: Path) -> Iterator[tuple[Path, callable, callable]]:
    data = tmp_path / "data"
    data.mkdir()
    files = [data / "safespace.db", data / "safespace.db-wal"]
    if shutil.which("chattr") is None:
        pytest.skip("chattr is not installed (e2fsprogs)")
    probe = tmp_path / "probe"
    probe.touch()
    if _run("chattr", "+i", str(probe)).returncode != 0:
        pytest.skip("this file system does not take chattr +i")
    _run("chattr", "-i", str(probe))
    break_it = lambda: [_run("chattr", "+i", str(f)) for f in files]  # noqa: E731
    mend = lambda: [_run("chattr", "-i", str(f)) for f in files]  # noqa: E731
    try:
        yield data, break_it, mend
    finally:
        mend()


@pytest.fixture
def full_disk(tmp_path: Path) -> Iterator[tuple[Path, callable, callable]]:
    data = tmp_path / "data"
    data.mkdir()
    if _run("mount", "-t", "tmpfs", "-o", "size=4m", "tmpfs", str(data)).returncode != 0:
        pytest.skip("cannot mount a tmpfs here (needs root and CAP_SYS_ADMIN)")
    spare = data / "spare"

    def break_it() -> None:
        with spare.open("wb") as filler:
            try:
                while True:
                    filler.write(b"\0" * 65536)
                    filler.flush()
            except OSError:  # ENOSPC: the disk is full
                pass

    try:
        yield data, break_it, lambda: spare.unlink()
    finally:
        _run("umount", "-l", str(data))


@pytest.mark.parametrize("fault", ["read_only", "full_disk"])
async def test_sqlite_storage_failure_answers_503_without_corruption(
    fault: str, request: pytest.FixtureRequest, serve
) -> None:
    data, break_it, mend = request.getfixturevalue(fault)
    database_url = f"sqlite+aiosqlite:///{data / 'safespace.db'}"
    engine = make_engine(Settings(data_dir=str(data), database_url=database_url))
    try:
        pulse = await seed_pulse(engine, MEMBERS)
        await engine.dispose()
        server = await serve(database_url, workers=1, data_dir=data)
        await open_forms(server.port, pulse, concurrency=4)
        early, late, waiting = pulse.members[:BEFORE], pulse.members[BEFORE : BEFORE + DURING], pulse.members[BEFORE + DURING :]
        assert [(await post_answer(server.port, pulse, m))[0] for m in early] == [303] * BEFORE

        await asyncio.to_thread(break_it)
        refused = [await post_answer(server.port, pulse, m) for m in late]
        assert [status for status, _ in refused] == [503] * DURING, server.log_text()[-3000:]
        assert all(DATABASE_DOWN in body and b"<html" in body for _, body in refused)
        again = await post_answer(server.port, pulse, early[0])  # reads still work: the ledger says so
        assert again[0] == 409 and ALREADY_ANSWERED in again[1]
        page = await http(server.port, "GET", f"/c/{pulse.community_id}", early[1].cookies)
        assert page[0] in (200, 503), page  # a read may need a write (a session touch): a clear page either way

        await asyncio.to_thread(mend)
        # Those refused try again and get in; nobody else is affected.
        assert [(await post_answer(server.port, pulse, m))[0] for m in late + waiting] == [303] * (DURING + len(waiting))
        server.stop()
        log = server.log_text()
        assert "database unavailable" in log and "unhandled error" not in log, log[-3000:]

        with sqlite3.connect(data / "safespace.db") as check:
            assert check.execute("PRAGMA integrity_check").fetchall() == [("ok",)]
        found = await pulse.ledger()
        assert found == {"participation": MEMBERS, "community": MEMBERS, "teams": MEMBERS, "comments": pulse.commenters()}
    finally:
        await engine.dispose()
