"""The browser tests' server: `safespace demo` then `safespace serve` on a free port, its log kept."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from sqlalchemy.ext.asyncio import AsyncSession

from tests.conftest import IN_CI, free_port
from tests.helpers import serving

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
PRIVATE_WINDOW = "2"  # seconds: the flows wait it out as members would wait the default 30


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


@pytest.fixture
def served_env(settings, tmp_path: Path) -> dict[str, str]:
    port = free_port()
    return {
        **os.environ,
        "SAFESPACE_DATA_DIR": str(tmp_path),
        "SAFESPACE_DATABASE_URL": settings.database_url,
        "SAFESPACE_BASE_URL": f"http://127.0.0.1:{port}",
        "SAFESPACE_SCHEDULE_INTERVAL_SECONDS": "0",  # the test runs `safespace tick` itself
        "SAFESPACE_PRIVATE_WINDOW_SECONDS": PRIVATE_WINDOW,  # private mode's quiet window, short for tests
    }


@pytest.fixture
def served(served_env, db: AsyncSession, tmp_path: Path) -> Iterator[tuple[str, dict[str, str]]]:
    """`safespace demo` then `safespace serve` on a free port, as `make run` does."""
    with demo_served(served_env, tmp_path) as served_demo:
        yield served_demo


@pytest.fixture(scope="module")
def served_once(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, dict[str, str]]]:
    """The demo served for a whole module, on a SQLite file of its own: the tests that share it
    (the crawl, for one) only read it, and no other test's emptying of the database reaches it."""
    tmp_path = tmp_path_factory.mktemp("served")
    port = free_port()
    env = {
        **os.environ,
        "SAFESPACE_DATA_DIR": str(tmp_path),
        "SAFESPACE_DATABASE_URL": f"sqlite+aiosqlite:///{tmp_path / 'safespace.db'}",
        "SAFESPACE_BASE_URL": f"http://127.0.0.1:{port}",
        "SAFESPACE_SCHEDULE_INTERVAL_SECONDS": "0",
        "SAFESPACE_PRIVATE_WINDOW_SECONDS": PRIVATE_WINDOW,
    }
    migrate = subprocess.run([sys.executable, "-m", "safespace", "migrate"], env=env, capture_output=True, text=True, timeout=120)
    assert migrate.returncode == 0, migrate.stderr
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
    demo = subprocess.run([sys.executable, "-m", "safespace", "demo"], env=env, capture_output=True, text=True, timeout=120)
    assert demo.returncode == 0, demo.stderr
    links = dict(re.findall(r"^\s+(facilitator|member):\s+(\S+)$", demo.stdout, flags=re.MULTILINE))
    with serving(env, tmp_path / "serve.log", port) as served_base:
        yield served_base, links
