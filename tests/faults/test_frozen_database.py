"""A database that stops answering must not hang every request (issue 21 item 3).

Frozen, not stopped: every process of a throwaway PostgreSQL cluster gets SIGSTOP, so connections
stay open and the server neither answers nor refuses, as when a host is overloaded, its storage
stalls or a network path goes silent. Before the time limits, visitors waited for as long as the
freeze lasted (74 s in a 75 s freeze) and then got 200. Now every request answers 503 with
Retry-After while the database is still frozen, /readyz says so, and pages come back on the thaw.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from safespace.db.engine import make_engine
from safespace.settings import Settings
from safespace.web.session import SESSION_COOKIE
from tests.faults.conftest import seed_pulse
from tests.faults.test_database_loss import Cluster, throwaway_cluster

MEMBERS = 8
LIMITS = {"SAFESPACE_DATABASE_STATEMENT_TIMEOUT_SECONDS": "2", "SAFESPACE_DATABASE_POOL_TIMEOUT_SECONDS": "1"}
# Longer than every limit above together: whatever answers before the thaw answered on its own.
FREEZE_SECONDS = 40


@pytest.fixture
def cluster() -> Iterator[Cluster]:
    with throwaway_cluster() as made:
        yield made


def _cluster_processes(cluster: Cluster) -> list[int]:
    postmaster = int((cluster.data / "postmaster.pid").read_text().split()[0])
    children = subprocess.run(["pgrep", "-P", str(postmaster)], capture_output=True, text=True).stdout.split()
    return [postmaster, *map(int, children)]


async def test_a_frozen_database_answers_503_at_once_and_recovers(cluster: Cluster, serve, tmp_path: Path) -> None:
    database_url = await cluster.new_database()
    engine = make_engine(Settings(data_dir=str(tmp_path / "data"), database_url=database_url))
    try:
        pulse = await seed_pulse(engine, MEMBERS)
    finally:
        await engine.dispose()
    server = await serve(database_url, env=LIMITS)
    home = f"/c/{pulse.community_id}"

    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{server.port}", timeout=FREEZE_SECONDS + 30) as http:

        async def visit(n: int) -> httpx.Response:
            member = pulse.members[n % MEMBERS]
            return await http.get(home, headers={"cookie": f"{SESSION_COOKIE}={member.session}"})

        assert [r.status_code for r in await asyncio.gather(*(visit(n) for n in range(MEMBERS)))] == [200] * MEMBERS

        frozen = _cluster_processes(cluster)
        for pid in frozen:
            os.kill(pid, signal.SIGSTOP)
        try:
            # More visitors at once than the pool has connections: some wait for one, and give up.
            answered = asyncio.gather(*(visit(n) for n in range(30)), http.get("/readyz"))
            *pages, ready = await asyncio.wait_for(answered, timeout=FREEZE_SECONDS)
            assert all(pid_is_stopped(pid) for pid in frozen), "the database thawed early: the test proved nothing"
        finally:
            for pid in frozen:
                os.kill(pid, signal.SIGCONT)

        assert [p.status_code for p in pages] == [503] * 30
        assert all(p.headers.get("retry-after") == "30" for p in pages)
        assert "cannot reach its database" in pages[0].text
        assert ready.status_code == 503 and ready.headers["retry-after"] == "30"

        # Thawed: the server serves again (connections that timed out are replaced as needed).
        statuses: list[int] = []
        for _ in range(100):
            statuses = [r.status_code for r in await asyncio.gather(*(visit(n) for n in range(MEMBERS)))]
            if statuses == [200] * MEMBERS:
                break
            await asyncio.sleep(0.2)
        assert statuses == [200] * MEMBERS
        assert (await http.get("/readyz")).status_code == 200
    assert "Traceback" not in server.log.read_text()


def pid_is_stopped(pid: int) -> bool:
    return Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[0] == "T"
