"""Pulse-answer submission throughput against the bare /healthz, on SQLite then PostgreSQL.

    .venv/bin/python bench/submit.py [--members 2000] [--concurrency 32] [--db sqlite|postgresql|both]

For each database the script seeds, in this process and before the server starts, a community
with --members members in 4 teams, a signed-in session per member and an open round of the
psychological-safety pulse. It then starts `python -m safespace serve` (uvicorn, one worker) on
127.0.0.1 as a subprocess and drives it with one small asyncio HTTP/1.1 keep-alive client, the
same tool and the same number of connections (--concurrency) for every phase:

  healthz      GET /healthz in a loop: 1 s warm-up, then counted for 5 s.
  forms        every member GETs the answer form once (with the session cookie; this hands out
               the CSRF cookie).
  submissions  every member POSTs the form once (session + CSRF cookie, _csrf_token, the seven
               items, a comment for one in ten). Success is a 303. Timed on its own:
               "submissions/s" is POSTs per second over this phase.

The ratio is submissions/s divided by healthz/s: the cost of an answer relative to the cheapest
request the server can serve (target: >= 0.20). "pairs/s" is members / (forms + submissions
time), the rate of whole GET+POST visits. The CPU line shows where the time went during the POST
phase: the server process (100% = the one worker is saturated), this client, and the whole
machine (2 cores here, shared with PostgreSQL). Afterwards ten members answer again (each must
get a 409), then the ledger is checked: participation rows == community tally respondents ==
sum of team tallies == 303 responses, and pending comments == comments accepted. "lost" is
303s minus community respondents; any mismatch is printed loudly and the exit code is 1.
Otherwise the exit code is 0: the figures are information, not a test.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections import Counter
from datetime import timedelta
from pathlib import Path
from urllib.parse import urlencode

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from sqlalchemy import func, select  # noqa: E402
from sqlalchemy.ext.asyncio import async_sessionmaker  # noqa: E402

from safespace.db.engine import make_engine  # noqa: E402
from safespace.db.migrate import upgrade  # noqa: E402
from safespace.identity import services as identity  # noqa: E402
from safespace.identity.signin import start_session  # noqa: E402
from safespace.pulse import services as pulse  # noqa: E402
from safespace.pulse.models import Participation, PendingComment, Tally  # noqa: E402
from safespace.pulse.schedule import open_round  # noqa: E402
from safespace.settings import Settings  # noqa: E402
from safespace.web import SESSION_COOKIE  # noqa: E402
from surveys.cadence import window_at  # noqa: E402
from surveys.instrument import builtin_instruments  # noqa: E402

PG_ADMIN = "postgresql://root@127.0.0.1:5432/postgres"
CSRF_COOKIE = "safespace_csrf"
INSTRUMENT = "psychological_safety"
TEAMS = 4
WARMUP_SECONDS, HEALTHZ_SECONDS = 1.0, 5.0
RECHECK = 10  # members who answer a second time and must be refused


class Connection:
    """One keep-alive HTTP/1.1 connection; just enough protocol for this app (cheap on CPU)."""

    def __init__(self, port: int) -> None:
        self.port, self.reader, self.writer = port, None, None

    async def request(self, method: str, path: str, cookies: dict[str, str], body: bytes = b"") -> tuple[int, dict[str, str]]:
        if self.writer is None:
            self.reader, self.writer = await asyncio.open_connection("127.0.0.1", self.port)
        head = f"{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n"
        if cookies:
            head += "Cookie: " + "; ".join(f"{k}={v}" for k, v in cookies.items()) + "\r\n"
        if method == "POST":
            head += f"Content-Type: application/x-www-form-urlencoded\r\nContent-Length: {len(body)}\r\n"
        self.writer.write(head.encode() + b"\r\n" + body)
        lines = (await self.reader.readuntil(b"\r\n\r\n")).decode("latin-1").split("\r\n")
        status, length, chunked, close, set_cookies = int(lines[0].split(" ", 2)[1]), 0, False, False, {}
        for line in lines[1:]:
            name, _, value = line.partition(":")
            name, value = name.lower(), value.strip()
            if name == "content-length":
                length = int(value)
            elif name == "transfer-encoding":
                chunked = "chunked" in value.lower()
            elif name == "connection":
                close = value.lower() == "close"
            elif name == "set-cookie":
                key, _, cookie = value.split(";", 1)[0].partition("=")
                set_cookies[key.strip()] = cookie.strip()
        if chunked:
            while size := int((await self.reader.readuntil(b"\r\n")).split(b";")[0], 16):
                await self.reader.readexactly(size + 2)
            await self.reader.readuntil(b"\r\n")
        else:
            await self.reader.readexactly(length)
        if close:
            self.close()
        return status, set_cookies

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
        self.reader = self.writer = None


class CpuMeter:
    """CPU seconds of the server process, this process and the machine, between start and stop."""

    def __init__(self, pid: int) -> None:
        self.pid = pid

    def _sample(self) -> tuple[float, float, float, float]:
        fields = Path(f"/proc/{self.pid}/stat").read_text().rsplit(")", 1)[1].split()
        server = (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
        cpu = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
        busy = (sum(cpu) - cpu[3] - cpu[4]) / os.sysconf("SC_CLK_TCK")
        return time.perf_counter(), server, time.process_time(), busy

    def start(self) -> None:
        self.begin = self._sample()

    def stop(self) -> str:
        wall, server, client, busy = (b - a for a, b in zip(self.begin, self._sample()))
        return (f"server {server / wall:.0%} of a core, client {client / wall:.0%}, "
                f"machine {busy / wall / os.cpu_count():.0%} of {os.cpu_count()} cores")


async def seed(settings: Settings, members: int) -> tuple[str, str, list[str]]:
    """Community, teams, members with sessions and an open round; committed. Returns ids and cookies."""
    engine = make_engine(settings)
    await upgrade(engine)
    async with async_sessionmaker(engine, expire_on_commit=False)() as db:
        founder, _ = await identity.get_or_create_person(db, "facilitator@bench.example")
        community = await identity.create_community(db, founder.id, "Bench", "", 5, "UTC")
        teams = [await identity.create_team(db, community.id, f"Team {n + 1}") for n in range(TEAMS)]
        tokens = []
        for n in range(members):
            person, _ = await identity.get_or_create_person(db, f"member{n}@bench.example")
            identity.add_membership(db, community.id, person.id, teams[n % TEAMS].id, "active")
            tokens.append(await start_session(db, person.id, community.id))
        today = identity.now().date()  # the community's time zone is UTC
        form = pulse.CadenceForm(every="weekly", weekday=today.weekday(), day_of_month=1, open_days=6, start=today)
        survey = await pulse.create_survey(db, community.id, "UTC", "Bench pulse", [INSTRUMENT], form)
        window = window_at(pulse.survey_cadence(survey), identity.now())
        assert window is not None, "the bench round should be open now"
        round_ = await open_round(db, survey, window)
        await db.commit()
    await engine.dispose()
    return str(community.id), str(round_.id), tokens


async def ledger(settings: Settings, round_id: str) -> dict[str, int]:
    import uuid

    rid = uuid.UUID(round_id)
    engine = make_engine(settings)
    async with async_sessionmaker(engine)() as db:
        tallies = dict((await db.execute(
            select(Tally.group_key, Tally.respondents).where(Tally.round_id == rid, Tally.instrument == INSTRUMENT)
        )).all())
        found = {
            "participation": await db.scalar(select(func.count()).select_from(Participation).where(Participation.round_id == rid)),
            "community": tallies.pop(pulse.COMMUNITY),
            "teams": sum(tallies.values()),
            "comments": await db.scalar(select(func.count()).select_from(PendingComment).where(PendingComment.round_id == rid)),
        }
    await engine.dispose()
    return found


def answer_body(csrf: str, rng: random.Random, comment: bool) -> bytes:
    fields = {"_csrf_token": csrf}
    for item in builtin_instruments()[INSTRUMENT].item_keys:
        fields[f"{INSTRUMENT}.{item}"] = str(rng.randint(1, 7))
    if comment:
        fields[f"{INSTRUMENT}.comment"] = "More time in retrospectives to talk about what went wrong."
    return urlencode(fields).encode()


async def drive(port: int, concurrency: int, jobs: list, call) -> float:  # noqa: ANN001
    """Run call(connection, job) for every job over `concurrency` connections; seconds taken."""
    queue = iter(jobs)
    conns = [Connection(port) for _ in range(concurrency)]

    async def worker(conn: Connection) -> None:
        for job in queue:
            await call(conn, job)

    started = time.perf_counter()
    await asyncio.gather(*(worker(c) for c in conns))
    elapsed = time.perf_counter() - started
    for conn in conns:
        conn.close()
    return elapsed


async def healthz_rate(port: int, concurrency: int) -> float:
    started = time.perf_counter()
    window = (started + WARMUP_SECONDS, started + WARMUP_SECONDS + HEALTHZ_SECONDS)
    counted = 0

    async def call(conn: Connection, _job: None) -> None:
        nonlocal counted
        status, _ = await conn.request("GET", "/healthz", {})
        assert status == 200, f"/healthz answered {status}"
        counted += window[0] <= time.perf_counter() < window[1]

    def until_end():  # noqa: ANN202
        while time.perf_counter() < window[1]:
            yield None

    await drive(port, concurrency, until_end(), call)
    return counted / HEALTHZ_SECONDS


def profiler(pid: int, path: str | None, label: str) -> subprocess.Popen | None:
    """py-spy recording the server during the POST phase (--profile x.svg: flame graph, x.txt: folded)."""
    if not path:
        return None
    out = Path(path).with_stem(f"{Path(path).stem}-{label}")
    fmt = "raw" if out.suffix == ".txt" else "flamegraph"
    spy = subprocess.Popen([str(Path(sys.executable).with_name("py-spy")), "record", "--pid", str(pid), "--rate", "250",
                            "--format", fmt, "-o", str(out)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    time.sleep(1)  # let it attach
    print(f"{label}: profiling the server into {out}")
    return spy


async def start_server(env: dict[str, str], log: Path) -> tuple[subprocess.Popen, int]:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    proc = subprocess.Popen(
        [sys.executable, "-m", "safespace", "serve", "--host", "127.0.0.1", "--port", str(port)],
        cwd=ROOT, env=os.environ | env, stdout=log.open("w"), stderr=subprocess.STDOUT,
    )
    for _ in range(300):
        if proc.poll() is not None:
            raise SystemExit(f"the server exited with {proc.returncode}:\n{log.read_text()}")
        probe = Connection(port)
        try:
            if (await probe.request("GET", "/healthz", {}))[0] == 200:
                probe.close()
                return proc, port
        except OSError:
            await asyncio.sleep(0.1)
    raise SystemExit("the server did not answer /healthz within 30 s")


async def bench(label: str, database_url: str, args: argparse.Namespace) -> bool:
    """Seed, serve, measure and check one database; prints its block. False if answers were lost."""
    data_dir = Path(tempfile.mkdtemp(prefix="safespace-bench-"))
    env = {"SAFESPACE_DATA_DIR": str(data_dir), "SAFESPACE_DATABASE_URL": database_url,
           "SAFESPACE_BASE_URL": "http://127.0.0.1", "SAFESPACE_SCHEDULE_INTERVAL_SECONDS": "0",
           "SAFESPACE_LOG_LEVEL": "WARNING"}
    settings = Settings(data_dir=str(data_dir), database_url=database_url, base_url=env["SAFESPACE_BASE_URL"],
                        schedule_interval_seconds=0, log_level="WARNING")
    started = time.perf_counter()
    community_id, round_id, tokens = await seed(settings, args.members)
    print(f"{label}: seeded {args.members} members in {time.perf_counter() - started:.1f} s; serving from {data_dir}")
    proc, port = await start_server(env, data_dir / "server.log")
    try:
        meter = CpuMeter(proc.pid)
        meter.start()
        healthz = await healthz_rate(port, args.concurrency)
        healthz_cpu = meter.stop()

        path = f"/c/{community_id}/rounds/{round_id}"
        csrf: dict[int, str] = {}
        statuses: Counter[int] = Counter()
        rng = random.Random(1)
        bodies: dict[int, bytes] = {}

        async def get_form(conn: Connection, member: int) -> None:
            status, cookies = await conn.request("GET", path, {SESSION_COOKIE: tokens[member]})
            assert status == 200 and CSRF_COOKIE in cookies, f"form GET answered {status}"
            csrf[member] = cookies[CSRF_COOKIE]
            bodies[member] = answer_body(csrf[member], rng, comment=member % 10 == 0)

        async def post_answer(conn: Connection, member: int) -> None:
            cookies = {SESSION_COOKIE: tokens[member], CSRF_COOKIE: csrf[member]}
            statuses[(await conn.request("POST", path, cookies, bodies[member]))[0]] += 1

        members = list(range(args.members))
        forms_time = await drive(port, args.concurrency, members, get_form)
        spy = profiler(proc.pid, args.profile, label)
        meter.start()
        posts_time = await drive(port, args.concurrency, members, post_answer)
        posts_cpu = meter.stop()
        if spy is not None:
            spy.send_signal(signal.SIGINT)
            spy.wait(timeout=60)
        accepted = statuses[303]
        comments = sum(1 for m in members if m % 10 == 0) if accepted == args.members else None
        again: Counter[int] = Counter()

        async def post_again(conn: Connection, member: int) -> None:
            cookies = {SESSION_COOKIE: tokens[member], CSRF_COOKIE: csrf[member]}
            again[(await conn.request("POST", path, cookies, bodies[member]))[0]] += 1

        await drive(port, 1, members[:RECHECK], post_again)
    finally:
        proc.terminate()
        proc.wait(timeout=15)

    found = await ledger(settings, round_id)
    submissions = args.members / posts_time
    lost = accepted - found["community"]
    print(f"{label + ':':<12} submissions {submissions:.1f}/s  healthz {healthz:.1f}/s  "
          f"ratio {submissions / healthz:.2f} (target >= 0.20)  lost {lost}")
    print(f"{'':12} forms {args.members / forms_time:.1f}/s, GET+POST pairs {args.members / (forms_time + posts_time):.1f}/s;"
          f" POST statuses {dict(statuses)}, second answers {dict(again)}")
    print(f"{'':12} CPU during POSTs: {posts_cpu}")
    print(f"{'':12} CPU during healthz: {healthz_cpu}")
    ok = accepted == found["participation"] == found["community"] == found["teams"] and set(again) <= {409}
    if comments is not None:
        ok = ok and found["comments"] == comments
    if not ok:
        print(f"!!! {label}: LEDGER MISMATCH: 303s {accepted}, {found}, comments sent {comments}, "
              f"second answers {dict(again)}", file=sys.stderr)
    if accepted != args.members:
        print(f"!!! {label}: {args.members - accepted} submissions were refused; see {data_dir / 'server.log'}", file=sys.stderr)
    if ok and accepted == args.members:
        shutil.rmtree(data_dir)
    return ok


async def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--members", type=int, default=2000)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--profile", metavar="FILE", help="py-spy the server during the POSTs (.svg or .txt)")
    parser.add_argument("--db", choices=["sqlite", "postgresql", "both"], default="both")
    args = parser.parse_args()
    print(f"{args.members} members, {args.concurrency} connections, one uvicorn worker, {os.cpu_count()} CPUs")
    ok = True
    if args.db in ("sqlite", "both"):
        ok &= await bench("sqlite", "", args)
    if args.db in ("postgresql", "both"):
        import asyncpg

        name = f"safespace_bench_{secrets.token_hex(4)}"
        try:
            admin = await asyncpg.connect(PG_ADMIN, timeout=5)
        except (OSError, asyncio.TimeoutError, asyncpg.PostgresError) as exc:
            print(f"postgresql: skipped, cannot reach {PG_ADMIN} ({exc})")
            return 0 if ok else 1
        try:
            await admin.execute(f'CREATE DATABASE "{name}"')
            ok &= await bench("postgresql", f"postgresql+asyncpg://root@127.0.0.1:5432/{name}", args)
        finally:
            await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
            await admin.close()
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
