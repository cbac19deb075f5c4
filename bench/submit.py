"""Pulse-answer submission throughput against the bare /healthz, on SQLite then PostgreSQL.

    .venv/bin/python bench/submit.py [--members 2000] [--concurrency 32] [--db sqlite|postgresql|both]

Per database: seed in-process (service functions, committed) --members members in 4 teams, each
with a session, and an open psychological-safety round; start `python -m safespace serve`
(uvicorn, one worker); drive it with one asyncio HTTP/1.1 keep-alive client, --concurrency
connections in every phase: /healthz (1 s warm-up, then 5 s counted); the same for the signed-in
/profile page as one member (the floor: the cheapest page behind a session, which no POST that
writes can beat); before the clock, every member's client takes the CSRF cookie that the sign-in
link sets beside the session cookie, for the session's life (a GET of /profile); then every
member GETs the answer form and POSTs it, as a signed-in browser sends them (session + CSRF
cookies; seven items, a comment for one in ten; success is a 303). --profile FILE records the server during the POSTs with py-spy.

submissions/s counts POSTs over the POST phase alone; ratio = submissions/s / healthz/s (target
>= 0.20). The member's visit is both: visits/s = members / (GET phase + POST phase), each member
once, against the same healthz (target >= 0.15). CPU lines: the server process (100% = its one
worker is saturated), this client, the machine (shared with PostgreSQL). The CPU ratio divides the
server's CPU time per /healthz by its CPU time per submission: what the ratio would be with the
server on a whole core in both phases, so other load on the machine moves it less. Ten members then answer
again (each must get a 409) and the ledger is checked: participation rows == community tally
respondents == sum of team tallies, pending comments == comments accepted. "lost" = answers
acknowledged with a 303 but not counted; it or a wrong ledger exits 1, else 0: figures, not a test.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections import Counter
from pathlib import Path

import asyncpg

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # tests/load.py, as for the fault tests

from safespace.db.engine import make_engine
from safespace.privacy.crypto import Keyring
from safespace.settings import Settings
from safespace.web.session import SESSION_COOKIE
from tests.load import CSRF_COOKIE, Connection, answer_body, ledger, seed
from tests.load import INSTRUMENT as INSTRUMENT  # for bench/soak.py

PG_ADMIN = "postgresql://root@127.0.0.1:5432/postgres"
RECHECK, WARMUP_SECONDS, HEALTHZ_SECONDS = 10, 1.0, 5.0
VISIT_TARGET = 0.15  # member visits/s (form GET + POST) over healthz/s


async def drive(port: int, concurrency: int, jobs, call) -> float:  # noqa: ANN001
    """Run call(connection, job) for every job over `concurrency` connections; seconds taken."""
    queue, conns = iter(jobs), [Connection(port) for _ in range(concurrency)]

    async def worker(conn: Connection) -> None:
        for job in queue:
            await call(conn, job)
        conn.close()

    started = time.perf_counter()
    await asyncio.gather(*(worker(c) for c in conns))
    return time.perf_counter() - started


async def get_rate(port: int, concurrency: int, path: str = "/healthz", cookies: dict | None = None) -> tuple[float, int]:
    """(GETs of `path` per second over HEALTHZ_SECONDS after a warm-up, every GET answered, warm-up too)."""
    start = time.perf_counter() + WARMUP_SECONDS
    end, counted, answered = start + HEALTHZ_SECONDS, 0, 0

    async def call(conn: Connection, _job: bool) -> None:
        nonlocal counted, answered
        status, _ = await conn.request("GET", path, cookies or {})
        assert status == 200, f"{path} answered {status}"
        answered += 1
        counted += start <= time.perf_counter() < end

    await drive(port, concurrency, iter(lambda: time.perf_counter() < end, False), call)
    return counted / HEALTHZ_SECONDS, answered


def cpu_meter(pid: int):  # noqa: ANN201
    """Starts measuring; the returned function reports server, client and machine CPU since then."""
    def sample() -> tuple[float, ...]:
        tick, fields = os.sysconf("SC_CLK_TCK"), Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        machine = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
        busy = sum(machine) - machine[3] - machine[4]  # all but idle and iowait
        return time.perf_counter(), (int(fields[11]) + int(fields[12])) / tick, time.process_time(), busy / tick

    begin = sample()

    def report() -> tuple[str, float]:
        """The CPU line, and the server's CPU seconds since the start."""
        wall, server, client, busy = (b - a for a, b in zip(begin, sample()))
        cores = os.cpu_count()
        line = f"server {server / wall:.0%} of a core, client {client / wall:.0%}, machine {busy / wall / cores:.0%} of {cores} cores"
        return line, server
    return report


def profiler(pid: int, path: str, label: str) -> subprocess.Popen:
    """py-spy on the server during the POSTs: --profile x.svg gives a flame graph, x.txt folded stacks."""
    out = Path(path).with_stem(f"{Path(path).stem}-{label}")
    spy = Path(sys.executable).with_name("py-spy")
    spy = str(spy) if spy.exists() else shutil.which("py-spy")  # beside this Python, else on PATH
    if spy is None:
        raise SystemExit("--profile needs py-spy beside this Python or on PATH (pip install py-spy)")
    command = [spy, "record", "--pid", str(pid), "--rate", "100",
               "--format", "raw" if out.suffix == ".txt" else "flamegraph", "-o", str(out)]
    spy = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    print(f"{label}: profiling the server's POST phase into {out}")
    time.sleep(1)  # let it attach
    return spy


async def session_csrf_cookie(conn: Connection, session_token: str) -> str:
    """The CSRF cookie a signed-in browser holds beside its session cookie (the sign-in link sets
    both, for the session's life), taken from a first page before any clock runs: a client that
    sent the session cookie alone would have every page set it again, which only a browser that
    lost it sees."""
    status, cookies = await conn.request("GET", "/profile", {SESSION_COOKIE: session_token})
    assert status == 200 and CSRF_COOKIE in cookies, f"/profile answered {status} and set {sorted(cookies)}"
    return cookies[CSRF_COOKIE]


async def start_server(env: dict[str, str], log: Path) -> tuple[subprocess.Popen, int]:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    command = [sys.executable, "-m", "safespace", "serve", "--host", "127.0.0.1", "--port", str(port)]
    proc = subprocess.Popen(command, cwd=Path(__file__).resolve().parent.parent, env=os.environ | env,
                            stdout=log.open("w"), stderr=subprocess.STDOUT)
    for _ in range(300):
        if proc.poll() is not None:
            raise SystemExit(f"the server exited with {proc.returncode}:\n{log.read_text()}")
        try:
            await drive(port, 1, [None], lambda conn, _: conn.request("GET", "/healthz", {}))
            return proc, port
        except ConnectionError:
            await asyncio.sleep(0.1)
    raise SystemExit("the server did not answer /healthz within 30 s")


async def bench(label: str, database_url: str, args: argparse.Namespace) -> bool:
    """Seed, serve, measure and check one database; prints its block. False if the ledger is wrong."""
    data_dir = Path(tempfile.mkdtemp(prefix="safespace-bench-"))
    settings = Settings(data_dir=str(data_dir), database_url=database_url, base_url="http://127.0.0.1",
                        schedule_interval_seconds=0, log_level="WARNING")
    env = {f"SAFESPACE_{name.upper()}": str(getattr(settings, name))
           for name in ("data_dir", "database_url", "base_url", "schedule_interval_seconds", "log_level")}
    started, engine = time.perf_counter(), make_engine(settings)
    community_id, round_id, tokens = await seed(engine, args.members, Keyring.load(settings.encryption_key_path))
    print(f"{label}: seeded {args.members} members in {time.perf_counter() - started:.1f} s, data in {data_dir}")
    path, members, rng = f"/c/{community_id}/rounds/{round_id}", list(range(args.members)), random.Random(1)
    csrf, bodies, first, again = {}, {}, {}, {}

    async def signed_in(conn: Connection, member: int) -> None:
        csrf[member] = await session_csrf_cookie(conn, tokens[member])

    async def get_form(conn: Connection, member: int) -> None:
        status, _ = await conn.request("GET", path, {SESSION_COOKIE: tokens[member], CSRF_COOKIE: csrf[member]})
        assert status == 200, f"the form answered {status}"
        bodies[member] = answer_body(csrf[member], rng, comment=member % 10 == 0)

    def post_into(statuses: dict[int, int]):  # noqa: ANN202
        async def post(conn: Connection, member: int) -> None:
            try:
                cookies = {SESSION_COOKIE: tokens[member], CSRF_COOKIE: csrf[member]}
                statuses[member] = (await conn.request("POST", path, cookies, bodies[member]))[0]
            except ConnectionError:
                statuses[member] = 0  # no answer: the server dropped the connection
        return post

    proc, port = await start_server(env, data_dir / "server.log")
    try:
        meter = cpu_meter(proc.pid)
        healthz, healthz_requests = await get_rate(port, args.concurrency)
        healthz_cpu, healthz_seconds = meter()
        await drive(port, args.concurrency, members, signed_in)
        floor_cookies = {SESSION_COOKIE: tokens[members[0]], CSRF_COOKIE: csrf[members[0]]}
        meter = cpu_meter(proc.pid)
        floor, floor_requests = await get_rate(port, args.concurrency, "/profile", floor_cookies)
        _floor_cpu, floor_seconds = meter()
        forms_time = await drive(port, args.concurrency, members, get_form)
        spy = profiler(proc.pid, args.profile, label) if args.profile else None
        meter = cpu_meter(proc.pid)
        posts_time = await drive(port, args.concurrency, members, post_into(first))
        posts_cpu, posts_seconds = meter()
        if spy is not None:
            spy.send_signal(signal.SIGINT)
            spy.wait(timeout=60)
        await drive(port, 1, members[:RECHECK], post_into(again))
    finally:
        proc.terminate()
        proc.wait(timeout=15)
    found = await ledger(engine, uuid.UUID(round_id))
    await engine.dispose()
    accepted = [m for m in members if 303 in (first.get(m), again.get(m))]
    lost, phantom = max(len(accepted) - found["community"], 0), max(found["community"] - len(accepted), 0)
    submissions = args.members / posts_time
    pairs, pad = args.members / (forms_time + posts_time), " " * 12
    print(f"{label + ':':<12} submissions {submissions:.1f}/s  healthz {healthz:.1f}/s  "
          f"ratio {submissions / healthz:.2f} (target >= 0.20)  lost {lost}")
    print(f"{pad} member visits (GET form + POST, each member once) {pairs:.1f}/s, ratio {pairs / healthz:.3f} "
          f"(target >= {VISIT_TARGET:.2f}: {'met' if pairs / healthz >= VISIT_TARGET else 'NOT met'}); forms alone {args.members / forms_time:.1f}/s")
    print(f"{pad} POST statuses {dict(Counter(first.values()))}, second answers {dict(Counter(again.values()))}")
    print(f"{pad} CPU during the POSTs: {posts_cpu}\n{pad} CPU during healthz:   {healthz_cpu}")
    post_ms, healthz_ms = posts_seconds / args.members * 1000, healthz_seconds / max(healthz_requests, 1) * 1000
    print(f"{pad} server CPU per request: submission {post_ms:.2f} ms, healthz {healthz_ms:.3f} ms; "
          f"CPU ratio {healthz_ms / post_ms:.2f} (the ratio if the server had a whole core in both phases)")
    floor_ms = floor_seconds / max(floor_requests, 1) * 1000
    print(f"{pad} floor: the signed-in /profile page (the session, a small template, no writes) "
          f"{floor:.1f}/s, ratio {floor / healthz:.2f}; CPU {floor_ms:.2f} ms, CPU ratio {healthz_ms / floor_ms:.2f}")
    commented = sum(m % 10 == 0 for m in accepted)
    ok = found["participation"] == found["community"] == found["teams"] and not lost
    ok = ok and all(again[m] == 409 for m in again if first[m] == 303) and (found["comments"] == commented or phantom > 0)
    if not ok:
        print(f"!!! {label}: LEDGER WRONG: 303s {len(accepted)}, comments sent {commented}, {found}", file=sys.stderr)
    if failed := sum(status != 303 for status in first.values()):
        print(f"!!! {label}: {failed} POSTs got no 303, yet {phantom} of them were counted; "
              f"see {data_dir / 'server.log'}", file=sys.stderr)
    elif ok:
        shutil.rmtree(data_dir)
    return ok


class NoPostgreSQL(Exception):
    """PostgreSQL cannot be reached at PG_ADMIN."""


@contextlib.asynccontextmanager
async def throwaway_database(prefix: str):  # noqa: ANN201
    """A fresh PostgreSQL database for one run (its URL), dropped afterwards, whatever happened;
    NoPostgreSQL when it cannot be reached."""
    try:
        admin = await asyncpg.connect(PG_ADMIN, timeout=5)
    except (TimeoutError, OSError, asyncpg.PostgresError) as exc:
        raise NoPostgreSQL(f"cannot reach {PG_ADMIN} ({exc})") from None
    name = f"{prefix}_{uuid.uuid4().hex[:8]}"
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
        yield f"postgresql+asyncpg://root@127.0.0.1:5432/{name}"
    finally:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin.close()


async def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--members", type=int, default=2000)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--db", choices=["sqlite", "postgresql", "both"], default="both")
    parser.add_argument("--profile", metavar="FILE", help="py-spy the server during the POSTs (.svg or .txt)")
    args = parser.parse_args()
    print(f"{args.members} members, {args.concurrency} connections, one uvicorn worker, {os.cpu_count()} CPUs")
    ok = await bench("sqlite", "", args) if args.db in ("sqlite", "both") else True
    if args.db in ("postgresql", "both"):
        try:
            async with throwaway_database("safespace_bench") as url:
                ok &= await bench("postgresql", url, args)
        except NoPostgreSQL as exc:
            print(f"postgresql: skipped, {exc}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
