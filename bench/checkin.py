"""A live check-in under load: answers/s against /healthz, the delay from an answer to the count
reaching every listener, memory per listener, and whether every acknowledged answer was counted.

    .venv/bin/python bench/checkin.py [--participants 300] [--db sqlite|postgresql|both]

Per database: seed in-process a community of --participants members with sessions and an open
check-in (two statements); start `python -m safespace serve`: one process on SQLite, two on
PostgreSQL (LISTEN/NOTIFY carries the count between them); open one server-sent-event listener
per member, spread over the processes, and wait for each one's first message; measure /healthz
for 3 s (32 at once); then every member answers (form POST with session and CSRF, 32 at once,
spread over the processes). For the i-th acknowledged answer (i >= k) the delay is from its 303
to the moment the last listener saw a count >= i. Memory per listener: the servers' resident
memory after opening the listeners minus before, divided by their number. The tally must equal
the acknowledged answers and every listener must end at that count, else exit 1. Figures, not a test.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import asyncpg
import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from sqlalchemy import select
from sqlalchemy.ext.asyncio import async_sessionmaker

from safespace import clock
from safespace.checkin import services as checkin_services
from safespace.checkin.models import CheckInTally
from safespace.db.engine import make_engine
from safespace.db.migrate import upgrade
from safespace.identity import services as identity
from safespace.identity import signin
from safespace.settings import Settings
from tests.conftest import free_port

PG_ADMIN = "postgresql://root@127.0.0.1:5432/postgres"
STATEMENTS = ["psychological_safety/ps_mistakes", "psychological_safety/ps_raise_issues"]
AT_ONCE = 32


async def seed(settings: Settings, participants: int) -> tuple[str, list[str], object]:
    engine = make_engine(settings)
    await upgrade(engine)
    async with async_sessionmaker(engine, expire_on_commit=False)() as db:
        founder, _ = await identity.get_or_create_person(db, "facilitator@bench.example")
        community = await identity.create_community(db, founder.id, "Bench", "", 5, "UTC")
        tokens = []
        for n in range(participants):
            person, _ = await identity.get_or_create_person(db, f"member{n}@bench.example")
            identity.add_membership(db, community.id, person.id, None, "active")
            tokens.append(await signin.start_session(db, person.id, community.id))
        choices = await checkin_services.statement_choices(db, community.id)
        instrument = checkin_services.checkin_instrument(choices, STATEMENTS, "", 5, "en")
        checkin = await checkin_services.start(db, community, instrument, "", clock.now(), 2)
        await db.commit()
    return checkin.code, tokens, (engine, checkin.id)


def serve(env: dict[str, str], log: Path) -> tuple[subprocess.Popen, str]:
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    process = subprocess.Popen(
        [sys.executable, "-m", "safespace", "serve", "--port", str(port)],
        env=env | {"SAFESPACE_BASE_URL": base}, stdout=log.open("w"), stderr=subprocess.STDOUT,
    )  # fmt: skip
    for _ in range(150):
        try:
            if httpx.get(f"{base}/healthz", timeout=1).status_code == 200:
                return process, base
        except httpx.TransportError:
            time.sleep(0.2)
    raise SystemExit("the server did not start: " + log.read_text())


def rss_kb(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


LOST: list[str] = []


async def listen(client: httpx.AsyncClient, path: str, seen: list, ready: asyncio.Event) -> None:
    try:
        async with client.stream("GET", path, timeout=None) as response:
            async for line in response.aiter_lines():
                if line.startswith("data:"):
                    update = json.loads(line[5:])
                    seen.append((update.get("count") or 0, time.perf_counter()))
                    ready.set()
    except httpx.HTTPError as error:
        LOST.append(f"{error.__class__.__name__} after {len(seen)} message(s)")


async def at_once(jobs, run) -> float:  # noqa: ANN001
    queue = list(jobs)
    started = time.perf_counter()

    async def worker() -> None:
        while queue:
            await run(queue.pop())

    await asyncio.gather(*(worker() for _ in range(AT_ONCE)))
    return time.perf_counter() - started


async def healthz_rate(bases: list[str]) -> float:
    done = 0
    deadline = time.perf_counter() + 3
    async with httpx.AsyncClient(limits=httpx.Limits(max_connections=AT_ONCE)) as client:
        async def worker(n: int) -> None:
            nonlocal done
            while time.perf_counter() < deadline:
                await client.get(f"{bases[n % len(bases)]}/healthz")
                done += 1

        await asyncio.gather(*(worker(n) for n in range(AT_ONCE)))
    return done / 3


async def run(kind: str, participants: int) -> bool:
    data = Path(tempfile.mkdtemp(prefix="safespace-bench-checkin-"))
    if kind == "sqlite":
        url, workers = f"sqlite+aiosqlite:///{data / 'safespace.db'}", 1
    else:
        name = f"bench_checkin_{os.getpid()}"
        admin = await asyncpg.connect(PG_ADMIN)
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}"')
        await admin.execute(f'CREATE DATABASE "{name}"')
        await admin.close()
        url, workers = f"postgresql+asyncpg://root@127.0.0.1:5432/{name}", 2
    settings = Settings(data_dir=str(data), database_url=url, schedule_interval_seconds=0)
    code, tokens, (engine, checkin_id) = await seed(settings, participants)
    env = {**os.environ, "SAFESPACE_DATA_DIR": str(data), "SAFESPACE_DATABASE_URL": url, "SAFESPACE_SCHEDULE_INTERVAL_SECONDS": "0",
           "SAFESPACE_LOG_LEVEL": "WARNING"}  # fmt: skip
    servers = [serve(env, data / f"serve{n}.log") for n in range(workers)]
    bases = [base for _process, base in servers]
    clients = [httpx.AsyncClient(base_url=bases[n % workers], cookies={"safespace_session": t}, timeout=60) for n, t in enumerate(tokens)]
    try:
        memory_before = sum(rss_kb(p.pid) for p, _base in servers)
        seen = [[] for _ in clients]
        ready = [asyncio.Event() for _ in clients]
        listeners = [asyncio.create_task(listen(c, f"/checkin/{code}/events", seen[n], ready[n])) for n, c in enumerate(clients)]
        await asyncio.wait_for(asyncio.gather(*(r.wait() for r in ready)), 120)
        per_listener = (sum(rss_kb(p.pid) for p, _base in servers) - memory_before) / len(clients)
        healthz = await healthz_rate(bases)
        async def csrf_cookie(client: httpx.AsyncClient) -> None:
            for _attempt in range(3):
                try:
                    await client.get("/profile")  # each member's CSRF cookie
                    return
                except httpx.HTTPError:
                    continue

        await at_once(clients, csrf_cookie)
        acks: list[float] = []
        refused: list[int | str] = []

        async def answer(client: httpx.AsyncClient) -> None:
            form = {"a.s1": "4", "a.s2": "2", "_csrf_token": client.cookies.get("safespace_csrf", "")}
            try:
                response = await client.post(f"/checkin/{code}", data=form)
            except (httpx.ReadError, httpx.RemoteProtocolError):
                # A kept-alive connection the server closed while this member waited its turn
                # (uvicorn's keep-alive is 5 s): the request never arrived, so it is sent again.
                response = await client.post(f"/checkin/{code}", data=form)
            if response.status_code == 303:
                acks.append(time.perf_counter())
            else:
                refused.append(response.status_code)

        seconds = await at_once(clients, answer)
        await asyncio.sleep(2)  # the last updates on their way
        for task in listeners:
            task.cancel()
        await asyncio.gather(*listeners, return_exceptions=True)
        async with async_sessionmaker(engine)() as db:
            tallied = await db.scalar(select(CheckInTally.respondents).where(CheckInTally.checkin_id == checkin_id))
        acks.sort()
        delays = []
        for i, ack in enumerate(acks, 1):
            if i < 5:
                continue
            reached = [next((at for count, at in s if count >= i), None) for s in seen]
            if None in reached:
                delays.append(float("inf"))
            else:
                delays.append(max(0.0, max(reached) - ack))
        delays.sort()
        p99 = delays[min(len(delays) - 1, int(len(delays) * 0.99))] if delays else float("nan")
        final = {max((count for count, _at in s), default=0) for s in seen}
        rate = len(acks) / seconds
        print(f"{kind}: {workers} process(es), {len(clients)} listeners, {len(acks)} answers acknowledged in {seconds:.2f} s")
        print(f"  answers/s {rate:.0f}  /healthz/s {healthz:.0f}  ratio {rate / healthz:.2f}")
        print(f"  answer -> count at every listener: p50 {delays[len(delays) // 2] * 1000:.0f} ms, p99 {p99 * 1000:.0f} ms")
        if refused or LOST:
            print(f"  refused answers (status): {sorted(map(str, refused))}; listeners cut off: {LOST}")
        print(f"  memory per listener {per_listener:.1f} KiB; tally {tallied}, listeners end at {sorted(final)}")
        return tallied == len(acks) and final == {len(acks)}
    finally:
        for client in clients:
            await client.aclose()
        for process, _base in servers:
            process.terminate()
            process.wait(timeout=10)
        await engine.dispose()
        if kind == "postgresql":
            admin = await asyncpg.connect(PG_ADMIN)
            await admin.execute(f'DROP DATABASE IF EXISTS "{name}"')
            await admin.close()
        shutil.rmtree(data, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--participants", type=int, default=300)
    parser.add_argument("--db", choices=["sqlite", "postgresql", "both"], default="both")
    args = parser.parse_args()
    kinds = ["sqlite", "postgresql"] if args.db == "both" else [args.db]
    ok = all([asyncio.run(run(kind, args.participants)) for kind in kinds])
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
