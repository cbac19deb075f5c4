"""Soak: one and two uvicorn workers side by side, on one PostgreSQL database, at the same rate.

    .venv/bin/python bench/soak.py [--minutes 1.5] [--rate R] [--workers 1,2] [--block 15] [--members 2000]

Seeding (in-process, committed, in a fresh PostgreSQL database dropped afterwards): bench/dashboard.py's
community (--members members in 20 teams, one facilitator, --rounds closed weekly rounds with their
tallies, ledger and comments); --stories released stories (three per weekly batch, through the real
store and release functions); a session for every member (bulk insert). Answers need members who
have not answered yet, so enough rounds are opened, each in a survey of its own ("Soak pulse N",
opened by lifecycle.open_round), for the whole run: every member answers round 1, then round 2, and
so on, whichever server takes the answer. The anonymous token path is left out: its cost is
bench/tokens.py's.

Both servers (`safespace serve --workers 1` and `--workers 2`, on the same database and data
directory) run for the whole soak. One open-loop stream of requests is sent to one of them at a
time, in blocks of --block seconds: first a warm-up block on each (not counted), then measured
blocks in the order A B B A A B ... until each has had --minutes. Both therefore see the same rate
and the same mix, and a change in what else the machine runs (other jobs share its cores) falls on
both alike instead of on whichever ran second. A CPU line per block says what this soak and
everything else on the machine used: "others" is the machine's busy time minus the server, its
PostgreSQL backends and this client; when it is large the latencies of that block say more about
the machine than about the server.

The traffic is what members and the facilitator do, through the real routes, by slot: 20% answers
(the member GETs the answer form, which sets the CSRF cookie, and THINK_SECONDS later POSTs it with
session and CSRF, seven items, a comment in one of ten, and follows the 303 to the community page
that says thank you: the answer's latency is the POST and that page, what the member waits for),
40% story wall reads (GET /c/{id}/stories as a random member), 25% trend pages (GET
/c/{id}/insights?survey=...) and 15% round pages (GET /c/{id}/insights/rounds/{latest closed}) as the
facilitator. So of the requests: form 1/7, answer POST 1/7, thank-you page 1/7, stories 2/7,
insights 5/28, round 3/28.

The load is open-loop: requests are scheduled at fixed times (--rate requests/s, evenly spaced) and
sent then whatever happened to the ones before, over a pool of keep-alive connections per server
that grows as needed (each request in one write; asyncio sets TCP_NODELAY on every connection);
latency is measured from the scheduled time, not from the moment the request was sent, so a
stalled server (or a stalled client) shows up in p99 instead of slowing the load down
(closed-loop clients hide stalls: "coordinated omission"). "client lag" says how late this client
started requests: if it is large, the client, not the server, was late.

Without --rate, a short closed-loop calibration of each server (8 connections, the same mix,
CALIBRATE_SECONDS counted) measures what each sustains, and the run uses 60% of the smaller, so
that neither is driven into saturation. Printed: a line per block, then per route the p50, p90 and
p99 of each worker count side by side, and the p50 ratio of each against the first (target: within
RATIO_TARGET); per server its throughput, CPU, errors, the workers' RSS (sum of VmRSS over its
worker processes) after its warm-up and at the end, and met/not met for the targets: zero errors,
RSS growth under 10%, p99 under 10 x p50 for every route. Every acknowledged answer must be counted
in its round (ledger == tallies). Exits 1 if a target is not met. For a long soak (memory growth,
slow leaks), --minutes 20.

Reading the table: two workers about 40 ms slower at p50 on the pages whose body fits in one TCP
segment (form, thank-you page, trend page: under 64 KB on loopback) while the large ones (story
wall, round page) are not is Nagle's algorithm left on the workers' sockets meeting this client's
delayed ACK (uvicorn's head and body are two send()s). uvicorn up to 0.54 bound the socket of
--workers N with proto 0, and asyncio then skips TCP_NODELAY on the connections it accepts.
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
from pathlib import Path

from dashboard import seed as seed_community
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
from safespace.web.session import SESSION_COOKIE
from surveys.cadence import window_at

THINK_SECONDS, CALIBRATE_SECONDS, HEADROOM, RATIO_TARGET = 5.0, 8.0, 0.6, 1.5
SLOTS = {"answer": 0.20, "stories": 0.40, "insights": 0.25, "round": 0.15}  # "answer" is three requests
REQUESTS_PER_SLOT = 1 + 2 * SLOTS["answer"]  # the form, the POST and the thank-you page
ROUTES = ("form", "answer", "stories", "insights", "round")
EXPECTED = {"form": 200, "answer": 303, "thanks": 200, "stories": 200, "insights": 200, "round": 200}
THANKS = b"Thank you."  # the notice on the page the answer's 303 leads to (English: no language chosen)
MAX_CONNECTIONS, KEEP_ALIVE_SECONDS = 256, 4.0  # uvicorn closes keep-alive connections idle for 5 s


# --- seeding ----------------------------------------------------------------------------------------


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


# --- the servers ------------------------------------------------------------------------------------


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
            if len(worker_pids(proc.pid, workers)) >= workers:
                return proc, port
        except ConnectionError:
            pass
        await asyncio.sleep(0.1)
    proc.terminate()  # not left running behind the error
    proc.wait(timeout=15)
    raise SystemExit("the server did not answer /healthz with all its workers within 60 s")


def worker_pids(pid: int, workers: int) -> list[int]:
    """The processes that serve requests: with --workers 1 the server process itself (its children
    are multiprocessing's resource tracker and the token signer, which this soak leaves idle),
    else uvicorn's worker processes, the server's children but for the resource tracker."""
    if workers == 1:
        return [pid] if Path(f"/proc/{pid}").exists() else []
    try:
        children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
        return [int(c) for c in children if b"resource_tracker" not in Path(f"/proc/{c}/cmdline").read_bytes()]
    except FileNotFoundError:
        return []


def rss_mb(pids: list[int]) -> float:
    total = 0
    for pid in pids:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                total += int(line.split()[1])
    return total / 1024


def cpu_seconds(pid: int | str) -> float:
    """CPU seconds a process has used so far (0 if it is gone)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (FileNotFoundError, ProcessLookupError):
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class Meter:
    """CPU seconds used so far by each server's workers, by the PostgreSQL backends of this
    database, by this client, and by the whole machine (busy time of all its cores)."""

    def __init__(self, database: str, servers: dict[int, list[int]]) -> None:
        self.tag, self.servers = f" {database} ".encode(), servers

    def sample(self) -> dict[str, float]:
        figures = {str(w): sum(map(cpu_seconds, pids)) for w, pids in self.servers.items()}
        backends = 0.0
        for entry in Path("/proc").iterdir():
            if entry.name.isdigit():
                try:
                    if self.tag in (entry / "cmdline").read_bytes().replace(b"\0", b" ") + b" ":
                        backends += cpu_seconds(entry.name)
                except OSError:
                    pass
        ticks = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:9]]
        busy = (sum(ticks) - ticks[3] - ticks[4]) / os.sysconf("SC_CLK_TCK")  # all but idle and iowait
        return figures | {"postgresql": backends, "client": time.process_time(), "machine": busy, "wall": time.perf_counter()}

    def cores(self, before: dict[str, float], after: dict[str, float], workers: int) -> dict[str, float]:
        """Cores used between two samples by the server taking the load, PostgreSQL, the client and everything else."""
        wall = after["wall"] - before["wall"]
        used = {k: (after[k] - before[k]) / wall for k in after if k != "wall"}
        ours = sum(used[str(w)] for w in self.servers) + used["postgresql"] + used["client"]
        return {"server": used[str(workers)], "postgresql": used["postgresql"], "client": used["client"],
                "others": max(0.0, used["machine"] - ours)}  # fmt: skip


# --- load -------------------------------------------------------------------------------------------


class Answers:
    """(round, member) pairs for the answers, each used once whichever server takes it, and the
    answers acknowledged per round."""

    def __init__(self, tokens: list[str]) -> None:
        self.members, self.rng = len(tokens), random.Random(7)
        self.rounds: list[str] = []
        self.order = list(range(len(tokens)))
        self.taken, self.acknowledged = 0, Counter()

    def left(self) -> int:
        return len(self.rounds) * self.members - self.taken

    def take(self) -> tuple[str, int]:
        n, self.taken = self.taken, self.taken + 1
        if n % self.members == 0:
            self.rng.shuffle(self.order)
        return self.rounds[n // self.members], self.order[n % self.members]


class Traffic:
    """The routes of one server and who calls them, over that server's keep-alive connections."""

    def __init__(self, port: int, community: str, survey: str, closed_round: str, facilitator: str, tokens: list[str],
                 answers: Answers) -> None:  # fmt: skip
        self.port, self.tokens, self.answers, self.rng = port, tokens, answers, random.Random(port)
        self.paths = {"stories": f"/c/{community}/stories", "insights": f"/c/{community}/insights?survey={survey}",
                      "round": f"/c/{community}/insights/rounds/{closed_round}"}  # fmt: skip
        self.facilitator, self.community = {SESSION_COOKIE: facilitator}, community
        self.idle: list[tuple[Connection, float]] = []  # with the time each was last used
        self.open_connections = asyncio.Semaphore(MAX_CONNECTIONS)

    async def call(self, route: str, method: str, path: str, cookies: dict, body: bytes = b"") -> tuple[bool, dict, bytes]:
        """One request on an idle connection (or a new one); (as expected, cookies set, body)."""
        async with self.open_connections:
            conn, used = self.idle.pop() if self.idle else (Connection(self.port), 0.0)
            if time.perf_counter() - used > KEEP_ALIVE_SECONDS:
                conn.close()  # uvicorn may be closing it just now: a fresh one instead of a race
            try:
                status, set_cookies = await conn.request(method, path, cookies, body)
            except ConnectionError:
                return False, {}, b""
            finally:
                self.idle.append((conn, time.perf_counter()))
            page = conn.body
        return status == EXPECTED[route] and (route != "form" or CSRF_COOKIE in set_cookies), set_cookies, page

    async def read(self, route: str) -> bool:
        cookies = self.facilitator if route != "stories" else {SESSION_COOKIE: self.rng.choice(self.tokens)}
        return (await self.call(route, "GET", self.paths[route], cookies))[0]

    async def form(self, round_id: str, member: int) -> str | None:
        """The answer form; the CSRF cookie it sets, None if it failed."""
        ok, cookies, _ = await self.call("form", "GET", f"/c/{self.community}/rounds/{round_id}", {SESSION_COOKIE: self.tokens[member]})
        return cookies[CSRF_COOKIE] if ok else None

    async def answer(self, round_id: str, member: int, csrf: str) -> bool:
        """The POST, and the page its 303 leads to, which must thank the member."""
        cookies = {SESSION_COOKIE: self.tokens[member], CSRF_COOKIE: csrf}
        body = answer_body(csrf, self.rng, comment=self.rng.random() < 0.1)
        ok = (await self.call("answer", "POST", f"/c/{self.community}/rounds/{round_id}", cookies, body))[0]
        self.answers.acknowledged[round_id] += ok
        if not ok:
            return False
        ok, _, page = await self.call("thanks", "GET", f"/c/{self.community}", {SESSION_COOKIE: self.tokens[member]})
        return ok and THANKS in page

    async def action(self, kind: str) -> list[tuple[str, bool]]:
        """One slot, closed-loop (no thinking time): [(route, as expected)]."""
        if kind != "answer":
            return [(kind, await self.read(kind))]
        round_id, member = self.answers.take()
        csrf = await self.form(round_id, member)
        return [("form", csrf is not None)] + ([("answer", await self.answer(round_id, member, csrf))] if csrf else [])


def pick(rng: random.Random) -> str:
    return rng.choices(list(SLOTS), weights=list(SLOTS.values()))[0]


async def calibrate(traffic: Traffic, seconds: float, concurrency: int = 8) -> tuple[float, Counter]:
    """Closed-loop requests/s of the same mix (2 s warm-up, then `seconds` counted), and the failures."""
    start = time.perf_counter() + 2.0
    end, counted, failed, rng = start + seconds, 0, Counter(), random.Random(3)

    async def worker() -> None:
        nonlocal counted
        while time.perf_counter() < end:
            for route, ok in await traffic.action(pick(rng)):
                failed[route] += not ok
                counted += (1 + (route == "answer")) * (start <= time.perf_counter() < end)  # an answer is two requests

    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return counted / seconds, failed


def plan_blocks(workers: list[int], measured: int) -> list[tuple[int, bool]]:
    """(worker count, measured) per block: a warm-up block on each server, then `measured` blocks
    each in the order A B B A A B ..., so that a steady drift of the machine falls on both alike."""
    plan = [(w, False) for w in workers]
    for n in range(measured):
        plan += [(w, True) for w in (workers if n % 2 == 0 else workers[::-1])]
    return plan


class Record:
    """Latencies (from the scheduled time) and failures per route, by server and scheduled time."""

    def __init__(self) -> None:
        self.samples: list[tuple[int, float, str, float, bool, float]] = []  # workers, scheduled, route, latency, ok, client lag

    def add(self, workers: int, scheduled: float, route: str, ok: bool, lag: float) -> None:
        self.samples.append((workers, scheduled, route, time.perf_counter() - scheduled, ok, lag))


def requests(samples: list[tuple]) -> int:
    """Requests the samples stand for: an answer is two (the POST and the page it leads to)."""
    return len(samples) + sum(s[2] == "answer" for s in samples)


def quantile(values: list[float], q: float) -> float:
    """Nearest-rank quantile (0 for no values)."""
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, math.ceil(q * len(ordered)) - 1))] if ordered else 0.0


async def run_load(servers: dict[int, Traffic], plan: list[tuple[int, bool]], block: float, rate: float, record: Record, on_block) -> float:  # noqa: ANN001
    """Open-loop: slots evenly spaced so that requests come at `rate`/s, each sent to the server of
    the block its scheduled time falls in (an answer's POST, THINK_SECONDS after its form, too);
    on_block(i, begin) after each block. Returns the time the first block began."""
    slot_rate = rate / REQUESTS_PER_SLOT
    rng, tasks, begin = random.Random(11), set(), time.perf_counter()

    def server_at(moment: float) -> int:
        return plan[min(len(plan) - 1, int((moment - begin) // block))][0]

    async def read(kind: str, at: float) -> None:
        workers = server_at(at)
        lag = time.perf_counter() - at
        record.add(workers, at, kind, await servers[workers].read(kind), lag)

    async def answer(at: float) -> None:
        workers = server_at(at)
        round_id, member = servers[workers].answers.take()
        lag = time.perf_counter() - at
        csrf = await servers[workers].form(round_id, member)
        record.add(workers, at, "form", csrf is not None, lag)
        posted = at + THINK_SECONDS
        await asyncio.sleep(max(0.0, posted - time.perf_counter()))
        workers, lag = server_at(posted), time.perf_counter() - posted
        if csrf is None:
            record.add(workers, posted, "answer", False, lag)  # no form, no answer: the member saw an error
        else:
            record.add(workers, posted, "answer", await servers[workers].answer(round_id, member, csrf), lag)

    n, done = 0, 0
    while (at := begin + n / slot_rate) < begin + len(plan) * block:
        await asyncio.sleep(max(0.0, at - time.perf_counter()))
        while at >= begin + (done + 1) * block:
            on_block(done, begin)
            done += 1
        kind = pick(rng)
        task = asyncio.create_task(answer(at) if kind == "answer" else read(kind, at))
        tasks.add(task)
        task.add_done_callback(tasks.discard)
        n += 1
    await asyncio.sleep(max(0.0, begin + len(plan) * block - time.perf_counter()))
    for i in range(done, len(plan)):
        on_block(i, begin)
    await asyncio.gather(*tasks)  # the last answers' POSTs, THINK_SECONDS on: sent, not counted
    return begin


# --- the run ----------------------------------------------------------------------------------------


async def soak(database_url: str, args: argparse.Namespace) -> bool:
    data_dir = Path(tempfile.mkdtemp(prefix="safespace-soak-"))
    settings = Settings(data_dir=str(data_dir), database_url=database_url, base_url="http://127.0.0.1",
                        schedule_interval_seconds=0, log_level="WARNING")  # fmt: skip
    env = {f"SAFESPACE_{name.upper()}": str(getattr(settings, name))
           for name in ("data_dir", "database_url", "base_url", "schedule_interval_seconds", "log_level")}  # fmt: skip
    started, engine = time.perf_counter(), make_engine(settings)
    keyring = Keyring.load(settings.encryption_key_path)
    # The stories as bench/dashboard.py seeds them, with their reactions.
    seeded = await seed_community(engine, keyring, args.members, args.rounds, False, 0.02, args.stories, secret=settings.secret_key())
    tokens = await seed_sessions(engine, seeded["community"])
    print(f"seeded {args.members} members with sessions, {args.rounds} closed rounds ({seeded['ledger']:,} ledger rows, "
          f"{seeded['comments']:,} comments), {args.stories} released stories in {time.perf_counter() - started:.1f} s")  # fmt: skip
    answers = Answers(tokens)
    answers.rounds += await open_rounds(engine, keyring, seeded["community"], 1, 1)
    procs: dict[int, subprocess.Popen] = {}
    servers: dict[int, Traffic] = {}
    try:
        for workers in args.workers:
            procs[workers], port = await serve(env, data_dir / f"server-{workers}.log", workers)
            servers[workers] = Traffic(port, str(seeded["community"]), str(seeded["survey"]), str(seeded["round"]),
                                       seeded["token"], tokens, answers)  # fmt: skip
        rate = args.rate
        if rate is None:
            sustained = {}
            for workers, traffic in servers.items():
                sustained[workers], failed = await calibrate(traffic, CALIBRATE_SECONDS)
                print(f"calibration, {plural(workers)}: {sustained[workers]:.1f} requests/s closed-loop (8 connections, "
                      f"{CALIBRATE_SECONDS:.0f} s), failures {dict(+failed) or 0}")  # fmt: skip
            rate = round(HEADROOM * min(sustained.values()), 1)
            print(f"running at {HEADROOM:.0%} of the smaller: {rate} requests/s")
        measured = max(1, round(args.minutes * 60 / args.block))
        plan = plan_blocks(args.workers, measured)
        seconds = len(plan) * args.block + THINK_SECONDS
        needed = seconds * rate / REQUESTS_PER_SLOT * SLOTS["answer"] * 1.2 + 50  # 20% margin: slots are drawn at random
        more = max(0, math.ceil((needed - answers.left()) / len(tokens)))
        answers.rounds += await open_rounds(engine, keyring, seeded["community"], more, len(answers.rounds) + 1)
        print(f"load: {rate} requests/s open-loop, blocks of {args.block:g} s: a warm-up block on each server, then "
              f"{measured} measured blocks each ({measured * args.block / 60:g} min), in turn A B B A ...; "
              f"{len(answers.rounds)} open rounds x {len(tokens)} members for the answers; {os.cpu_count()} CPUs")  # fmt: skip
        pids = {w: worker_pids(p.pid, w) for w, p in procs.items()}
        meter, record = Meter(database_url.rsplit("/", 1)[1], pids), Record()
        blocks: list[dict] = []  # per block: workers, measured, cores, RSS at its end
        last = [meter.sample()]

        def on_block(i: int, begin: float) -> None:
            workers, counted = plan[i]
            now = meter.sample()
            cores = meter.cores(last[0], now, workers)
            last[0] = now
            blocks.append({"workers": workers, "measured": counted, "cores": cores, "rss": rss_mb(worker_pids(procs[workers].pid, workers)),
                           "pids": worker_pids(procs[workers].pid, workers)})  # fmt: skip
            window = [s for s in record.samples if begin + i * args.block <= s[1] < begin + (i + 1) * args.block]
            latencies = [s[3] for s in window]
            print(f"  block {i + 1:>2}, {plural(workers):<9}{'' if counted else ' (warm-up)':<10}: {requests(window) / args.block:5.1f} req/s, "
                  f"errors {sum(not s[4] for s in window)}, p50 {quantile(latencies, 0.5) * 1000:6.1f} ms, "
                  f"p99 {quantile(latencies, 0.99) * 1000:7.1f} ms; cores: server {cores['server']:.2f}, "
                  f"PostgreSQL {cores['postgresql']:.2f}, client {cores['client']:.2f}, others {cores['others']:.2f}", flush=True)  # fmt: skip

        begin = await run_load(servers, plan, args.block, rate, record, on_block)
    finally:
        for proc in procs.values():
            proc.terminate()
        for proc in procs.values():
            proc.wait(timeout=30)
    counted = {r: await ledger(engine, uuid.UUID(r)) for r in answers.rounds}
    await engine.dispose()
    return report(record, plan, blocks, begin, args, rate, answers, counted, data_dir)


def plural(workers: int) -> str:
    return f"{workers} worker{'s' if workers > 1 else ''}"


def report(record: Record, plan: list[tuple[int, bool]], blocks: list[dict], begin: float, args: argparse.Namespace, rate: float,
           answers: Answers, counted: dict, data_dir: Path) -> bool:  # fmt: skip
    def measured(sample: tuple) -> bool:
        i = int((sample[1] - begin) // args.block)
        return 0 <= i < len(plan) and plan[i][1]

    samples = [s for s in record.samples if measured(s)]
    by = defaultdict(list)
    for sample in samples:
        by[sample[0], sample[2]].append(sample)
    first, ok = args.workers[0], True
    seconds = {w: sum(args.block for pw, m in plan if pw == w and m) for w in args.workers}
    print(f"\n{rate} requests/s offered to each, {seconds[first] / 60:g} min measured each; latency from the scheduled time, ms")
    head = "".join(f" | {plural(w) + ': p50':>16} {'p90':>7} {'p99':>7}" for w in args.workers)
    ratios = "".join(f" | {f'p50 {w}/{first}':>9}" for w in args.workers[1:])
    print(f"{'route':<9}{head}{ratios}" + (f"  target <= {RATIO_TARGET:g}" if ratios else ""))
    for route in (*ROUTES, "all"):
        rows, p50 = [], {}
        for w in args.workers:
            latencies = [s[3] for s in (samples if route == "all" else by[w, route]) if route != "all" or s[0] == w]
            p50[w] = quantile(latencies, 0.5)
            rows.append(f" | {p50[w] * 1000:16.1f} {quantile(latencies, 0.9) * 1000:7.1f} {quantile(latencies, 0.99) * 1000:7.1f}")
        verdicts = []
        for w in args.workers[1:]:
            ratio = p50[w] / p50[first] if p50[first] else math.inf
            ok &= ratio <= RATIO_TARGET
            verdicts.append(f" | {ratio:9.2f}")
        met = all(p50[w] <= RATIO_TARGET * p50[first] for w in args.workers[1:])
        print(f"{route:<9}{''.join(rows)}{''.join(verdicts)}" + (f"  {'met' if met else 'NOT met'}" if verdicts else ""))
    for w in args.workers:
        mine = [s for s in samples if s[0] == w]
        kept = [b for b in blocks if b["workers"] == w]
        counting = [b for b in kept if b["measured"]]
        cores = {k: sum(b["cores"][k] for b in counting) / max(1, len(counting)) for k in ("server", "postgresql", "client", "others")}
        errors = sum(not s[4] for s in mine)
        print(f"\n{plural(w)}: {requests(mine) / seconds[w]:.1f} requests/s answered ({requests(mine):,}), errors {errors}  target zero: "
              f"{'met' if errors == 0 else 'NOT met'}; cores used: server {cores['server']:.2f}, PostgreSQL {cores['postgresql']:.2f}, "
              f"client {cores['client']:.2f}, others on the machine {cores['others']:.2f} (of {os.cpu_count()})")  # fmt: skip
        ok &= errors == 0
        bad = []
        for route in ROUTES:
            latencies = [s[3] for s in by[w, route]]
            if quantile(latencies, 0.99) >= 10 * quantile(latencies, 0.5):
                bad.append(route)
        ok &= not bad
        print(f"  p99 < 10 x p50 for every route: {'met' if not bad else 'NOT met (' + ', '.join(bad) + ')'}")
        rss0, rss1 = kept[0]["rss"], kept[-1]["rss"]  # after its warm-up block, at the end of its last block
        growth = rss1 / rss0 - 1 if rss0 else math.inf
        ok &= growth < 0.10
        changed = "" if kept[0]["pids"] == kept[-1]["pids"] else f"  (workers changed: {kept[0]['pids']} -> {kept[-1]['pids']})"
        print(f"  RSS of the workers: {rss0:.1f} MB after warm-up, {rss1:.1f} MB at the end, growth {growth:+.1%}  "
              f"target < 10%: {'met' if growth < 0.10 else 'NOT met'}{changed}")  # fmt: skip
        lags = [s[5] for s in mine]
        print(f"  client lag (how late this client started requests): p50 {quantile(lags, 0.5) * 1000:.1f} ms, "
              f"p99 {quantile(lags, 0.99) * 1000:.1f} ms, max {max(lags, default=0) * 1000:.1f} ms")  # fmt: skip
    busy = max(sum(b["cores"]["others"] for b in blocks if b["measured"] and b["workers"] == w) /
               max(1, sum(1 for b in blocks if b["measured"] and b["workers"] == w)) for w in args.workers)  # fmt: skip
    if busy > 0.25:
        print(
            f"\nnote: other jobs used {busy:.2f} cores on average while the soak ran: the latencies say as much about them as about the server"
        )
    acknowledged, tallied = sum(answers.acknowledged.values()), sum(c["community"] for c in counted.values())
    consistent = all(c["participation"] == c["community"] == c["teams"] for c in counted.values()) and acknowledged == tallied
    ok &= consistent
    print(f"answers: {acknowledged:,} acknowledged, {tallied:,} in the tallies, ledger == tallies: {'yes' if consistent else 'NO'}")
    if not ok:
        print(f"server logs: {data_dir}/server-*.log")
    return ok


def worker_counts(text: str) -> list[int]:
    counts = [int(n) for n in text.split(",")]
    if not counts or min(counts) < 1 or len(set(counts)) != len(counts):
        raise argparse.ArgumentTypeError("distinct worker counts, such as 1,2")
    return counts


async def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--minutes", type=float, default=1.5, help="measured minutes for each worker count (default 1.5)")
    parser.add_argument("--rate", type=float, help="requests/s (default: 60%% of the smaller of the closed-loop calibrations)")
    parser.add_argument(
        "--workers", type=worker_counts, default=[1, 2], help="worker counts side by side, the first the reference (default 1,2)"
    )
    parser.add_argument("--block", type=float, default=15.0, help="seconds on one server before the load moves to the other (default 15)")
    parser.add_argument("--members", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=156, help="closed weekly rounds for the dashboard (default 156)")
    parser.add_argument("--stories", type=int, default=60, help="released stories on the wall (default 60)")
    args = parser.parse_args()
    try:
        async with throwaway_database("safespace_soak") as url:
            ok = await soak(url, args)
    except NoPostgreSQL as exc:
        raise SystemExit(f"the soak needs PostgreSQL: {exc}") from None
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
