"""The browser tests' server: the demo (made once per session on SQLite and copied, or by
`safespace demo` on PostgreSQL), then `safespace serve` on a free port, its log kept."""

from __future__ import annotations

import asyncio
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker, create_async_engine

from safespace import demo
from safespace.identity.mail import link_url
from safespace.identity.models import Community
from tests.conftest import IN_CI, free_port
from tests.helpers import serving

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
PRIVATE_WINDOW = "2"  # seconds: the flows wait it out as members would wait the default 30
DEMO_MADE = "demo-output.txt"  # in demo_template's folder and its copies: what `safespace demo` printed


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "postgresql_too: a browser test that also runs against PostgreSQL")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """A browser test runs against SQLite only, unless marked postgresql_too: what the browser
    sees does not depend on the database, and every route's work is tested on both databases in
    process (tests/safespace). Those marked are the ones where PostgreSQL changes what is served:
    the live check-in (LISTEN/NOTIFY), the log at DEBUG (the driver's own log lines), and one
    member's whole private-mode visit."""
    here = Path(__file__).parent
    dropped = [
        item
        for item in items
        if here in Path(item.fspath).parents
        and getattr(item, "callspec", None) is not None
        and item.callspec.params.get("database_url") == "postgresql"
        and item.get_closest_marker("postgresql_too") is None
    ]
    if dropped:
        config.hook.pytest_deselected(items=dropped)
        items[:] = [item for item in items if item not in dropped]


def _env(data_dir: Path, database_url: str) -> dict[str, str]:
    return {
        **os.environ,
        "SAFESPACE_DATA_DIR": str(data_dir),
        "SAFESPACE_DATABASE_URL": database_url,
        "SAFESPACE_BASE_URL": f"http://127.0.0.1:{free_port()}",
        "SAFESPACE_SCHEDULE_INTERVAL_SECONDS": "0",  # the test runs `safespace tick` itself
        "SAFESPACE_PRIVATE_WINDOW_SECONDS": PRIVATE_WINDOW,  # private mode's quiet window, short for tests
    }


def _sqlite_url(data_dir: Path) -> str:
    return f"sqlite+aiosqlite:///{data_dir / 'safespace.db'}"


@pytest.fixture(scope="session")
def demo_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A data folder where `safespace migrate` and `safespace demo` ran once, on SQLite: the demo
    costs seconds of CPU to make, and each browser test on SQLite starts from a copy of it."""
    data_dir = tmp_path_factory.mktemp("demo-template")
    env = _env(data_dir, _sqlite_url(data_dir))
    for command in ("migrate", "demo"):
        done = subprocess.run([sys.executable, "-m", "safespace", command], env=env, capture_output=True, text=True, timeout=120)
        assert done.returncode == 0, done.stderr
    (data_dir / DEMO_MADE).write_text(done.stdout)
    return data_dir


@pytest.fixture
def served_env(settings, tmp_path: Path, request: pytest.FixtureRequest) -> dict[str, str]:
    """The server's settings. On SQLite its data folder is a copy of the demo template (a
    database and key file of its own); on PostgreSQL, the test's database, where
    demo_served runs `safespace demo`."""
    if not settings.database_url.startswith("sqlite"):
        return _env(tmp_path, settings.database_url)
    shutil.copytree(request.getfixturevalue("demo_template"), tmp_path, dirs_exist_ok=True)
    return _env(tmp_path, _sqlite_url(tmp_path))


@pytest.fixture
def served(served_env, db: AsyncSession, tmp_path: Path) -> Iterator[tuple[str, dict[str, str]]]:
    """The demo, then `safespace serve` on a free port, as `make run` does."""
    with demo_served(served_env, tmp_path) as served_demo:
        yield served_demo


@pytest.fixture(scope="module")
def served_once(tmp_path_factory: pytest.TempPathFactory, demo_template: Path) -> Iterator[tuple[str, dict[str, str]]]:
    """The demo served for a whole module, on a SQLite file of its own: the tests that share it
    (the crawl, for one) only read it, and no other test's emptying of the database reaches it."""
    tmp_path = tmp_path_factory.mktemp("served")
    shutil.copytree(demo_template, tmp_path, dirs_exist_ok=True)
    env = _env(tmp_path, _sqlite_url(tmp_path))
    with demo_served(env, tmp_path) as served_demo:
        yield served_demo


@contextmanager
def demo_served(env: dict[str, str], tmp_path: Path) -> Iterator[tuple[str, dict[str, str]]]:
    if not Path(CHROMIUM).exists():
        if IN_CI:
            pytest.fail("Chromium is missing: .ci/run installs Debian's chromium package.")
        pytest.skip("Chromium is not installed (apt-get install -y chromium); browser test skipped")
    base = env["SAFESPACE_BASE_URL"]
    port = int(base.rsplit(":", 1)[1])
    if (Path(env["SAFESPACE_DATA_DIR"]) / DEMO_MADE).exists():  # a copy of demo_template
        links = asyncio.run(_fresh_links(env["SAFESPACE_DATABASE_URL"], base))
    else:
        made = subprocess.run([sys.executable, "-m", "safespace", "demo"], env=env, capture_output=True, text=True, timeout=120)
        assert made.returncode == 0, made.stderr
        links = dict(re.findall(r"^\s+(facilitator|member):\s+(\S+)$", made.stdout, flags=re.MULTILINE))
    with serving(env, tmp_path / "serve.log", port) as served_base:
        yield served_base, links


async def _fresh_links(database_url: str, base: str) -> dict[str, str]:
    """New one-time sign-in links for the demo's facilitator and member, as `safespace demo` run
    again prints them (the template's own lapse after 15 minutes, and each is used once)."""
    engine = create_async_engine(database_url)
    try:
        async with async_sessionmaker(engine)() as db:
            community = await db.scalar(select(Community).where(Community.name == demo.NAME))
            tokens = await demo.demo_links(db, community)
            await db.commit()
    finally:
        await engine.dispose()
    return {role: link_url(base, token) for role, token in tokens.items()}
