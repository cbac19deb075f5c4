"""`make run PORT=8080`: the printed links and the mailed ones follow the port served (issue 17 item 9)."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from safespace.settings import Settings, served_at
from tests.conftest import free_port
from tests.helpers import serving

ROOT = Path(__file__).resolve().parents[2]


def environment(settings: Settings, **more: str) -> dict[str, str]:
    """The test database and mail server; SAFESPACE_BASE_URL only if given."""
    env = {name: value for name, value in os.environ.items() if name != "SAFESPACE_BASE_URL"}
    return env | {
        "SAFESPACE_DATA_DIR": settings.data_dir,
        "SAFESPACE_DATABASE_URL": settings.database_url,
        "SAFESPACE_SMTP_HOST": settings.smtp_host,
        "SAFESPACE_SMTP_PORT": str(settings.smtp_port),
        "SAFESPACE_SMTP_SECURITY": settings.smtp_security,
        "SAFESPACE_SCHEDULE_INTERVAL_SECONDS": "0",
    } | more


def run(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "safespace", *args], env=env, cwd=ROOT, capture_output=True, text=True, timeout=120
    )


def test_make_run_passes_host_and_port_to_demo_and_serve() -> None:
    planned = subprocess.run(
        ["make", "-n", "run", "PORT=8080", "HOST=0.0.0.0"], cwd=ROOT, capture_output=True, text=True, timeout=60
    ).stdout
    assert "safespace demo --host 0.0.0.0 --port 8080" in planned
    assert "safespace serve --host 0.0.0.0 --port 8080" in planned


def test_the_base_url_follows_the_address_served_unless_it_is_set() -> None:
    defaults = Settings()
    assert served_at(defaults, "127.0.0.1", 8080, environ={}, env_file=None).base_url == "http://127.0.0.1:8080"
    assert served_at(defaults, "0.0.0.0", 8080, environ={}, env_file=None).base_url == "http://127.0.0.1:8080"
    assert served_at(defaults, "::1", 9000, environ={}, env_file=None).base_url == "http://[::1]:9000"
    given = {"SAFESPACE_BASE_URL": "https://safespace.example.org"}
    assert served_at(defaults, "127.0.0.1", 8080, environ=given, env_file=None) is defaults


async def test_demo_prints_links_for_the_port_it_is_given(settings: Settings, db) -> None:
    printed = run(environment(settings), "demo", "--port", "8080")
    assert printed.returncode == 0, printed.stderr
    assert "facilitator: http://127.0.0.1:8080/signin/" in printed.stdout and "member:      http://127.0.0.1:8080/signin/" in printed.stdout
    proxied = run(environment(settings, SAFESPACE_BASE_URL="https://safespace.example.org"), "demo", "--port", "8080")
    assert "facilitator: https://safespace.example.org/signin/" in proxied.stdout  # a set base URL wins


async def test_serve_on_another_port_mails_links_to_that_port(settings: Settings, db, inbox, tmp_path: Path) -> None:
    if not settings.is_sqlite:
        pytest.skip("the address served does not depend on the database: SQLite's run says it")
    env = environment(settings)
    assert run(env, "create-community", "--name", "Harbour", "--facilitator", "fac@x.org").returncode == 0
    log = tmp_path / "serve.log"
    with serving(env, log, free_port(), base_url=False) as base:  # the base URL follows the port
        assert f"Safespace is serving {base} " in log.read_text()
        with httpx.Client(base_url=base) as browser:
            browser.get("/signin")
            sent = browser.post("/signin", data={"email": "fac@x.org", "_csrf_token": browser.cookies["safespace_csrf"]})
            assert sent.status_code == 200, sent.text
        deadline = time.monotonic() + 10
        while not inbox.to("fac@x.org") and time.monotonic() < deadline:
            time.sleep(0.1)
        assert inbox.last_link("fac@x.org").startswith(f"{base}/signin/")
