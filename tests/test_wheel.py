"""A plain wheel is a whole Safespace: built offline, installed into a fresh venv and run from a
directory that is not the repository, it migrates a new database and serves pages from its own files."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import sysconfig
import time
import zipfile
from pathlib import Path

import httpx
import pytest

from tests.conftest import free_port

ROOT = Path(__file__).resolve().parent.parent
pytestmark = pytest.mark.packaging

# What the Dockerfile copies into its build stage: the wheel is built from these alone.
SOURCES = ("pyproject.toml", "README.md", "safespace", "surveys")
# In the tree, not needed at run time: the catalog template (`make messages` writes it, i18n.py reads the .po files).
NOT_SHIPPED = {"safespace/locale/messages.pot"}


def run(command: list[str | Path], **kwargs: object) -> subprocess.CompletedProcess[str]:
    done = subprocess.run([str(part) for part in command], capture_output=True, text=True, timeout=120, **kwargs)  # type: ignore[call-overload]
    assert done.returncode == 0, f"{command} exited with {done.returncode}:\n{done.stdout}\n{done.stderr}"
    return done


def build_wheel(tmp_path: Path) -> Path:
    """`pip wheel` from a copy of the sources (no build/ left in the checkout), with no network."""
    source = tmp_path / "source"
    source.mkdir()
    for name in SOURCES:
        if (ROOT / name).is_dir():
            shutil.copytree(ROOT / name, source / name, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
        else:
            shutil.copy2(ROOT / name, source / name)
    run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "--no-index", "-q", "-w", tmp_path / "dist", source])
    (wheel,) = (tmp_path / "dist").glob("safespace-*.whl")
    return wheel


def fresh_venv(path: Path, wheel: Path) -> Path:
    """A venv holding only the wheel; its dependencies come from this test's venv through a .pth
    file, which adds that directory to sys.path after the wheel's own and does not run the .pth
    files there (the editable install of the checkout is one of them)."""
    run([sys.executable, "-m", "venv", "--without-pip", path])
    python = path / "bin" / "python"
    run([sys.executable, "-m", "pip", "--python", python, "install", "--no-deps", "--no-index", "-q", wheel])
    site_packages = Path(run([python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"]).stdout.strip())
    dependencies = sorted({sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"]})
    (site_packages / "safespace-test-dependencies.pth").write_text("\n".join(dependencies) + "\n")
    return path


def test_wheel_installed_in_a_fresh_venv_migrates_and_serves_pages_from_its_own_files(tmp_path: Path) -> None:
    wheel = build_wheel(tmp_path)
    shipped = set(zipfile.ZipFile(wheel).namelist())
    source = tmp_path / "source"
    package_files = {
        path.relative_to(source).as_posix()
        for package in ("safespace", "surveys")
        for path in (source / package).rglob("*")
        if path.is_file() and "__pycache__" not in path.parts
    }
    missing = sorted(package_files - NOT_SHIPPED - shipped)
    assert not missing, f"the wheel lacks files the app opens (add them to [tool.setuptools.package-data]): {missing}"

    venv = fresh_venv(tmp_path / "venv", wheel).resolve()
    workdir = tmp_path / "elsewhere"  # the working directory: not the repository, nothing to import from
    workdir.mkdir()
    env = {name: value for name, value in os.environ.items() if not name.startswith(("SAFESPACE_", "PYTHON"))}
    env |= {"SAFESPACE_DATA_DIR": str(tmp_path / "data"), "SAFESPACE_LOG_LEVEL": "WARNING", "SAFESPACE_SCHEDULE_INTERVAL_SECONDS": "0"}

    where = run(
        [
            venv / "bin" / "python",
            "-c",
            "import safespace, surveys.instrument as s, safespace.web.templates as w, safespace.i18n as i, safespace.db.migrate as m, "
            "safespace.identity.privacy_page as p; "
            "print(safespace.__file__, w.TEMPLATES, w.STATIC, i.LOCALE_DIR, m.MIGRATIONS, p.privacy_source('es'), s.INSTRUMENTS_DIR)",
        ],
        cwd=workdir,
        env=env,
    ).stdout.split()
    assert len(where) == 7
    for path in map(Path, where):
        assert path.exists() and path.resolve().is_relative_to(venv), f"{path} is not the installed package's"

    migrated = run([venv / "bin" / "safespace", "migrate"], cwd=workdir, env=env)
    assert "Database is at revision" in migrated.stdout

    port = free_port()
    base = f"http://127.0.0.1:{port}"
    log = tmp_path / "serve.log"
    with log.open("w") as out:
        server = subprocess.Popen(
            [venv / "bin" / "safespace", "serve", "--host", "127.0.0.1", "--port", str(port)],
            cwd=workdir,
            env=env | {"SAFESPACE_BASE_URL": base},
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        deadline = time.monotonic() + 30
        while True:
            assert server.poll() is None, f"serve exited with {server.returncode}:\n{log.read_text()}"
            assert time.monotonic() < deadline, f"serve did not answer /healthz within 30 s:\n{log.read_text()}"
            try:
                if httpx.get(f"{base}/healthz", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                time.sleep(0.1)

        sign_in = httpx.get(f"{base}/signin", headers={"accept-language": "es"})
        assert sign_in.status_code == 200 and "Iniciar sesión" in sign_in.text  # a template, through the Spanish catalog
        privacy = httpx.get(f"{base}/privacy", headers={"accept-language": "en"})
        assert privacy.status_code == 200 and "<h1>Your privacy in Safespace</h1>" in privacy.text
        privacy_es = httpx.get(f"{base}/privacy", headers={"accept-language": "es"})
        assert privacy_es.status_code == 200 and "<h1>Tu privacidad en Safespace</h1>" in privacy_es.text
        css = httpx.get(f"{base}/static/safespace.css")
        assert css.status_code == 200 and css.content == (ROOT / "safespace" / "static" / "safespace.css").read_bytes()
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        try:
            server.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(server.pid, signal.SIGKILL)
            server.wait()
