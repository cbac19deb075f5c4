"""The README's screenshots, taken from a fresh demo: `make screenshot`.

Migrates a database in a temporary folder, runs `safespace demo`, serves it on a free port and
drives Debian's Chromium (Playwright) through the member's home page and the facilitator's trend
page, at the widths the README shows them.
"""

from __future__ import annotations

import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

DOCS = Path(__file__).resolve().parent
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def safespace(env: dict[str, str], *args: str) -> str:
    done = subprocess.run([sys.executable, "-m", "safespace", *args], env=env, capture_output=True, text=True, timeout=300)
    if done.returncode:
        sys.exit(f"safespace {' '.join(args)} failed:\n{done.stderr}")
    return done.stdout


def wait_for(base: str, server: subprocess.Popen) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and server.poll() is None:
        try:
            with urllib.request.urlopen(f"{base}/healthz", timeout=1):
                return
        except OSError:
            time.sleep(0.2)
    sys.exit("the server did not start")


def sign_in(browser, link: str, width: int, height: int):
    page = browser.new_page(locale="en-GB", viewport={"width": width, "height": height})
    page.goto(link)
    page.get_by_role("button", name="Continue").click()
    page.wait_for_load_state("networkidle")
    return page


def main() -> None:
    from playwright.sync_api import sync_playwright

    port = free_port()
    with tempfile.TemporaryDirectory() as data:
        env = {**os.environ, "SAFESPACE_DATA_DIR": data, "SAFESPACE_DATABASE_URL": "", "SAFESPACE_BASE_URL": f"http://127.0.0.1:{port}"}
        safespace(env, "migrate")
        links = dict(re.findall(r"^\s+(facilitator|member):\s+(\S+)$", safespace(env, "demo"), flags=re.MULTILINE))
        with open(Path(data) / "serve.log", "w") as log:
            server = subprocess.Popen([sys.executable, "-m", "safespace", "serve", "--port", str(port)], env=env, stdout=log, stderr=log)
        try:
            wait_for(env["SAFESPACE_BASE_URL"], server)
            with sync_playwright() as playwright:
                browser = playwright.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox", "--disable-gpu"])
                home = sign_in(browser, links["member"], 1100, 900)
                home.screenshot(path=str(DOCS / "screenshot-home.png"), full_page=True)
                trend = sign_in(browser, links["facilitator"], 1280, 900)
                trend.get_by_role("link", name="Insights").first.click()
                trend.wait_for_load_state("networkidle")
                trend.screenshot(path=str(DOCS / "screenshot-trend.png"), full_page=True)
                browser.close()
        finally:
            server.terminate()
            server.wait(timeout=10)
    print(f"wrote {DOCS / 'screenshot-home.png'} and {DOCS / 'screenshot-trend.png'}")


if __name__ == "__main__":
    main()
