"""Soak: mixed traffic at a steady rate for --minutes on PostgreSQL, two uvicorn workers.

    .venv/bin/python bench/soak.py [--minutes 20] [--rate R] [--members 2000] [--workers 2]

Seeding (in-process, committed, in a fresh PostgreSQL database dropped afterwards): bench/dashboard.py's
community (--members members in 20 teams, one facilitator, --rounds closed weekly rounds with their
tallies, ledger and comments); --stories released stories (three per weekly batch, through the real
store and release functions); a session for every member (bulk insert). Answers need members who
have not answered yet, so after the calibration enough rounds are opened, each in a survey of its
own ("Soak pulse N", opened by lifecycle.open_round), for the whole run: every member answers round
1, then round 2, and so on. The anonymous token path is left out: its cost is bench/tokens.py's.

Traffic mix, by slot: 20% answers (the member GETs the answer form, which sets the CSRF cookie, and
POSTs it THINK_SECONDS later with session and CSRF, seven items, a comment in one of ten: a 303), 40%
story wall reads (GET /c/{id}/stories as a random member), 25% trend pages (GET
/c/{id}/insights?survey=...) and 15% round pages (GET /c/{id}/insights/rounds/{latest closed}) as
the facilitator. So of the requests: form 1/6, answer 1/6, stories 1/3, insights 5/24, round 1/8.

The load is open-loop: requests are scheduled at fixed times (--rate requests/s, evenly spaced) and
sent then whatever happened to the ones before, over a pool of keep-alive connections that grows
as needed; latency is measured from the scheduled time, not from the moment the request was sent,
so a stalled server (or a stalled client) shows up in p99 instead of slowing the load down
(closed-loop clients hide stalls: "coordinated omission"). "client lag" says how late this client
started requests: if it is large, the client, not the server, was late.

Without --rate, a short closed-loop calibration (8 connections, the same mix, CALIBRATE_SECONDS
counted) measures what the machine sustains and the run uses 60% of it. The first minute is
warm-up; the figures count requests scheduled after it. Printed: a line a minute, then throughput,
p50/p99 latency per route, errors (any unexpected status or connection error), the workers' RSS
(sum of VmRSS over uvicorn's worker processes) after warm-up and at the end, the load average, and
met/not met for the targets: zero errors, RSS growth under 10%, p99 under 10 x p50 for every route.
Every acknowledged answer must be counted in its round (ledger == tallies). Exits 1 if a target
is not met.
"""

from __future__ import annotations

import argparse
import asyncio
import math
import os
import random
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections import Counter, defaultdict
from datetime import timedelta
from pathlib import Path

from dashboard import seed as seed_community
from dashboard import server_cpu
from sqlalchemy import insert, select
from sqlalchemy.ext.asyncio import AsyncEngine, async_sessionmaker
from submit import CSRF_COOKIE, INSTRUMENT, Connection, NoPostgreSQL, answer_body, drive, ledger, throwaway_database

from safespace import clock
from safespace.db.engine import make_engine
from safespace.identity import signin
from safespace.identity.models import Membership, WebSession
from safespace.privacy.crypto import Keyring
from safespace.pulse import lifecycle
from safespace.pulse import services as pulse
from safespace.settings import Settings
from safespace.stories import services as stories
from safespace.web.session import SESSION_COOKIE
from surveys.cadence import window_at

WARMUP_SECONDS, THINK_SECONDS, CALIBRATE_SECONDS, HEADROOM = 60.0, 5.0, 12.0, 0.6
SLOTS = {"answer": 0.20, "stories": 0.40, "insights": 0.25, "round": 0.15}  # "answer" is two requests
ROUTES = ("form", "answer", "stories", "insights", "round")
EXPECTED = {"form": 200, "answer": 303, "stories": 200, "insights": 200, "round": 200}
MAX_CONNECTIONS, KEEP_ALIVE_SECONDS = 256, 4.0  # uvicorn closes keep-alive connections idle for 5 s
STORY = stories.StoryText(
    title="The pilot nobody asked the clinics about",
    happened="We designed a referral scheme with the ministry and rolled it out to twelve districts. "
    "Nobody had asked the clinic staff how referrals actually moved; the forms went unused for months. " * 2,
    learned="Talk to the people who will carry the paper before the paper exists. Watch a week of real work first.",
    differently="Run it in two districts with the staff in the room, and budget the time to change it.",
)


# --- seeding ----------------------------------------------------------------------------------------


async def seed_stories(engine: AsyncEngine, keyring: Keyring, community_id: uuid.UUID, count: int) -> None:
    """`count` stories, released three a week over the past weeks (newest last), by the service functions."""
    async with async_sessionmaker(engine, expire_on_commit=False)() as db:
        batches = math.ceil(count / stories.BATCH_SIZE)
        for batch in range(batches):
            for _ in range(min(stories.BATCH_SIZE, count - batch * stories.BATCH_SIZE)):
                tags = random.sample(stories.DEFAULT_TAGS, 2)
                await stories.store_story(db, keyring, community_id, STORY, tags, wants_advice=False, moderated=False)
            moment = clock.now() - timedelta(weeks=batches - batch)
            await stories.release_due(db, keyring, moment, moment.weekday(), 0)
        await db.commit()


async def seed_sessions(engine: AsyncEngine, community_id: uuid.UUID) -> list[str]:
    """A session for every plain member of the community (bulk), returns their cookie tokens."""
    async with engine.begin() as conn:
        people = (await conn.scalars(select(Membership.person_id).where(
            Membership.community_id == community_id, Membership.role == "member"))).all()  # fmt: skip
        hour = clock.now().replace(minute=0, second=0, microsecond=0)
        tokens = [os.urandom(24).hex() for _ in people]
        await conn.execute(insert(WebSession.__table__), [
            {"id": uuid.uuid4(), "token_hash": signin.token_hash(t), "person_id": p, "community_id": community_id,
             "created_at": hour, "last_seen_at": hour, "flash": None} for t, p in zip(tokens, people)])  # fmt: skip
    return tokens


async def open_rounds(engine: AsyncEngine, keyring: Keyring, community_id: uuid.UUID, count: int, first: int) -> list[str]:
    """`count` open rounds, each in a survey of its own, as the schedule opens them."""
    ids = []
    async with async_sessionmaker(engine, expire_on_commit=False)() as db:
        today = clock.now().date()
        form = pulse.CadenceForm(every="weekly", weekday=today.weekday(), day_of_month=1, open_days=6, start=today)
        for n in range(first, first + count):
            survey = await pulse.create_survey(db, community_id, "UTC", f"Soak pulse {n}", [INSTRUMENT], form)
            window = window_at(pulse.survey_cadence(survey), clock.now())
            assert window is not None, "the soak round should be open now"
            ids.append(str((await lifecycle.open_round(db, survey, window, keyring)).id))
        await db.commit()
    return ids


# --- the server -------------------------------------------------------------------------------------


async def serve(env: dict[str, str], log: Path, workers: int) -> tuple[subprocess.Popen, int]:
    """`safespace serve --workers N` on a free port, once /healthz answers and all workers are up."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    command = [sys.executable, "-m", "safespace", "serve", "--host", "127.0.0.1", "--port", str(port), "--workers", str(workers)]
    proc = subprocess.Popen(command, cwd=Path(__file__).resolve().parent.parent, env=os.environ | env,
                            stdout=log.open("w"), stderr=subprocess.STDOUT)  # fmt: skip
    for _ in range(600):
        if proc.poll() is not None:
            raise SystemExit(f"the server exited with {proc.returncode}:\n{log.read_text()}")
        try:
            await drive(port, 1, [None], lambda conn, _: conn.request("GET", "/healthz", {}))
            if len(worker_pids(proc.pid)) >= workers:
                return proc, port
        except ConnectionError:
            pass
        await asyncio.sleep(0.1)
    proc.terminate()  # not left running behind the error
    proc.wait(timeout=15)
    raise SystemExit("the server did not answer /healthz with all its workers within 60 s")


def worker_pids(pid: int) -> list[int]:
    """uvicorn's worker processes: the children of the server process (not multiprocessing's
    helpers), or the server process itself when it serves alone (--workers 1)."""
    try:
        children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
        workers = [int(c) for c in children if b"resource_tracker" not in Path(f"/proc/{c}/cmdline").read_bytes()]
    except FileNotFoundError:
        return []
    return workers or [pid]


def rss_mb(pids: list[int]) -> float:
    total = 0
    for pid in pids:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                total += int(line.split()[1])
    return total / 1024


# --- load -------------------------------------------------------------------------------------------


class Traffic:
    """The routes and who calls them; answers hand out (round, member) pairs, each used once."""

    def __init__(self, port: int, community: str, survey: str, closed_round: str, facilitator: str, tokens: list[str]) -> None:
        self.port, self.tokens, self.rng = port, tokens, random.Random(7)
        self.paths = {"stories": f"/c/{community}/stories", "insights": f"/c/{community}/insights?survey={survey}",
                      "round": f"/c/{community}/insights/rounds/{closed_round}"}  # fmt: skip
        self.facilitator, self.community = {SESSION_COOKIE: facilitator}, community
        self.rounds: list[str] = []
        self.order = list(range(len(tokens)))
        self.next_answer, self.acknowledged = 0, Counter()
        self.idle: list[tuple[Connection, float]] = []  # with the time each was last used
        self.open_connections = asyncio.Semaphore(MAX_CONNECTIONS)

    def answers_left(self) -> int:
        return len(self.rounds) * len(self.tokens) - self.next_answer

    def take_answer(self) -> tuple[str, int]:
        n, self.next_answer = self.next_answer, self.next_answer + 1
        if n % len(self.tokens) == 0:
            self.rng.shuffle(self.order)
        return self.rounds[n // len(self.tokens)], self.order[n % len(self.tokens)]

    async def call(self, route: str, method: str, path: str, cookies: dict, body: bytes = b"") -> tuple[bool, dict]:
        """One request on an idle connection (or a new one); (as expected, cookies set)."""
        async with self.open_connections:
            conn, used = self.idle.pop() if self.idle else (Connection(self.port), 0.0)
            if time.perf_counter() - used > KEEP_ALIVE_SECONDS:
                conn.close()  # uvicorn may be closing it just now: a fresh one instead of a race
            try:
                status, set_cookies = await conn.request(method, path, cookies, body)
            except ConnectionError:
                return False, {}
            finally:
                self.idle.append((conn, time.perf_counter()))
        return status == EXPECTED[route] and (route != "form" or CSRF_COOKIE in set_cookies), set_cookies

    async def read(self, route: str) -> bool:
        cookies = self.facilitator if route != "stories" else {SESSION_COOKIE: self.rng.choice(self.tokens)}
        return (await self.call(route, "GET", self.paths[route], cookies))[0]

    async def form(self, round_id: str, member: int) -> str | None:
        """The answer form; the CSRF cookie it sets, None if it failed."""
        ok, cookies = await self.call("form", "GET", f"/c/{self.community}/rounds/{round_id}", {SESSION_COOKIE: self.tokens[member]})
        return cookies[CSRF_COOKIE] if ok else None

    async def answer(self, round_id: str, member: int, csrf: str) -> bool:
        cookies = {SESSION_COOKIE: self.tokens[member], CSRF_COOKIE: csrf}
        body = answer_body(csrf, self.rng, comment=self.rng.random() < 0.1)
        ok = (await self.call("answer", "POST", f"/c/{self.community}/rounds/{round_id}", cookies, body))[0]
        self.acknowledged[round_id] += ok
        return ok


def pick(rng: random.Random) -> str:
    return rng.choices(list(SLOTS), weights=list(SLOTS.values()))[0]


async def calibrate(traffic: Traffic, seconds: float, concurrency: int = 8) -> tuple[float, Counter]:
    """Closed-loop requests/s of the same mix (2 s warm-up, then `seconds` counted), and the failures."""
    start = time.perf_counter() + 2.0
    end, counted, failed, rng = start + seconds, 0, Counter(), random.Random(3)

    async def worker() -> None:
        nonlocal counted
        while time.perf_counter() < end:
            kind = pick(rng)
            if kind == "answer":
                round_id, member = traffic.take_answer()
                csrf = await traffic.form(round_id, member)
                results = [("form", csrf is not None)] + ([("answer", await traffic.answer(round_id, member, csrf))] if csrf else [])
            else:
                results = [(kind, await traffic.read(kind))]
            for route, ok in results:
                failed[route] += not ok
                counted += start <= time.perf_counter() < end

    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return counted / seconds, failed


class Record:
    """Latencies (from the scheduled time) and failures per route, by scheduled time."""

    def __init__(self) -> None:
        self.samples: list[tuple[float, str, float, bool, float]] = []  # scheduled, route, latency, ok, client lag

    def add(self, scheduled: float, route: str, ok: bool, lag: float) -> None:
        self.samples.append((scheduled, route, time.perf_counter() - scheduled, ok, lag))

    def between(self, start: float, end: float) -> list[tuple[float, str, float, bool, float]]:
        return [s for s in self.samples if start <= s[0] < end]


def quantile(values: list[float], q: float) -> float:
    """Nearest-rank quantile (0 for no values)."""
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, math.ceil(q * len(ordered)) - 1))] if ordered else 0.0


async def run_load(traffic: Traffic, rate: float, seconds: float, record: Record, on_minute) -> None:  # noqa: ANN001
    """Open-loop: slots evenly spaced so that requests (a slot "answer" is two) come at `rate`/s."""
    slot_rate = rate / (1 + SLOTS["answer"])
    rng, tasks, begin = random.Random(11), set(), time.perf_counter()

    async def read(kind: str, at: float) -> None:
        lag = time.perf_counter() - at
        record.add(at, kind, await traffic.read(kind), lag)

    async def answer(at: float) -> None:
        round_id, member = traffic.take_answer()
        lag = time.perf_counter() - at
        csrf = await traffic.form(round_id, member)
        record.add(at, "form", csrf is not None, lag)
        posted = at + THINK_SECONDS
        await asyncio.sleep(max(0.0, posted - time.perf_counter()))
        lag = time.perf_counter() - posted
        if csrf is None:
            record.add(posted, "answer", False, lag)  # no form, no answer: the member saw an error
        else:
            record.add(posted, "answer", await traffic.answer(round_id, member, csrf), lag)

    n, minute = 0, 1
    while (at := begin + n / slot_rate) < begin + seconds:
        await asyncio.sleep(max(0.0, at - time.perf_counter()))
        if at >= begin + 60 * minute:
            on_minute(minute, begin)
            minute += 1
        kind = pick(rng)
        task = asyncio.create_task(answer(at) if kind == "answer" else read(kind, at))
        tasks.add(task)
        task.add_done_callback(tasks.discard)
        n += 1
    await asyncio.gather(*tasks)
    on_minute(minute, begin)


# --- the run ----------------------------------------------------------------------------------------


async def soak(database_url: str, args: argparse.Namespace) -> bool:
    data_dir = Path(tempfile.mkdtemp(prefix="safespace-soak-"))
    settings = Settings(data_dir=str(data_dir), database_url=database_url, base_url="http://127.0.0.1",
                        schedule_interval_seconds=0, log_level="WARNING")  # fmt: skip
    env = {f"SAFESPACE_{name.upper()}": str(getattr(settings, name))
           for name in ("data_dir", "database_url", "base_url", "schedule_interval_seconds", "log_level")}  # fmt: skip
    started, engine = time.perf_counter(), make_engine(settings)
    keyring = Keyring.load(settings.encryption_key_path)
    seeded = await seed_community(engine, keyring, args.members, args.rounds, False, 0.02)
    await seed_stories(engine, keyring, seeded["community"], args.stories)
    tokens = await seed_sessions(engine, seeded["community"])
    print(f"seeded {args.members} members with sessions, {args.rounds} closed rounds ({seeded['ledger']:,} ledger rows, "
          f"{seeded['comments']:,} comments), {args.stories} released stories in {time.perf_counter() - started:.1f} s")  # fmt: skip
    log = data_dir / "server.log"
    proc, port = await serve(env, log, args.workers)
    traffic = Traffic(port, str(seeded["community"]), str(seeded["survey"]), str(seeded["round"]), seeded["token"], tokens)
    try:
        traffic.rounds += await open_rounds(engine, keyring, seeded["community"], 1, 1)
        rate = args.rate
        if rate is None:
            sustained, failed = await calibrate(traffic, CALIBRATE_SECONDS)
            rate = round(HEADROOM * sustained, 1)
            print(f"calibration: {sustained:.1f} requests/s closed-loop (8 connections, {CALIBRATE_SECONDS:.0f} s), "
                  f"failures {dict(+failed) or 0}; running at {HEADROOM:.0%}: {rate} requests/s")  # fmt: skip
        seconds = WARMUP_SECONDS + args.minutes * 60
        needed = seconds * rate / (1 + SLOTS["answer"]) * SLOTS["answer"] * 1.2 + 50  # 20% margin: slots are drawn at random
        more = max(0, math.ceil((needed - traffic.answers_left()) / len(tokens)))
        traffic.rounds += await open_rounds(engine, keyring, seeded["community"], more, len(traffic.rounds) + 1)
        print(f"load: {rate} requests/s open-loop for 1 warm-up minute + {args.minutes} min, {args.workers} workers, "
              f"{len(traffic.rounds)} open rounds x {len(tokens)} members for the answers; {os.cpu_count()} CPUs")  # fmt: skip
        record, figures = Record(), {}

        def on_minute(minute: int, begin: float) -> None:
            window = record.between(begin + 60 * (minute - 1), begin + 60 * minute)
            pids = worker_pids(proc.pid)
            if minute == 1:
                figures["start"] = (rss_mb(pids), os.getloadavg()[0], pids, sum(map(server_cpu, pids)), time.perf_counter())
            figures["end"] = (rss_mb(pids), os.getloadavg()[0], pids, sum(map(server_cpu, pids)), time.perf_counter())
            latencies = [s[2] for s in window]
            print(f"  minute {minute:>2}: {len(window) / 60:5.1f} req/s (scheduled in it, answered), errors {sum(not s[3] for s in window)}, "
                  f"p50 {quantile(latencies, 0.5) * 1000:6.1f} ms, p99 {quantile(latencies, 0.99) * 1000:7.1f} ms, "
                  f"RSS {rss_mb(pids):6.1f} MB, load {os.getloadavg()[0]:.2f}", flush=True)  # fmt: skip

        load_start = os.getloadavg()
        await run_load(traffic, rate, seconds, record, on_minute)
        load_end = os.getloadavg()
    finally:
        proc.terminate()
        proc.wait(timeout=30)
    counted = {r: await ledger(engine, uuid.UUID(r)) for r in traffic.rounds}
    await engine.dispose()
    return report(record, figures, traffic, counted, args.minutes, load_start, load_end, log)


def report(record: Record, figures: dict, traffic: Traffic, counted: dict, minutes: float, load_start, load_end, log: Path) -> bool:  # noqa: ANN001
    (rss0, _, pids0, cpu0, t0), (rss1, _, pids1, cpu1, t1) = figures["start"], figures["end"]
    begin = min(s[0] for s in record.samples) + WARMUP_SECONDS
    measured = record.between(begin, begin + minutes * 60)
    warmup_errors = sum(not s[3] for s in record.between(0, begin))
    by_route = defaultdict(list)
    for sample in measured:
        by_route[sample[1]].append(sample)
    print(f"\nthroughput {len(measured) / (minutes * 60):.1f} requests/s over {minutes:g} min after warm-up "
          f"({len(measured):,} requests); workers' CPU {(cpu1 - cpu0) / (t1 - t0):.0%} of a core")  # fmt: skip
    ok, errors = True, sum(not s[3] for s in measured)
    print(f"{'route':<10} {'requests':>9} {'errors':>7} {'p50 ms':>8} {'p99 ms':>8} {'p99/p50':>8}  target p99 < 10 x p50")
    for route in ROUTES:
        latencies = [s[2] for s in by_route[route]]
        p50, p99 = quantile(latencies, 0.5), quantile(latencies, 0.99)
        met = p99 < 10 * p50
        ok &= met
        print(f"{route:<10} {len(latencies):>9,} {sum(not s[3] for s in by_route[route]):>7} {p50 * 1000:>8.1f} {p99 * 1000:>8.1f} "
              f"{p99 / p50 if p50 else 0:>8.1f}  {'met' if met else 'NOT met'}")  # fmt: skip
    lags = [s[4] for s in measured]
    print(f"client lag (how late this client started requests): p50 {quantile(lags, 0.5) * 1000:.1f} ms, "
          f"p99 {quantile(lags, 0.99) * 1000:.1f} ms, max {max(lags, default=0) * 1000:.1f} ms")  # fmt: skip
    ok &= errors == 0
    print(f"errors: {errors} (warm-up: {warmup_errors})  target zero: {'met' if errors == 0 else 'NOT met'}")
    growth = rss1 / rss0 - 1
    ok &= growth < 0.10
    print(f"RSS of the {len(pids0)} workers: {rss0:.1f} MB after warm-up, {rss1:.1f} MB at the end, growth {growth:+.1%}  "
          f"target < 10%: {'met' if growth < 0.10 else 'NOT met'}" + ("" if pids0 == pids1 else f"  (workers changed: {pids0} -> {pids1})"))  # fmt: skip
    print(f"load average (1, 5, 15 min): start {' '.join(f'{x:.2f}' for x in load_start)}, end {' '.join(f'{x:.2f}' for x in load_end)}")
    acknowledged, tallied = sum(traffic.acknowledged.values()), sum(c["community"] for c in counted.values())
    consistent = all(c["participation"] == c["community"] == c["teams"] for c in counted.values()) and acknowledged == tallied
    ok &= consistent
    print(f"answers: {acknowledged:,} acknowledged, {tallied:,} in the tallies, ledger == tallies: {'yes' if consistent else 'NO'}")
    if not ok:
        print(f"server log: {log}")
    return ok


async def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--minutes", type=float, default=20, help="measured minutes after the warm-up minute (default 20)")
    parser.add_argument("--rate", type=float, help="requests/s (default: 60%% of a short closed-loop calibration)")
    parser.add_argument("--members", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=156, help="closed weekly rounds for the dashboard (default 156)")
    parser.add_argument("--stories", type=int, default=60, help="released stories on the wall (default 60)")
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()
    try:
        async with throwaway_database("safespace_soak") as url:
            ok = await soak(url, args)
    except NoPostgreSQL as exc:
        raise SystemExit(f"the soak needs PostgreSQL: {exc}") from None
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
