"""PostgreSQL stops for a few seconds under load: requests fail with a clear 503, then recover.

The outage happens in a throwaway cluster of the test's own (initdb on a free port in a temporary
directory owned by `postgres`, which PostgreSQL needs since it refuses to run as root), never in
the machine's main one.
"""

from __future__ import annotations

import asyncio
import glob
import os
import shutil
import subprocess
import tempfile
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import asyncpg
import pytest

from safespace.db.engine import make_engine
from safespace.settings import Settings
from tests.conftest import IN_CI, free_port
from tests.faults.conftest import ALREADY_ANSWERED, DATABASE_DOWN, open_forms, post_answer, request, seed_pulse

MEMBERS = 60
OUTAGE_SECONDS = 3.0


def _binaries() -> Path | None:
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
    return Path(found[-1]).parent if found and shutil.which("runuser") else None


class Cluster:
    """A PostgreSQL cluster in a temporary directory, run as `postgres` through runuser."""

    def __init__(self, bin_dir: Path) -> None:
        self.bin_dir, self.port = bin_dir, free_port()
        self.home = Path(tempfile.mkdtemp(prefix="safespace-pg-"))
        shutil.chown(self.home, "postgres", "postgres")
        self.data = self.home / "data"

    def _as_postgres(self, *command: str) -> None:
        done = subprocess.run(["runuser", "-u", "postgres", "--", *command], capture_output=True, text=True, timeout=120)
        assert done.returncode == 0, f"{command[0]}: {done.stdout}{done.stderr}"

    def init(self) -> None:
        self._as_postgres(str(self.bin_dir / "initdb"), "-D", str(self.data), "-U", "root", "-A", "trust", "--no-sync", "-E", "UTF8")

    def start(self) -> None:
        options = f"-p {self.port} -k {self.home} -c listen_addresses=127.0.0.1 -c fsync=off"
        self._as_postgres(str(self.bin_dir / "pg_ctl"), "-D", str(self.data), "-l", str(self.home / "log"), "-o", options, "-w", "start")

    def stop(self, mode: str = "fast") -> None:
        self._as_postgres(str(self.bin_dir / "pg_ctl"), "-D", str(self.data), "-m", mode, "-w", "stop")

    def url(self, database: str) -> str:
        return f"postgresql+asyncpg://root@127.0.0.1:{self.port}/{database}"

    async def new_database(self, name: str = "safespace") -> str:
        """Creates an empty database in the cluster; returns its URL."""
        admin = await asyncpg.connect(f"postgresql://root@127.0.0.1:{self.port}/postgres")
        try:
            await admin.execute(f'CREATE DATABASE "{name}"')
        finally:
            await admin.close()
        return self.url(name)


@contextmanager
def throwaway_cluster(kind: type[Cluster] = Cluster) -> Iterator[Cluster]:
    """A started cluster of `kind`, stopped and removed afterwards; skipped (failed in CI) where
    PostgreSQL's server binaries or root are missing."""
    bin_dir = _binaries()
    if bin_dir is None or os.geteuid() != 0:
        message = "needs PostgreSQL's initdb (/usr/lib/postgresql/*/bin), runuser and root to run a throwaway cluster"
        if IN_CI:
            pytest.fail(message)
        pytest.skip(message)
    made = kind(bin_dir)
    try:
        made.init()
        made.start()
        yield made
    finally:
        subprocess.run(["runuser", "-u", "postgres", "--", str(bin_dir / "pg_ctl"), "-D", str(made.data), "-m", "immediate", "stop"],
                       capture_output=True, timeout=60)  # fmt: skip
        shutil.rmtree(made.home, ignore_errors=True)


@pytest.fixture
def cluster() -> Iterator[Cluster]:
    with throwaway_cluster() as made:
        yield made


RECOVERY_SECONDS = 5  # after the restart, every request must work again from then on


async def test_database_outage_answers_503_then_recovers(cluster: Cluster, serve, tmp_path: Path) -> None:
    database_url = await cluster.new_database()
    engine = make_engine(Settings(data_dir=str(tmp_path / "data"), database_url=database_url))
    try:
        pulse = await seed_pulse(engine, MEMBERS)
        server = await serve(database_url, workers=2)
        await open_forms(server.port, pulse)
        home = f"/c/{pulse.community_id}"
        results = f"/api/v1/communities/{pulse.community_id}/rounds/{pulse.round_id}/results"

        seen: list[tuple[float, str, int, bytes]] = []  # (time, what, status, body)
        answered: set[int] = set()
        stop = asyncio.Event()

        async def member_visits(member) -> None:
            """Answers until the app takes (303) or knows (409) the answer, reading pages meanwhile."""
            while not stop.is_set():
                if member.index not in answered:
                    status, body = await post_answer(server.port, pulse, member)
                    seen.append((time.monotonic(), "answer", status, body))
                    if status in (303, 409):
                        answered.add(member.index)
                for what, path in (("page", home), ("api", results)):
                    status, body = await request(server.port, "GET", path, member.cookies)
                    seen.append((time.monotonic(), what, status, body))
                await asyncio.sleep(0.05)

        # One member of each team opens the home page first: its round key is made on first use.
        for member in pulse.members[:4]:
            assert (await request(server.port, "GET", home, member.cookies))[0] == 200
        visits = [asyncio.create_task(member_visits(m)) for m in pulse.members[: MEMBERS // 2]]
        await asyncio.sleep(1.0)
        down_at = time.monotonic()
        await asyncio.to_thread(cluster.stop, "fast")
        await asyncio.sleep(OUTAGE_SECONDS)
        await asyncio.to_thread(cluster.start)
        up_at = time.monotonic()
        # The other half arrives while the database comes back.
        visits += [asyncio.create_task(member_visits(m)) for m in pulse.members[MEMBERS // 2 :]]
        deadline = up_at + 30
        while len(answered) < MEMBERS and time.monotonic() < deadline:
            await asyncio.sleep(0.2)
        # Pages keep being read until well past the recovery window checked below.
        await asyncio.sleep(max(1.0, up_at + RECOVERY_SECONDS + 2 - time.monotonic()))
        stop.set()
        await asyncio.gather(*visits)

        statuses = Counter((what, status) for _, what, status, _ in seen)
        assert {status for _, status in statuses} <= {200, 303, 409, 503}, (statuses, server.log_text())
        outage = [(what, status, body) for t, what, status, body in seen if down_at <= t <= up_at]
        assert any(status == 503 for _, status, _ in outage), f"no 503 while the database was down: {statuses}"
        for what, status, body in outage:
            if status == 503:
                assert DATABASE_DOWN in body, body[:500]
                if what == "api":  # an RFC 9457 problem document
                    assert b'"status":503' in body and b'"title"' in body, body
                else:
                    assert b"<html" in body and b"Traceback" not in body
        # Recovered: within a few seconds of the restart every request works again.
        late = Counter(status for t, _, status, _ in seen if t > up_at + RECOVERY_SECONDS)
        assert late and set(late) <= {200, 303, 409}, late
        assert len(answered) == MEMBERS, f"{MEMBERS - len(answered)} members never got their answer in"
        await engine.dispose()  # the test's own pooled connections died with the server
        found = await pulse.ledger()
        assert found["participation"] == found["community"] == found["teams"] == MEMBERS, found
        log = server.log_text()
        assert "database unavailable" in log and "unhandled error" not in log, log[-3000:]
        assert all(ALREADY_ANSWERED in body for _, what, status, body in seen if what == "answer" and status == 409)
    finally:
        await engine.dispose()
