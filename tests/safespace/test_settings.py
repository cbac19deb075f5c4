"""Settings are read from SAFESPACE_* variables; a bad one stops start-up with a clear message."""

from __future__ import annotations

import os
import stat
import subprocess
import sys

import pytest

from safespace.settings import Settings, SettingsError, load_settings, setting_variables


def test_defaults_are_usable(tmp_path) -> None:
    settings = load_settings({"SAFESPACE_DATA_DIR": str(tmp_path)}, env_file=None)
    assert settings.default_min_group_size == 5
    assert settings.database.startswith("sqlite+aiosqlite:///") and str(tmp_path) in settings.database


@pytest.mark.parametrize(
    ("variable", "value", "expected"),
    [
        ("SAFESPACE_DEFAULT_MIN_GROUP_SIZE", "2", "below 3"),
        ("SAFESPACE_DEFAULT_MIN_GROUP_SIZE", "five", "int"),
        ("SAFESPACE_SMTP_PORT", "70000", "between 1 and 65535"),
        ("SAFESPACE_DATABASE_POOL_SIZE", "1", "from 2 to 500"),
        ("SAFESPACE_BASE_URL", "localhost:8000", "http(s) URL"),
        ("SAFESPACE_DATABASE_URL", "mysql://x/y", "postgresql+asyncpg://"),
        ("SAFESPACE_LOG_LEVEL", "LOUD", "DEBUG"),
        ("SAFESPACE_SMTP_SECURITY", "ssl", "starttls"),
        ("SAFESPACE_DEFAULT_MIN_GROUP", "5", "not a Safespace setting"),
    ],
)
def test_bad_setting_names_the_variable(variable: str, value: str, expected: str) -> None:
    with pytest.raises(SettingsError) as caught:
        load_settings({variable: value}, env_file=None)
    assert variable in str(caught.value)
    assert expected in str(caught.value)


def test_bad_setting_stops_start_up_with_a_message(tmp_path) -> None:
    env = {**os.environ, "SAFESPACE_DATA_DIR": str(tmp_path), "SAFESPACE_DEFAULT_MIN_GROUP_SIZE": "1"}
    result = subprocess.run(
        [sys.executable, "-m", "safespace", "serve", "--port", "1"], env=env, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 2
    assert "SAFESPACE_DEFAULT_MIN_GROUP_SIZE" in result.stderr and "below 3" in result.stderr


def test_env_file_is_read_and_environment_wins(tmp_path) -> None:
    env_file = tmp_path / ".env"
    env_file.write_text("SAFESPACE_DEFAULT_MIN_GROUP_SIZE=7\nSAFESPACE_LOG_LEVEL=DEBUG\n")
    settings = load_settings({"SAFESPACE_LOG_LEVEL": "ERROR"}, env_file=str(env_file))
    assert (settings.default_min_group_size, settings.log_level) == (7, "ERROR")


def test_secret_key_is_generated_once_with_mode_0600(tmp_path) -> None:
    settings = Settings(data_dir=str(tmp_path))
    first = settings.secret_key()
    path = tmp_path / "secret.key"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert settings.secret_key() == first and len(first) == 32


def test_readable_secret_key_is_refused(tmp_path) -> None:
    settings = Settings(data_dir=str(tmp_path))
    settings.secret_key()
    (tmp_path / "secret.key").chmod(0o644)
    with pytest.raises(SettingsError, match="chmod 600"):
        settings.secret_key()


def test_every_setting_has_a_variable() -> None:
    names = [name for name, _ in setting_variables()]
    assert "SAFESPACE_DATABASE_URL" in names and len(names) == len(set(names))
