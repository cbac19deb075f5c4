"""Load and faults against the served app: a real `safespace serve` (uvicorn), members as sockets.

Sizes are bounded so that `make test` stays quick: 100 members by default; the issue's 300 with
FAULT_MEMBERS=300 (about three times as long). Every test is marked `faults`: `-m faults` runs only these,
`-m "not faults"` leaves them out.
"""

from __future__ import annotations

import asyncio
import os
import random
import signal
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from safespace.web.session import SESSION_COOKIE
from tests.conftest import free_port
from tests.load import CSRF_COOKIE, Connection, answer_body, ledger, seed

ROOT = Path(__file__).resolve().parents[2]
MEMBERS = int(os.environ.get("FAULT_MEMBERS", "100"))
ALREADY_ANSWERED = b"You have already answered this round"
DATABASE_DOWN = b"cannot reach its database"


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "faults: load and fault tests against a served app (tests/faults)")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    here = Path(__file__).parent
    for item in items:
        if here in Path(item.fspath).parents:
            item.add_marker(pytest.mark.faults)


def is_postgres(database_url: str) -> bool:
    return database_url.startswith("postgresql")


# --- the served app ----------------------------------------------------------------------------------


@dataclass
class Server:
    """`safespace serve` in its own process group, so SIGKILL takes the workers down with it."""

    env: dict[str, str]
    workers: int
    log: Path
    port: int = field(default_factory=free_port)
    process: subprocess.Popen | None = None

    async def start(self) -> None:
        command = [sys.executable, "-m", "safespace", "serve", "--port", str(self.port), "--workers", str(self.workers)]
        env = self.env | {"SAFESPACE_BASE_URL": f"http://127.0.0.1:{self.port}"}
        with self.log.open("a") as log:
            self.process = subprocess.Popen(command, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        for _ in range(300):
            if self.process.poll() is not None:
                pytest.fail(f"the server exited with {self.process.returncode}:\n{self.log.read_text()}")
            connection = Connection(self.port)
            try:
                if (await connection.request("GET", "/healthz", {}))[0] == 200:
                    return
            except ConnectionError:
                await asyncio.sleep(0.1)
            finally:
                connection.close()
        pytest.fail(f"the server did not answer /healthz within 30 s:\n{self.log.read_text()}")

    def kill(self) -> None:
        """Power cut: SIGKILL to the supervisor and every worker at once, no clean-up."""
        assert self.process is not None
        os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait()

    def stop(self) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        os.killpg(self.process.pid, signal.SIGTERM)
        try:
            self.process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait()

    def log_text(self) -> str:
        return self.log.read_text(errors="replace")


def server_env(data_dir: Path, database_url: str) -> dict[str, str]:
    return os.environ | {
        "SAFESPACE_DATA_DIR": str(data_dir),
        "SAFESPACE_DATABASE_URL": database_url,
        "SAFESPACE_SCHEDULE_INTERVAL_SECONDS": "0",  # no schedule inside serve: the tests tick themselves
        "SAFESPACE_LOG_LEVEL": "WARNING",
    }


@pytest.fixture
async def serve(tmp_path: Path) -> AsyncIterator[Callable[..., Awaitable[Server]]]:
    """Start servers (stopped at the end of the test, even when it fails)."""
    started: list[Server] = []

    async def start(database_url: str, workers: int = 1, data_dir: Path | None = None, env: dict[str, str] | None = None) -> Server:
        data_dir = data_dir or tmp_path / "data"
        data_dir.mkdir(exist_ok=True)
        server = Server(server_env(data_dir, database_url) | (env or {}), workers, tmp_path / f"serve-{len(started)}.log")
        started.append(server)
        await server.start()
        return server

    yield start
    for server in started:
        server.stop()


# --- members ------------------------------------------------------------------------------------------


@dataclass
class Member:
    index: int
    session: str
    csrf: str = ""
    body: bytes = b""
    statuses: list[int] = field(default_factory=list)

    @property
    def cookies(self) -> dict[str, str]:
        return {SESSION_COOKIE: self.session} | ({CSRF_COOKIE: self.csrf} if self.csrf else {})


@dataclass
class Pulse:
    """A community with members signed in and an open round, seeded by bench/submit.py's code."""

    engine: AsyncEngine
    community_id: str
    round_id: str
    members: list[Member]

    @property
    def path(self) -> str:
        return f"/c/{self.community_id}/rounds/{self.round_id}"

    async def ledger(self) -> dict[str, int]:
        return await ledger(self.engine, uuid.UUID(self.round_id))

    def commenters(self) -> int:
        return sum(commenting(m.index) for m in self.members)


def commenting(index: int) -> bool:
    return index % 10 == 0


async def seed_pulse(engine: AsyncEngine, members: int) -> Pulse:
    community_id, round_id, tokens = await seed(engine, members)
    return Pulse(engine, community_id, round_id, [Member(n, token) for n, token in enumerate(tokens)])


async def request(port: int, method: str, path: str, cookies: dict[str, str], body: bytes = b"") -> tuple[int, bytes]:
    """One request on its own connection: (status, body), or (0, b"") when the server dropped it."""
    connection = Connection(port)
    try:
        status, set_cookies = await connection.request(method, path, cookies, body)
        return status, connection.body
    except ConnectionError:
        return 0, b""
    finally:
        connection.close()


async def open_forms(port: int, pulse: Pulse, concurrency: int = 16) -> None:
    """Every member GETs the answer form (CSRF cookie) and fills it in; some leave a comment."""
    rng, queue = random.Random(7), iter(pulse.members)

    async def worker() -> None:
        connection = Connection(port)
        for member in queue:
            status, set_cookies = await connection.request("GET", pulse.path, member.cookies)
            assert status == 200 and CSRF_COOKIE in set_cookies, f"the answer form answered {status}"
            member.csrf = set_cookies[CSRF_COOKIE]
            member.body = answer_body(member.csrf, rng, comment=commenting(member.index))
        connection.close()

    await asyncio.gather(*(worker() for _ in range(concurrency)))


async def post_answer(port: int, pulse: Pulse, member: Member) -> tuple[int, bytes]:
    status, body = await request(port, "POST", pulse.path, member.cookies, member.body)
    member.statuses.append(status)
    return status, body
