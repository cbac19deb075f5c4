"""Sign-in timing: does "send me a sign-in link" answer as fast for a known address as for an unknown one?

    .venv/bin/python bench/signin_timing.py [--members 200] [--each 300] [--gap-ms 50] [--db sqlite|postgresql|both] [--old PATH]

The issue: POST /signin looked the person up and wrote a link before answering when the address
was known, so the answer came 2-4 ms later than for an unknown address, and anyone could tell
from outside which addresses have an account. Now the answer only normalizes the address and
counts the two rate limits; the lookup, the link and the mail happen after the response.

Per database (SQLite in a temporary data dir; PostgreSQL in a throwaway database, default both)
and per code tree (this one; with --old PATH also that one, see below): seed a community with
--members members (service functions, in a child process that imports the tree under test, so
the schema is that tree's); start an aiosmtpd server in this process and `python -m safespace
serve` from the tree (uvicorn, one worker, schedule off, SMTP pointed at aiosmtpd: the mail that
follows a known address is really sent).

Measured: one request at a time, by a blocking HTTP/1.1 client over keep-alive connections from
distinct source addresses 127.0.1.N (the server allows 20 sign-in requests per client address and
5 per email address in 15 minutes: each source address makes at most 14 POSTs and each email
address is asked for at most 4 times, so every request does the whole work and gets its 200).
Each connection GETs /signin first (the CSRF cookie), then POSTs email=...&_csrf_token=...; the
time is that of the POST alone, from writing it to having read the whole response. --each known
addresses (members), unknown ones (as long: the page echoes the address) and GET /healthz (the
ceiling, measured in the same run at the same moments) go in one random order, after --warmup of
each. Not in pairs: in random pairs each kind follows the other three times in four, and what the
work after one answer leaves behind (a known address's link and mail) would be charged to the
next request, the unknown one, by about 0.5-1 ms with 10 ms between requests. So after each request
the client also waits until a known address's mail has arrived, and then --gap-ms (50) more.

Printed per database and tree: median and p90 of known and unknown, the difference of the medians
(known - unknown) with a 95% bootstrap interval, the ratio known/unknown of the medians (1.00:
nothing to tell apart), the /healthz median with the ratio healthz/sign-in (the share of the
ceiling the sign-in page reaches), the sign-in median after a known request and after an unknown
one, and mails received against known requests; then one table. Figures, not a test: exits 0
unless a server fails (does not start, drops a connection, answers other than 200).

Against the code before the fix (4c3bcf2 made it; 4c3bcf2~1 is the commit before), in a worktree:

    git worktree add /tmp/signin-old 4c3bcf2~1
    .venv/bin/python bench/signin_timing.py --old /tmp/signin-old   # or: make bench-signin SIGNIN_ARGS="--old /tmp/signin-old"
    git worktree remove --force /tmp/signin-old
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from urllib.parse import urlencode

from aiosmtpd.controller import Controller

HERE = Path(__file__).resolve().parent.parent  # the tree this script belongs to: "new"
CSRF_COOKIE, CSRF_FIELD = "safespace_csrf", "_csrf_token"
POSTS_PER_SOURCE, USES_PER_ADDRESS = 14, 4  # under the server's 20 per client address and 5 per email address
SOURCES = [f"127.0.1.{n}" for n in range(1, 255)]  # all of 127/8 reaches a server on 127.0.0.1 (Linux)
MAIL_WAIT_SECONDS = 5.0


# --- the seed, in a child process that imports the tree under test ------------------------------

async def seed(members: int) -> dict:
    """A community with `members` active members, committed; from the SAFESPACE_* environment."""
    from sqlalchemy.ext.asyncio import async_sessionmaker

    from safespace.db.engine import make_engine
    from safespace.db.migrate import upgrade
    from safespace.identity import services as identity
    from safespace.identity import sign_in_pages
    from safespace.settings import load_settings

    engine = make_engine(load_settings())
    try:
        await upgrade(engine)
        async with async_sessionmaker(engine, expire_on_commit=False)() as db:
            founder, _ = await identity.get_or_create_person(db, "facilitator@bench.example")
            community = await identity.create_community(db, founder.id, "Bench", "", 5, "UTC")
            team = await identity.create_team(db, community.id, "Team")
            for n in range(members):
                person, _ = await identity.get_or_create_person(db, known_address(n))
                identity.add_membership(db, community.id, person.id, team.id, "active")
            await db.commit()
    finally:
        await engine.dispose()
    # Which code the child imported, and whether it is the fixed one (the lookup after the response).
    return {"code": str(Path(sign_in_pages.__file__).parent.parent.parent), "fixed": hasattr(sign_in_pages, "SignInLinks")}


def known_address(n: int) -> str:
    return f"member{n}@bench.example"


def unknown_address(n: int) -> str:
    return f"absent{n}@bench.example"  # as long as member{n}: the page echoes the address


# --- the client ---------------------------------------------------------------------------------

class Connection:
    """One blocking keep-alive HTTP/1.1 connection from a given source address: one request at a
    time, so nothing but the request itself is on the clock."""

    def __init__(self, port: int, source: str) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=30, source_address=(source, 0))
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.reader = self.sock.makefile("rb")
        self.cookies: dict[str, str] = {}

    def request(self, method: str, path: str, body: bytes = b"") -> tuple[int, float]:
        """(status, seconds from writing the request to having read the whole response)."""
        head = f"{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n"
        if self.cookies:
            head += "Cookie: " + "; ".join(f"{k}={v}" for k, v in self.cookies.items()) + "\r\n"
        if method == "POST":
            head += f"Content-Type: application/x-www-form-urlencoded\r\nContent-Length: {len(body)}\r\n"
        message = head.encode() + b"\r\n" + body
        try:
            started = time.perf_counter()
            self.sock.sendall(message)
            status, length = int(self.reader.readline().split(b" ", 2)[1]), 0
            while (line := self.reader.readline()) not in (b"\r\n", b""):
                name, _, value = line.decode("latin-1").partition(":")
                name, value = name.strip().lower(), value.strip()
                if name == "content-length":
                    length = int(value)
                elif name == "set-cookie":
                    key, _, cookie = value.split(";", 1)[0].partition("=")
                    self.cookies[key.strip()] = cookie.strip()
            if len(self.reader.read(length)) != length:
                raise OSError("short body")
            return status, time.perf_counter() - started
        except (OSError, IndexError, ValueError):
            raise ConnectionError(f"{method} {path}: the server dropped the connection") from None

    def close(self) -> None:
        self.reader.close()
        self.sock.close()


class Inbox:
    """aiosmtpd's handler: counts the mails that arrive."""

    def __init__(self) -> None:
        self.received, self.arrived = 0, threading.Condition()

    async def handle_DATA(self, server, session, envelope) -> str:  # noqa: ANN001 - aiosmtpd's hook
        with self.arrived:
            self.received += 1
            self.arrived.notify_all()
        return "250 Message accepted for delivery"

    def wait_for(self, count: int, timeout: float) -> bool:
        with self.arrived:
            return self.arrived.wait_for(lambda: self.received >= count, timeout)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


# --- one run: one tree, one database -------------------------------------------------------------

def start_server(tree: Path, env: dict[str, str], log: Path) -> tuple[subprocess.Popen, int]:
    """bench/submit.py's start_server, from `tree` (cwd and PYTHONPATH: its code, not this one's)."""
    port = free_port()
    command = [sys.executable, "-m", "safespace", "serve", "--host", "127.0.0.1", "--port", str(port)]
    proc = subprocess.Popen(command, cwd=tree, env=os.environ | env | {"PYTHONPATH": str(tree)},
                            stdout=log.open("w"), stderr=subprocess.STDOUT)
    for _ in range(300):
        if proc.poll() is not None:
            raise SystemExit(f"the server exited with {proc.returncode}:\n{log.read_text()}")
        try:
            conn = Connection(port, "127.0.0.1")
            conn.request("GET", "/healthz")
            conn.close()
            return proc, port
        except (ConnectionError, OSError):
            time.sleep(0.1)
    proc.terminate()
    raise SystemExit("the server did not answer /healthz within 30 s")


def plan(args: argparse.Namespace, rng: random.Random) -> list[tuple[str, str]]:
    """(kind, address) of every request, warm-up first: --each known, unknown and healthz requests
    in one random order (in pairs, each kind would follow the other three times in four, and carry
    the one before's after-effects). The i-th known and the i-th unknown request use the same
    index, so both kinds reuse their addresses alike: a fresh address, then a second ask, ..."""
    order = list(range(args.members))
    rng.shuffle(order)
    requests = []
    for count, offset in ((args.warmup, 0), (args.each, args.warmup)):
        kinds = ["known", "unknown", "healthz"] * count
        rng.shuffle(kinds)
        serial = {"known": offset, "unknown": offset}
        for kind in kinds:
            if kind == "healthz":
                requests.append((kind, ""))
                continue
            n = order[serial[kind] % args.members]
            requests.append((kind, known_address(n) if kind == "known" else unknown_address(n)))
            serial[kind] += 1
    return requests


def measure(port: int, inbox: Inbox, args: argparse.Namespace) -> dict[str, list[float]]:
    """Every request in turn: the counted ones' times (seconds) per kind, and per kind of the sign-in
    request before ("known after known", ...). ConnectionError if the server drops a connection or
    answers other than 200."""
    times: dict[str, list[float]] = {}
    sources, known_sent, before = iter(SOURCES), 0, "none"

    def fresh() -> Connection:
        """A connection from the next source address, with its CSRF cookie."""
        conn = Connection(port, next(sources))
        status, _ = conn.request("GET", "/signin")
        if status != 200 or CSRF_COOKIE not in conn.cookies:
            raise ConnectionError(f"GET /signin answered {status} without the CSRF cookie")
        return conn

    conn, posts = fresh(), 0
    for n, (kind, address) in enumerate(plan(args, random.Random(7))):
        if kind == "healthz":
            status, seconds = conn.request("GET", "/healthz")
        else:
            if posts == POSTS_PER_SOURCE:
                conn.close()
                conn, posts = fresh(), 0
            body = urlencode({"email": address, CSRF_FIELD: conn.cookies[CSRF_COOKIE]}).encode()
            status, seconds = conn.request("POST", "/signin", body)
            posts += 1
        if status != 200:
            raise ConnectionError(f"{kind} request answered {status}, not 200")
        if kind == "known":  # its mail goes out after the response: let it go before the next request
            known_sent += 1
            if not inbox.wait_for(known_sent, MAIL_WAIT_SECONDS):
                raise ConnectionError(f"no mail within {MAIL_WAIT_SECONDS:.0f} s of a known address's request")
        time.sleep(args.gap_ms / 1000)  # and the rest of the work after the answer
        if n >= 3 * args.warmup:
            times.setdefault(kind, []).append(seconds)
            if kind != "healthz":
                times.setdefault(f"{kind} after {before}", []).append(seconds)
        before = kind if kind != "healthz" else before
    conn.close()
    return times


async def run(label: str, tree: Path, database_url: str, args: argparse.Namespace) -> dict | None:
    """Seed, serve and measure one tree on one database; prints its block, returns its figures
    (None if the server failed)."""
    data_dir = Path(tempfile.mkdtemp(prefix="safespace-signin-"))
    inbox, smtp_port = Inbox(), free_port()
    smtp = Controller(inbox, hostname="127.0.0.1", port=smtp_port)
    smtp.start()
    env = {"SAFESPACE_DATA_DIR": str(data_dir), "SAFESPACE_DATABASE_URL": database_url,
           "SAFESPACE_BASE_URL": "http://127.0.0.1", "SAFESPACE_SCHEDULE_INTERVAL_SECONDS": "0",
           "SAFESPACE_LOG_LEVEL": "WARNING", "SAFESPACE_SMTP_HOST": "127.0.0.1",
           "SAFESPACE_SMTP_PORT": str(smtp_port), "SAFESPACE_SMTP_SECURITY": "none"}
    try:
        child = subprocess.run([sys.executable, __file__, "--seed", str(args.members)], cwd=tree, capture_output=True,
                               text=True, env=os.environ | env | {"PYTHONPATH": str(tree)})
        if child.returncode != 0:
            raise SystemExit(f"{label}: seeding failed:\n{child.stderr}")
        code = json.loads(child.stdout.strip().splitlines()[-1])
        print(f"{label}: {args.members} members; code {code['code']} "
              f"({'lookup after the response' if code['fixed'] else 'lookup before the response'})")
        proc, port = start_server(tree, env, data_dir / "server.log")
        try:
            times = measure(port, inbox, args)  # blocking: one request at a time, nothing else runs
        except ConnectionError as exc:
            print(f"!!! {label}: {exc}; see {data_dir / 'server.log'}", file=sys.stderr)
            return None
        finally:
            proc.terminate()
            proc.wait(timeout=15)
    finally:
        smtp.stop()
    figures = summarize(times) | {"mails": inbox.received - args.warmup}  # one per known request, warm-up's too
    report(figures, args.each)
    shutil.rmtree(data_dir)
    return figures


# --- figures ------------------------------------------------------------------------------------

def summarize(times: dict[str, list[float]]) -> dict:
    """Medians and p90s (ms) per kind; known - unknown with a 95% bootstrap interval; the sign-in
    requests' median after a known request and after an unknown one."""
    ms = {kind: sorted(t * 1000 for t in values) for kind, values in times.items()}
    median = {kind: statistics.median(values) for kind, values in ms.items()}
    p90 = {kind: statistics.quantiles(ms[kind], n=10)[8] for kind in ("known", "unknown", "healthz")}
    rng, known, unknown = random.Random(3), ms["known"], ms["unknown"]
    differences = sorted(statistics.median(rng.choices(known, k=len(known)))
                         - statistics.median(rng.choices(unknown, k=len(unknown))) for _ in range(2000))
    after = {before: statistics.median(ms.get(f"known after {before}", []) + ms.get(f"unknown after {before}", []) or [0.0])
             for before in ("known", "unknown")}
    return {"median": median, "p90": p90, "difference": median["known"] - median["unknown"],
            "interval": (differences[50], differences[1949]), "after": after}


def report(f: dict, each: int) -> None:
    median, p90, pad = f["median"], f["p90"], " " * 4
    print(f"{pad}known   median {median['known']:.3f} ms  p90 {p90['known']:.3f} ms\n"
          f"{pad}unknown median {median['unknown']:.3f} ms  p90 {p90['unknown']:.3f} ms\n"
          f"{pad}known - unknown {f['difference']:+.3f} ms (95% {f['interval'][0]:+.3f} .. {f['interval'][1]:+.3f}), "
          f"known/unknown {median['known'] / median['unknown']:.2f}\n"
          f"{pad}healthz median {median['healthz']:.3f} ms  p90 {p90['healthz']:.3f} ms; healthz/sign-in: "
          f"known {median['healthz'] / median['known']:.2f}, unknown {median['healthz'] / median['unknown']:.2f}\n"
          f"{pad}sign-in median after a known request {f['after']['known']:.3f} ms, after an unknown one "
          f"{f['after']['unknown']:.3f} ms (what the work after the answer leaves for the next request)\n"
          f"{pad}{each} of each counted; mails received {f['mails']} for {each} known requests")


def table(results: dict[tuple[str, str], dict]) -> None:
    print("\ndatabase    code  known p50  unknown p50  known p90  unknown p90  known-unknown (95%)          ratio  healthz p50")
    for (database, code), f in results.items():
        m, p, (low, high) = f["median"], f["p90"], f["interval"]
        print(f"{database:<11} {code:<5} {m['known']:>6.3f} ms  {m['unknown']:>8.3f} ms  {p['known']:>6.3f} ms  "
              f"{p['unknown']:>8.3f} ms  {f['difference']:+.3f} ms ({low:+.3f}..{high:+.3f})  "
              f"{m['known'] / m['unknown']:>5.2f}  {m['healthz']:>8.3f} ms")


async def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--members", type=int, default=200)
    parser.add_argument("--each", type=int, default=300, help="known, unknown and healthz requests counted, of each")
    parser.add_argument("--warmup", type=int, default=20, help="requests of each kind first, not counted")
    parser.add_argument("--gap-ms", type=float, default=50.0, help="pause after each request (and its mail)")
    parser.add_argument("--db", choices=["sqlite", "postgresql", "both"], default="both")
    parser.add_argument("--old", metavar="PATH", type=Path, help="also run the code of this tree (a git worktree)")
    parser.add_argument("--seed", type=int, help=argparse.SUPPRESS)  # the child that seeds the tree under test
    args = parser.parse_args()
    if args.seed is not None:
        print(json.dumps(await seed(args.seed)))
        return 0
    each = args.warmup + args.each
    if each > USES_PER_ADDRESS * args.members or 2 * each > POSTS_PER_SOURCE * len(SOURCES):
        parser.error(f"{each} requests of each kind need --members >= {-(-each // USES_PER_ADDRESS)}, "
                     f"and --warmup + --each <= {POSTS_PER_SOURCE * len(SOURCES) // 2} (the rate limits)")
    if args.old is not None and not (args.old / "safespace").is_dir():
        parser.error(f"--old {args.old}: not a Safespace tree")
    # Not at the top: the --seed child imports the tree under test, which may be older than submit.py.
    from submit import NoPostgreSQL, throwaway_database

    trees = [("new", HERE)] + ([("old", args.old.resolve())] if args.old else [])
    print(f"{args.members} members; {args.each} known, unknown and healthz requests after {args.warmup} of each, "
          f"one request at a time, {args.gap_ms:g} ms apart; one uvicorn worker, {os.cpu_count()} CPUs")
    results, ok = {}, True
    for database in ("sqlite", "postgresql"):
        if args.db not in (database, "both"):
            continue
        for code, tree in trees:
            label = f"{database} {code}"
            if database == "sqlite":
                figures = await run(label, tree, "", args)
            else:
                try:
                    async with throwaway_database("safespace_signin") as url:
                        figures = await run(label, tree, url, args)
                except NoPostgreSQL as exc:
                    print(f"{label}: skipped, {exc}")
                    continue
            ok &= figures is not None
            if figures is not None:
                results[(database, code)] = figures
    if results:
        table(results)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
