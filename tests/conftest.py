"""Fixtures: every database test runs on SQLite and on PostgreSQL, with a real SMTP server."""

from __future__ import annotations

import asyncio
import email
import email.policy
import gc
import os
import re
import shutil
import socket
import stat
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import datetime
from email.message import EmailMessage
from pathlib import Path

import asyncpg
import httpx
import pytest
from aiosmtpd.controller import Controller
from litestar import Litestar
from sqlalchemy import delete
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from safespace import clock
from safespace.app import create_app
from safespace.db.engine import make_engine
from safespace.db.migrate import upgrade
from safespace.db.models import metadata
from safespace.privacy.crypto import Keyring
from safespace.settings import Settings

IN_CI = os.environ.get("CI", "").lower() in {"1", "true", "yes"}
POSTGRES_ADMIN = os.environ.get("TEST_POSTGRES_URL", "postgresql://root@127.0.0.1:5432/postgres")
BASE_URL = "http://testserver.local"


async def _postgres_problem() -> str | None:
    try:
        connection = await asyncpg.connect(POSTGRES_ADMIN, timeout=5)
    except (TimeoutError, OSError, asyncpg.PostgresError) as exc:
        return f"PostgreSQL is not reachable at {POSTGRES_ADMIN} ({exc.__class__.__name__}: {exc})"
    await connection.close()
    return None


POSTGRES_PROBLEM = asyncio.run(_postgres_problem())


def pytest_report_header(config: pytest.Config) -> list[str]:
    if POSTGRES_PROBLEM is None:
        return [f"databases: SQLite and PostgreSQL ({POSTGRES_ADMIN})"]
    verdict = "CI=true: this is a failure" if IN_CI else "the PostgreSQL half is SKIPPED"
    return [f"databases: SQLite only. {POSTGRES_PROBLEM}; {verdict}."]


def pytest_configure(config: pytest.Config) -> None:
    # The suite builds some 700 apps and allocates without pause; with the default thresholds
    # (700, 10, 10) the collector ran a full pass over every module loaded (Litestar, SQLAlchemy,
    # Playwright...) every 70,000 allocations. Frozen, the heap loaded so far is left out of every
    # pass, and passes come after 50,000 allocations: 15-20% less CPU for the in-process tests
    # (stories and identity: 114-124 s of CPU down to 94-101 s). Cycles are still collected.
    # The served app freezes its heap too once it is built (create_app(freeze_heap=True)), but keeps
    # the default thresholds: short young collections suit a server whose requests wait on them.
    gc.freeze()
    gc.set_threshold(50_000, 20, 20)


# --- workers ------------------------------------------------------------------------------------

# The tests that serve the app in processes of their own (browsers, kills, full disks) and measure
# what happens in time: under `make test`'s two workers they run one after another on one worker,
# never beside each other, while the in-process tests share out over both.
SERVED_TOGETHER = ("tests/e2e/", "tests/faults/")
# But the accessibility crawl (two minutes and more of one worker) runs beside them, on the other
# worker: it only reads pages of a server of its own, and times nothing.
SERVED_APART = "tests/e2e/test_accessibility.py"


def pytest_xdist_make_scheduler(config: pytest.Config, log):
    # xdist's own xdist_group mark does nothing under pytest 9 (it renames item._nodeid, which
    # pytest 9 no longer reads), so the grouping is done here, by path.
    if config.getvalue("dist") not in ("load", "loadscope", "loadgroup"):
        return None  # --dist each, worksteal...: xdist's own
    from xdist.scheduler import LoadScopeScheduling

    class ServedTogether(LoadScopeScheduling):
        def _split_scope(self, nodeid: str) -> str:
            # Scopes go out largest first: "served" starts at once on the first worker, and the
            # crawl's module (four tests) on the second.
            if nodeid.startswith(SERVED_APART):
                return SERVED_APART
            return "served" if nodeid.startswith(SERVED_TOGETHER) else nodeid

    return ServedTogether(config, log)


# --- databases ---------------------------------------------------------------------------------


@pytest.fixture(scope="session", params=["sqlite", "postgresql"])
async def database_url(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[str]:
    if request.param == "sqlite":
        yield f"sqlite+aiosqlite:///{tmp_path_factory.mktemp('sqlite') / 'safespace.db'}"
        return
    if POSTGRES_PROBLEM is not None:
        if IN_CI:
            pytest.fail(f"{POSTGRES_PROBLEM}. CI needs PostgreSQL: .ci/run starts it.")
        pytest.skip(f"{POSTGRES_PROBLEM}: PostgreSQL half skipped (CI=true makes this a failure)")
    name = f"safespace_test_{uuid.uuid4().hex[:12]}"
    admin = await asyncpg.connect(POSTGRES_ADMIN)
    await admin.execute(f'CREATE DATABASE "{name}"')
    await admin.close()
    server = POSTGRES_ADMIN.rsplit("/", 1)[0].replace("postgresql://", "postgresql+asyncpg://")
    yield f"{server}/{name}"
    admin = await asyncpg.connect(POSTGRES_ADMIN)
    await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    await admin.close()


@pytest.fixture(scope="session")
async def engine(database_url: str, tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[AsyncEngine]:
    settings = Settings(data_dir=str(tmp_path_factory.mktemp("data")), database_url=database_url)
    engine = make_engine(settings)
    await upgrade(engine)
    yield engine
    await engine.dispose()


@pytest.fixture
async def db(engine: AsyncEngine) -> AsyncIterator[AsyncSession]:
    """A session on a database emptied before the test (the schema stays)."""
    async with engine.begin() as connection:
        for table in reversed(metadata.sorted_tables):
            await connection.execute(delete(table))
    async with async_sessionmaker(engine, expire_on_commit=False)() as session:
        yield session


# --- mail -------------------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@dataclass
class Inbox:
    """What a real SMTP server (aiosmtpd) received."""

    messages: list[EmailMessage] = field(default_factory=list)

    async def handle_DATA(self, server, session, envelope) -> str:
        message = email.message_from_bytes(envelope.content, policy=email.policy.default)
        self.messages.append(message)  # type: ignore[arg-type]
        return "250 Message accepted for delivery"

    def to(self, address: str) -> list[EmailMessage]:
        return [m for m in self.messages if m["To"] == address]

    def last_link(self, address: str) -> str:
        mails = self.to(address)
        assert mails, f"no mail reached {address}"
        text = mails[-1].get_body(("plain",)).get_content()
        found = re.findall(r"https?://\S+/signin/[\w-]+(?:\?\S+)?", text)
        assert found, f"no sign-in link in the mail to {address}"
        return found[-1]


@pytest.fixture(scope="session")
def smtp_server() -> Iterator[tuple[Inbox, int]]:
    inbox = Inbox()
    port = free_port()
    controller = Controller(inbox, hostname="127.0.0.1", port=port)
    controller.start()
    yield inbox, port
    controller.stop()


@pytest.fixture
def inbox(smtp_server: tuple[Inbox, int]) -> Inbox:
    smtp_server[0].messages.clear()
    return smtp_server[0]


@pytest.fixture
def still_clock(monkeypatch: pytest.MonkeyPatch) -> datetime:
    """The app's clock stopped at the test's start. Rate limits count per fixed window (15 minutes,
    a day, a week): a test that makes limit + 1 attempts on a slow machine could otherwise cross
    into the next window between the last allowed one and the refused one."""
    moment = clock.now()
    monkeypatch.setattr(clock, "now", lambda: moment)
    return moment


# --- the app -------------------------------------------------------------------------------------


# Building the app costs a third of a second or more (Litestar registers some 300 handlers: their
# signatures, dependencies and routes). Built for each of the 560 tests that serve it, that was half
# the in-process tests' time. So a test process builds one app per database (and per settings a
# test module asks for), and each test enters its lifespan anew: the pools made again, no cookies
# (tests/safespace/test_shutdown.py checks an app serves again after it stopped). Each test still
# starts where an app of its own would: the database emptied (db) and the data folder as it was
# first made (data_folder, put back after every test).


@dataclass(frozen=True)
class DataFolder:
    """A data folder the tests of one database share, and what it held when made: its key files."""

    path: Path
    made: dict[Path, tuple[bytes, int]]  # relative path: (contents, mode)

    def put_back(self) -> None:
        """Remove what a test added to the folder and restore what it changed (a rotated key file)."""
        for entry in sorted(self.path.rglob("*"), key=lambda p: len(p.parts), reverse=True):
            if entry.relative_to(self.path) in self.made:
                continue
            if entry.is_dir() and not entry.is_symlink():
                shutil.rmtree(entry)
            else:
                entry.unlink()
        for name, (contents, mode) in self.made.items():
            path = self.path / name
            if not path.is_file() or path.read_bytes() != contents:
                path.write_bytes(contents)
            os.chmod(path, mode)


@pytest.fixture(scope="session")
def data_folder(database_url: str, tmp_path_factory: pytest.TempPathFactory) -> DataFolder:
    path = tmp_path_factory.mktemp("data")
    first = Settings(data_dir=str(path), database_url=database_url)
    first.secret_key()  # both made as the app's first start makes them
    Keyring.load(first.encryption_key_path)
    made = {entry.relative_to(path): (entry.read_bytes(), stat.S_IMODE(entry.stat().st_mode)) for entry in path.iterdir()}
    return DataFolder(path, made)


@pytest.fixture
def settings(database_url: str, data_folder: DataFolder, smtp_server: tuple[Inbox, int]) -> Iterator[Settings]:
    yield Settings(
        data_dir=str(data_folder.path),
        database_url=database_url,
        base_url=BASE_URL,
        smtp_host="127.0.0.1",
        smtp_port=smtp_server[1],
        smtp_security="none",
        schedule_interval_seconds=0,  # tests drive the schedule with explicit ticks
    )
    data_folder.put_back()


_APPS: dict[tuple, Litestar] = {}
KEPT_APPS = 4  # a process's two databases, and a module's own settings (tests/safespace/webhooks)


def shared_app(settings: Settings) -> Litestar:
    """The app for these settings and key files, built once in this process."""
    # The key files where the app reads them (the secret made if missing, as the app would make it).
    keys = settings.encryption_key_path
    key = (repr(settings), settings.secret_key(), keys.read_bytes() if keys.is_file() else b"")
    app = _APPS.pop(key, None) or create_app(settings)
    _APPS[key] = app  # the last used last: the one used longest ago goes first
    if len(_APPS) > KEPT_APPS:
        del _APPS[next(iter(_APPS))]
    return app


@pytest.fixture
async def client(settings: Settings, db: AsyncSession) -> AsyncIterator[httpx.AsyncClient]:
    async with browser_like(shared_app(settings)) as test_client:
        yield test_client


@asynccontextmanager
async def running(app: Litestar) -> AsyncIterator[None]:
    """The app's lifespan, entered and left in one task of its own (anyio requires it)."""
    started, stop = asyncio.Event(), asyncio.Event()

    async def hold() -> None:
        async with app.lifespan():
            started.set()
            await stop.wait()

    task = asyncio.create_task(hold())
    await asyncio.wait([task, asyncio.create_task(started.wait())], return_when=asyncio.FIRST_COMPLETED)
    if task.done():
        task.result()  # start-up failed: raise its error here
    try:
        yield
    finally:
        stop.set()
        await task


@asynccontextmanager
async def browser_like(app: Litestar) -> AsyncIterator[httpx.AsyncClient]:
    """An HTTP client on the app, in the test's own event loop (as uvicorn would run it).

    It keeps cookies like a browser and shows redirects instead of following them, so tests
    can check where they go.
    """
    async with running(app):
        transport = httpx.ASGITransport(app=app, client=("203.0.113.7", 50000))
        async with httpx.AsyncClient(transport=transport, base_url=BASE_URL) as test_client:
            test_client.app = app  # type: ignore[attr-defined]
            yield test_client
