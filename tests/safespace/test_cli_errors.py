"""An operator's mistakes get one clear line, not a traceback (issue 21 item 6).

Each case breaks one thing the way it breaks on a real machine (a database that is not there, a
key file damaged or left readable by others, a port out of range) and runs the command as an
operator would. The answer must name what is wrong and what to do, exit non-zero, change
nothing, and show no traceback.
"""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests.conftest import free_port

UNREACHABLE = f"postgresql+asyncpg://root@127.0.0.1:{free_port()}/safespace"
NO_SUCH_DATABASE = "postgresql+asyncpg://root@127.0.0.1:5432/safespace_no_such_database"


def _write(name: str, content: str, mode: int = 0o600) -> Callable[[Path], None]:
    def setup(data: Path) -> None:
        path = data / name
        path.write_text(content)
        path.chmod(mode)

    return setup


def _directory(name: str) -> Callable[[Path], None]:
    return lambda data: (data / name).mkdir()


def _readable_by_others(name: str) -> Callable[[Path], None]:
    return lambda data: (data / name).chmod(0o644)


@dataclass
class Case:
    command: list[str]
    says: list[str]  # every one of these is in the line
    setup: Callable[[Path], None] | None = None
    database_url: str | None = None  # None: the test's own migrated SQLite database
    migrated: bool = True
    env: dict[str, str] = field(default_factory=dict)


PORT = str(free_port())
CASES = {
    # PostgreSQL not running, or not where the URL says.
    **{
        f"unreachable database: {command[0]}": Case(command, ["Cannot reach the database", "SAFESPACE_DATABASE_URL"], database_url=UNREACHABLE)
        for command in (
            ["tick"],
            ["login-link", "a@x.org"],
            ["demo"],
            ["create-community", "--name", "Gold", "--facilitator", "a@x.org"],
            ["invite", "--community", "Gold", "b@x.org"],
            ["migrate"],
        )
    },
    # The server runs, the database named in the URL does not exist.
    **{
        f"no such database: {command[0]}": Case(command, ["safespace_no_such_database", "does not exist", "createdb"], database_url=NO_SUCH_DATABASE)
        for command in (["migrate"], ["tick"], ["login-link", "a@x.org"], ["serve", "--port", PORT])
    },
    # A fresh data directory nobody migrated: nothing is created in it.
    "not migrated: tick": Case(["tick"], ["safespace migrate"], migrated=False),
    "not migrated: login-link": Case(["login-link", "a@x.org"], ["safespace migrate"], migrated=False),
    # The installation secret.
    "secret.key not hex": Case(["serve", "--port", PORT], ["secret.key", "hex"], _write("secret.key", "not a key\n")),
    "secret.key too short": Case(["serve", "--port", PORT], ["secret.key", "32 bytes"], _write("secret.key", "abcd\n")),
    "secret.key a directory": Case(["serve", "--port", PORT], ["secret.key", "directory"], _directory("secret.key")),
    "secret.key readable by others": Case(["serve", "--port", PORT], ["secret.key", "chmod 600"], _write("secret.key", "ab" * 32, 0o644)),
    # The encryption key file.
    **{
        f"encryption.keys {what}: {command[0]}": Case(command, ["encryption.keys", *says], setup)
        for command in (["tick"], ["serve", "--port", PORT])
        for what, setup, says in (
            ("not a key file", _write("encryption.keys", "garbage"), ["not a Safespace key file"]),
            ("wrong key length", _write("encryption.keys", '{"keys": {"7": "abcd"}}'), ["256-bit"]),
            ("a directory", _directory("encryption.keys"), ["directory"]),
            ("readable by others", _write("encryption.keys", '{"keys": {"7": "' + "ab" * 32 + '"}}', 0o644), ["chmod 600"]),
        )
    },
    "port out of range": Case(["serve", "--port", "99999"], ["--port", "99999"]),
    # A backup file that is not one, or was cut short.
    "restore a file that is not a backup": Case(["restore", "--force", "{tmp}/garbage.tar"], ["not a Safespace backup"],
                                                _write("../garbage.tar", "garbage " * 100)),
    "restore a truncated backup": Case(["restore", "--force", "{tmp}/cut.tar"], ["cut.tar", "damaged", "Nothing was changed"], lambda data: _cut_backup(data)),
}


def _cut_backup(data: Path) -> None:
    """A real backup of this database, cut to half its length (a copy interrupted)."""
    folder = data.parent / "backups"
    folder.mkdir()
    done = _run(data, f"sqlite+aiosqlite:///{data / 'safespace.db'}", "backup", str(folder))
    assert done.returncode == 0, done.stderr
    whole = next(folder.iterdir()).read_bytes()
    (data.parent / "cut.tar").write_bytes(whole[: len(whole) // 2])


@pytest.fixture(scope="module")
def migrated_database(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One SQLite database migrated by the real command, copied for each case that needs one."""
    data = tmp_path_factory.mktemp("migrated")
    done = _run(data, f"sqlite+aiosqlite:///{data / 'safespace.db'}", "migrate")
    assert done.returncode == 0, done.stderr
    return data


@pytest.fixture
def sqlite_data(tmp_path: Path) -> Path:
    data = tmp_path / "data"
    data.mkdir()
    return data


def _run(data: Path, database_url: str, *args: str) -> subprocess.CompletedProcess[str]:
    env = os.environ | {"SAFESPACE_DATA_DIR": str(data), "SAFESPACE_DATABASE_URL": database_url, "SAFESPACE_SCHEDULE_INTERVAL_SECONDS": "0"}
    return subprocess.run([sys.executable, "-m", "safespace", *args], env=env, capture_output=True, text=True, timeout=60)


def _files(data: Path) -> dict[str, tuple[int, int]]:
    return {p.name: (p.stat().st_size, stat.S_IMODE(p.stat().st_mode)) for p in data.iterdir()}


@pytest.mark.parametrize("case", CASES.values(), ids=CASES.keys())
def test_an_operators_mistake_gets_one_clear_line(case: Case, sqlite_data: Path, migrated_database: Path) -> None:
    database_url = case.database_url or f"sqlite+aiosqlite:///{sqlite_data / 'safespace.db'}"
    if case.database_url is None and case.migrated:
        for made in migrated_database.iterdir():  # the database and whatever else `migrate` made
            shutil.copy2(made, sqlite_data / made.name)
    if case.setup is not None:
        case.setup(sqlite_data)
    before = _files(sqlite_data)

    done = _run(sqlite_data, database_url, *(part.replace("{tmp}", str(sqlite_data.parent)) for part in case.command))

    assert done.returncode != 0, done.stdout + done.stderr
    assert "Traceback" not in done.stderr and "Error:" not in done.stderr.replace("Error: Invalid value", ""), done.stderr
    lines = [line for line in done.stderr.splitlines() if line.strip() and not line.startswith(("Usage:", "Try "))]
    assert len(lines) == 1, done.stderr
    for words in case.says:
        assert words in lines[0], (words, lines[0])
    assert _files(sqlite_data) == before, "a failed command changed the data directory"


async def test_a_database_that_does_not_exist_answers_503_not_500(tmp_path: Path) -> None:
    """The server was started before the database was made (or it was dropped): a clear 503 with
    Retry-After, as for any database that cannot be reached; /readyz says so too."""
    from safespace.app import create_app
    from safespace.settings import Settings
    from tests.conftest import browser_like

    app = create_app(Settings(data_dir=str(tmp_path), database_url=NO_SUCH_DATABASE, schedule_interval_seconds=0))
    async with browser_like(app) as client:
        client.cookies.set("safespace_session", "a-session-token")  # its page reads the database
        page = await client.get("/")
        ready = await client.get("/readyz")
    assert page.status_code == 503 and page.headers["retry-after"] == "30", page.text[:300]
    assert "cannot reach its database" in page.text
    assert ready.status_code == 503


def test_an_installation_without_its_migrations_says_so(sqlite_data: Path) -> None:
    """A partial copy of the code (or a wheel built without package data) has no migrations:
    `migrate` says so in one line, and makes no database file."""
    code = (
        "import sys; from pathlib import Path; import safespace.db.migrate as m; "
        "m.MIGRATIONS = Path(sys.argv[1]); from safespace.cli import main; main(sys.argv[2:])"
    )
    env = os.environ | {"SAFESPACE_DATA_DIR": str(sqlite_data), "SAFESPACE_DATABASE_URL": f"sqlite+aiosqlite:///{sqlite_data / 'safespace.db'}"}
    done = subprocess.run([sys.executable, "-c", code, str(sqlite_data / "nowhere"), "migrate"],
                          env=env, capture_output=True, text=True, timeout=60)  # fmt: skip
    assert done.returncode == 1 and "Traceback" not in done.stderr, done.stderr
    assert "migrations are missing" in done.stderr and done.stderr.strip().count("\n") == 0, done.stderr
    assert list(sqlite_data.iterdir()) == []
