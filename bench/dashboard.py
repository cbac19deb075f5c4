"""Dashboard throughput (trend page, round results, story wall) against the bare /healthz, per community size.

    .venv/bin/python bench/dashboard.py [--sizes 500,5000,50000] [--rounds 156] [--stories 60] [--db sqlite|postgresql|both]

Per database and size: build a community of --members people in 20 teams (sizes 60-140% of the
mean) with one facilitator, a weekly psychological-safety survey and three years of closed rounds
(156), plus this week's round, open, with about 40% answered (--no-open-round leaves it out).
Seeding is in-process and in bulk (SQLAlchemy Core; the ledger by executemany on SQLite, COPY on
PostgreSQL): rounds with k, comment threshold, population and instrument snapshot as open_round
writes them; per team and round 60-80% respond, and its tally folds a few synthetic answer sets
(surveys.tally.fold) weighted up to that many respondents, the community tally merges the teams,
and close_round's storage rule (disclosure.groups_to_keep) drops what it would drop; one ledger
row per respondent per round; 2% of respondents leave a comment (sealed like close_round does).
--stories released stories (three a week over the past weeks, through the real store and release
functions, as bench/soak.py seeds them), two thirds of their (story, kind) pairs with reactions
from up to 30 members, and a session for one plain member. Then `python -m safespace serve` (uvicorn, one worker) is driven by bench/submit.py's asyncio
HTTP/1.1 keep-alive client, --concurrency connections, 1 s warm-up then --seconds counted, in
turn: /healthz, the trend page (GET /c/{id}/insights?survey=...), the latest closed round's
results page (GET /c/{id}/insights/rounds/{id}: a closed round, which never changes), the story
wall (GET /c/{id}/stories, as the member) and the floor, /profile (the cheapest page behind a
session: no signed-in page can do better), as the signed-in facilitator but for the wall. Each
client sends the session and CSRF cookies that a browser holds after the sign-in link. The
turn is repeated --repeats times: each page's ratio is taken against the healthz just before it,
and the medians are printed, so a machine whose speed drifts (a shared one) moves both alike.

Printed per size: requests/s and ratio to healthz for each page (targets: trend, round and wall
each >= 0.20), and the
server's CPU ms per request in each phase; their quotient (the CPU ratio) is what the ratio would be
with the server on a whole core throughout, so other load on the machine moves it less. Then per
database the trend page's largest-vs-smallest-size figure, as ratios to healthz (target: >= 0.80,
cost must not grow with members or answers). --profile FILE records the server with py-spy during the page phases
(.svg flame graph or .txt folded stacks). Figures, not a test: exits 0 unless a page fails.
"""

from __future__ import annotations

import argparse
import asyncio
import math
import os
import random
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime, timedelta
from datetime import time as day_time
from pathlib import Path

import msgspec
from sqlalchemy import insert, select
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, async_sessionmaker
from submit import (  # bench/submit.py's load tool
    Connection,
    NoPostgreSQL,
    cpu_meter,
    drive,
    session_csrf_cookie,
    start_server,
    throwaway_database,
)

from safespace import clock
from safespace.db.engine import make_engine
from safespace.db.migrate import upgrade
from safespace.identity import services as identity
from safespace.identity import signin
from safespace.identity.models import Membership, Person
from safespace.privacy.crypto import Keyring, associated_data
from safespace.pulse import services as pulse
from safespace.pulse.models import ReleasedComment, Round, Tally
from safespace.settings import Settings
from safespace.stories import responses
from safespace.stories import services as stories
from safespace.stories.models import Reaction, Story
from safespace.web.session import CSRF_COOKIE, SESSION_COOKIE
from surveys import disclosure
from surveys import tally as tally_rules
from surveys.instrument import Instrument, builtin_instruments, instrument_to_dict

INSTRUMENT, TEAMS, K, COMMENT_THRESHOLD = "psychological_safety", 20, 5, 10
WARMUP_SECONDS, SAMPLES = 1.0, 16  # answer sets folded per team and round, then weighted up
TARGETS = {"trend": 0.2, "round": 0.2, "wall": 0.2}  # page/s over healthz/s, measured in turn
STORY = stories.StoryText(
    title="The pilot nobody asked the clinics about",
    happened="We designed a referral scheme with the ministry and rolled it out to twelve districts. "
    "Nobody had asked the clinic staff how referrals actually moved; the forms went unused for months. " * 2,
    learned="Talk to the people who will carry the paper before the paper exists. Watch a week of real work first.",
    differently="Run it in two districts with the staff in the room, and budget the time to change it.",
)  # bench/soak.py's
COMMENTS = ["More time in retrospectives to talk about what went wrong.", "Leads could admit their own mistakes first.",
            "Less blame in incident reviews.", "Ask the quiet people first in planning."]  # fmt: skip


# --- seeding ----------------------------------------------------------------------------------------


def weighted(tally: tally_rules.Tally, n: int) -> tally_rules.Tally:
    """The tally of n people who all gave the answers behind `tally` (folding is linear)."""
    times = lambda d: {k: v * n for k, v in d.items()}  # noqa: E731
    return tally_rules.Tally(
        items=tally.items, reverse=tally.reverse, points=tally.points, respondents=tally.respondents * n,
        counts={k: [c * n for c in row] for k, row in tally.counts.items()}, skipped=times(tally.skipped),
        score_n=tally.score_n * n, score_sum=tally.score_sum * n, score_sumsq=tally.score_sumsq * n,
        score_hist=[c * n for c in tally.score_hist], complete_n=tally.complete_n * n,
        keyed_sum=times(tally.keyed_sum), keyed_sumsq=times(tally.keyed_sumsq), cross=times(tally.cross),
    )  # fmt: skip


def team_tally(instrument: Instrument, empty: tally_rules.Tally, respondents: int, mood: float, rng: random.Random) -> tally_rules.Tally:
    """A plausible tally of `respondents` people: SAMPLES folded answer sets, weighted to add up."""
    samples = min(respondents, SAMPLES)
    cuts = sorted(rng.sample(range(1, respondents), samples - 1)) if samples > 1 else []
    weights = [b - a for a, b in zip([0, *cuts], [*cuts, respondents])]
    total = empty
    for weight in weights:
        person = mood + rng.gauss(0, 0.8)
        answers = {}
        for item in instrument.items:
            value = min(max(round(person + rng.gauss(0, 0.9)), 1), instrument.scale.points)
            answers[item.key] = None if rng.random() < 0.03 else (instrument.scale.points + 1 - value if item.reverse else value)
        total = tally_rules.merge(total, weighted(tally_rules.fold(empty, answers), weight))
    return total


def uuid_value(dialect: str, value: uuid.UUID) -> uuid.UUID | str:
    return value.hex if dialect == "sqlite" else value  # SQLAlchemy's Uuid: CHAR(32) hex on SQLite


async def insert_ledger(conn: AsyncConnection, rows: list[tuple[uuid.UUID, uuid.UUID]]) -> None:
    """Participation rows in primary-key order (appends to the B-tree), bypassing per-row ORM work."""
    rows.sort(key=lambda row: (row[0].bytes, row[1].bytes))
    if conn.dialect.name == "sqlite":
        await conn.exec_driver_sql("INSERT INTO participation (round_id, person_id) VALUES (?, ?)",
                                   [(r.hex, p.hex) for r, p in rows])  # fmt: skip
    else:
        raw = (await conn.get_raw_connection()).driver_connection
        await raw.copy_records_to_table("participation", records=rows, columns=["round_id", "person_id"])


async def seed_stories(
    engine: AsyncEngine, keyring: Keyring, secret: bytes, community_id: uuid.UUID, people: list[uuid.UUID], count: int,
    rng: random.Random,
) -> str:
    """`count` stories released three a week over the past weeks (newest last), by the service
    functions, with reactions: each kind on each story from nobody (a third of the time) or from up
    to 30 members, the reader (people[0]) among them now and then, under the markers toggle_reaction
    writes. Returns a session cookie for people[0], a plain member, who reads the wall."""
    async with async_sessionmaker(engine, expire_on_commit=False)() as db:
        batches = math.ceil(count / stories.BATCH_SIZE)
        for batch in range(batches):
            for _ in range(min(stories.BATCH_SIZE, count - batch * stories.BATCH_SIZE)):
                tags = rng.sample(stories.DEFAULT_TAGS, 2)
                await stories.store_story(db, keyring, community_id, STORY, tags, wants_advice=False, moderated=False)
            moment = clock.now() - timedelta(weeks=batches - batch)
            await stories.release_due(db, keyring, moment, moment.weekday(), 0)
        released = await db.scalars(select(Story.id).where(Story.community_id == community_id, Story.status == "released"))
        month = clock.now().strftime("%Y-%m")
        reactions = [
            {"id": uuid.uuid4(), "story_id": story_id, "kind": kind, "month": month,
             "marker": responses.reaction_marker(secret, person, story_id, kind)}
            for story_id in released for kind in responses.REACTIONS if rng.random() >= 1 / 3
            for person in rng.sample(people, rng.randint(1, min(30, len(people))))
        ]  # fmt: skip
        if reactions:
            await db.execute(insert(Reaction.__table__), reactions)
        token = await signin.start_session(db, people[0], community_id)
        await db.commit()
    return token


async def seed(
    engine: AsyncEngine, keyring: Keyring, members: int, rounds: int, open_round: bool, comment_share: float, stories_count: int = 0,
    *, secret: bytes,
) -> dict:
    """The community, committed; returns the ids and the facilitator's session cookie, and counts."""
    await upgrade(engine)
    rng = random.Random(members)
    instrument = builtin_instruments()[INSTRUMENT]
    snapshot = [instrument_to_dict(instrument)]
    empty = tally_rules.new_tally(instrument.item_keys, instrument.reverse_keys, instrument.scale.points)
    async with async_sessionmaker(engine, expire_on_commit=False)() as db:
        founder, _ = await identity.get_or_create_person(db, "facilitator@bench.example")
        community = await identity.create_community(db, founder.id, "Bench", "", K, "UTC", COMMENT_THRESHOLD)
        teams = [await identity.create_team(db, community.id, f"Team {n + 1:02d}") for n in range(TEAMS)]
        today = clock.now().date()
        form = pulse.CadenceForm(every="weekly", weekday=today.weekday(), day_of_month=1, open_days=6, start=today)
        survey = await pulse.create_survey(db, community.id, "UTC", "Weekly pulse", [INSTRUMENT], form)
        token = await signin.start_session(db, founder.id, community.id)
        await db.commit()

    # Team sizes vary (60-140% of the mean) and add up to `members`.
    shares = [rng.uniform(0.6, 1.4) for _ in teams]
    sizes = [max(1, int(members * s / sum(shares))) for s in shares]
    sizes[0] += members - sum(sizes)
    people: dict[uuid.UUID, list[uuid.UUID]] = {t.id: [uuid.uuid4() for _ in range(n)] for t, n in zip(teams, sizes)}
    moment, dialect = clock.now(), engine.dialect.name
    counts = {"ledger": 0, "comments": 0}
    async with engine.begin() as conn:
        for start in range(0, members, 10_000):
            chunk = [(team, person) for team, ids in people.items() for person in ids][start : start + 10_000]
            n0 = start
            await conn.execute(insert(Person.__table__), [
                {"id": p, "email": f"member{n0 + n}@bench.example", "display_name": "", "language": None, "created_at": moment}
                for n, (_t, p) in enumerate(chunk)])  # fmt: skip
            await conn.execute(insert(Membership.__table__), [
                {"id": uuid.uuid4(), "person_id": p, "community_id": community.id, "team_id": t, "role": "member",
                 "status": "active", "accepted": True, "created_at": moment} for t, p in chunk])  # fmt: skip

    population = {pulse.COMMUNITY: members + 1} | {str(t.id): n for t, n in zip(teams, sizes) if n >= K}  # +1: the facilitator
    midnight = datetime.combine(today, day_time(), tzinfo=UTC)
    team_mood = {t.id: rng.uniform(-0.6, 0.6) for t in teams}
    latest_closed = None
    total = rounds + open_round
    for first in range(0, total, 12):  # a dozen rounds per transaction
        async with engine.begin() as conn:
            round_rows, tally_rows, comment_rows, ledger = [], [], [], []
            for number in range(first + 1, min(first + 12, total) + 1):
                round_id, closed = uuid.uuid4(), number <= rounds
                opens = midnight - timedelta(weeks=rounds + 1 - number)  # the open round (rounds + 1) opened today
                round_rows.append({
                    "id": round_id, "survey_id": survey.id, "community_id": community.id, "number": number,
                    "opens_at": opens, "closes_at": opens + timedelta(days=6), "closed": closed, "min_group_size": K,
                    "comment_threshold": COMMENT_THRESHOLD, "instruments": snapshot, "population": population,
                    "reminder_sent": True,
                })  # fmt: skip
                season = 4.6 + 0.4 * math.sin(2 * math.pi * number / 52) + 0.3 * number / max(rounds, 1)
                community_tally, tallies = empty, {}
                for team in teams:
                    ids = people[team.id]
                    n = round(len(ids) * (rng.uniform(0.6, 0.8) if closed else rng.uniform(0.3, 0.5)))
                    ledger += [(round_id, p) for p in rng.sample(ids, n)]
                    tally = team_tally(instrument, empty, n, season + team_mood[team.id], rng) if n else empty
                    community_tally = tally_rules.merge(community_tally, tally)
                    if str(team.id) in population:  # a team below k at opening has no tally of its own
                        tallies[str(team.id)] = tally
                answered = {g: t.respondents for g, t in tallies.items()}
                tallies[pulse.COMMUNITY] = community_tally
                respondents = community_tally.respondents
                if closed:  # close_round's storage rule: keep only what may be shown
                    keep = disclosure.groups_to_keep(respondents, answered, K) if respondents >= K else set()
                    keep |= {pulse.COMMUNITY} if respondents >= disclosure.effective_k(K) else set()
                    tallies = {g: t for g, t in tallies.items() if g in keep}
                    latest_closed = round_id
                tally_rows += [
                    {"round_id": round_id, "instrument": INSTRUMENT, "group_key": g, "respondents": t.respondents,
                     "data": msgspec.json.encode(t)} for g, t in tallies.items()
                ]  # fmt: skip
                if closed and disclosure.comments_visible(respondents, K, COMMENT_THRESHOLD):
                    for position in range(int(respondents * comment_share)):
                        comment_id = uuid.uuid4()
                        body = keyring.seal(rng.choice(COMMENTS), associated_data("released_comment", "body", f"{round_id}/{comment_id}"))
                        comment_rows.append({"id": comment_id, "round_id": round_id, "instrument": INSTRUMENT,
                                             "group_key": pulse.COMMUNITY, "position": position, "body": body})  # fmt: skip
            await conn.execute(insert(Round.__table__), round_rows)
            await conn.execute(insert(Tally.__table__), tally_rows)
            if comment_rows:
                await conn.execute(insert(ReleasedComment.__table__), comment_rows)
            await insert_ledger(conn, ledger)
            counts["ledger"] += len(ledger)
            counts["comments"] += len(comment_rows)
    member_token = await seed_stories(engine, keyring, secret, community.id, people[teams[0].id], stories_count, rng)
    counts["stories"] = stories_count
    if dialect == "postgresql":  # what autovacuum would do soon after a bulk load; keeps plans stable in the run
        async with engine.connect() as conn:
            await (await conn.execution_options(isolation_level="AUTOCOMMIT")).exec_driver_sql("ANALYZE")
    return {"community": community.id, "survey": survey.id, "round": latest_closed, "token": token,
            "member_token": member_token} | counts  # fmt: skip


# --- measuring ------------------------------------------------------------------------------------


def server_cpu(pid: int) -> float:
    """CPU seconds the server process has used so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def rate(port: int, pid: int, concurrency: int, seconds: float, path: str, cookies: dict) -> tuple[float, float]:
    """(requests/s counted over `seconds` after a warm-up, server CPU ms per request); every answer must be a 200."""
    start = time.perf_counter() + WARMUP_SECONDS
    end, counted, answered, cpu = start + seconds, 0, 0, server_cpu(pid)

    async def call(conn: Connection, _job: bool) -> None:
        nonlocal counted, answered
        status, _ = await conn.request("GET", path, cookies)
        assert status == 200, f"GET {path} answered {status}"
        answered += 1
        counted += start <= time.perf_counter() < end

    await drive(port, concurrency, iter(lambda: time.perf_counter() < end, False), call)
    return counted / seconds, (server_cpu(pid) - cpu) / answered * 1000


def profiler(pid: int, path: str, label: str) -> subprocess.Popen:
    """py-spy on the server during the page phases: FILE.svg gives a flame graph, FILE.txt folded stacks."""
    out = Path(path).with_stem(f"{Path(path).stem}-{label}")
    spy = Path(sys.executable).with_name("py-spy")
    spy = str(spy) if spy.exists() else shutil.which("py-spy")
    if spy is None:
        raise SystemExit("--profile needs py-spy beside this Python or on PATH (pip install py-spy)")
    command = [spy, "record", "--pid", str(pid), "--rate", "100",
               "--format", "raw" if out.suffix == ".txt" else "flamegraph", "-o", str(out)]  # fmt: skip
    print(f"{'':12} profiling the server's {label.rsplit('-', 1)[-1]} phase into {out}")
    spy = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    time.sleep(1)  # let it attach
    return spy


async def measure(label: str, database_url: str, members: int, args: argparse.Namespace) -> dict[str, float]:
    data_dir = Path(tempfile.mkdtemp(prefix="safespace-bench-"))
    settings = Settings(data_dir=str(data_dir), database_url=database_url, base_url="http://127.0.0.1",
                        schedule_interval_seconds=0, log_level="WARNING")  # fmt: skip
    env = {f"SAFESPACE_{name.upper()}": str(getattr(settings, name))
           for name in ("data_dir", "database_url", "base_url", "schedule_interval_seconds", "log_level")}  # fmt: skip
    started, engine = time.perf_counter(), make_engine(settings)
    keyring = Keyring.load(settings.encryption_key_path)
    seeded = await seed(engine, keyring, members, args.rounds, args.open_round, args.comments, args.stories, secret=settings.secret_key())
    await engine.dispose()
    seconds = time.perf_counter() - started
    print(f"{label}: seeded {members} members, {args.rounds} closed rounds{' + 1 open' if args.open_round else ''}, "
          f"{seeded['ledger']:,} ledger rows, {seeded['comments']:,} comments, {seeded['stories']} stories in {seconds:.1f} s")  # fmt: skip
    facilitator, member = {SESSION_COOKIE: seeded["token"]}, {SESSION_COOKIE: seeded["member_token"]}
    pages = {  # name: (path, cookies)
        "trend": (f"/c/{seeded['community']}/insights?survey={seeded['survey']}" + (f"&period={args.period}" if args.period else ""),
                  facilitator),  # fmt: skip
        "round": (f"/c/{seeded['community']}/insights/rounds/{seeded['round']}", facilitator),  # the latest closed round
        "wall": (f"/c/{seeded['community']}/stories", member),
        "floor": ("/profile", facilitator),  # the cheapest signed-in page: no page behind a session can beat it
    }
    figures: dict[str, float] = {"seed_seconds": seconds}
    samples: dict[str, list[tuple[float, float]]] = {name: [] for name in ("healthz", *pages)}  # (req/s, CPU ms) per repeat
    ratios: dict[str, list[float]] = {name: [] for name in pages}  # each page against the healthz just before it
    proc, port = await start_server(env, data_dir / "server.log")
    try:
        conn = Connection(port)
        for cookies in (facilitator, member):
            cookies[CSRF_COOKIE] = await session_csrf_cookie(conn, cookies[SESSION_COOKIE])
        conn.close()
        for repeat in range(args.repeats):  # interleaved, so a machine that drifts moves ceiling and pages alike
            meter = cpu_meter(proc.pid)
            samples["healthz"].append(await rate(port, proc.pid, args.concurrency, args.seconds, "/healthz", {}))
            cpu = {"healthz": meter()}
            for name, (path, cookies) in pages.items():
                spy = profiler(proc.pid, args.profile, f"{label}-{members}-{name}") if args.profile and repeat == 0 else None
                meter = cpu_meter(proc.pid)
                samples[name].append(await rate(port, proc.pid, args.concurrency, args.seconds, path, cookies))
                ratios[name].append(samples[name][-1][0] / samples["healthz"][-1][0])
                cpu[name] = meter()
                if spy is not None:
                    spy.send_signal(signal.SIGINT)
                    spy.wait(timeout=60)
    finally:
        proc.terminate()
        proc.wait(timeout=15)
    for name, found in samples.items():
        figures[name], figures[f"{name}_ms"] = statistics.median(r for r, _ms in found), statistics.median(ms for _r, ms in found)
    for name, found in ratios.items():
        figures[f"{name}_ratio"] = statistics.median(found)
    if args.repeats > 1:
        print(f"{'':12} {args.repeats} repeats; per repeat, trend/healthz: {', '.join(f'{r:.3f}' for r in ratios['trend'])}; "
              f"medians below")  # fmt: skip
    healthz, pad = figures["healthz"], " " * 12
    print(f"{pad} healthz {healthz:.1f}/s")
    for name, target in TARGETS.items():
        print(f"{pad} {name:<6} {figures[name]:>7.1f}/s  ratio {figures[f'{name}_ratio']:.3f} "
              f"(target >= {target:.2f}: {verdict(figures[f'{name}_ratio'], target)})")  # fmt: skip
    for name, line in cpu.items():  # the last repeat's
        print(f"{pad} CPU during {name + ':':<8} {line if isinstance(line, str) else line[0]}; "
              f"server {figures[f'{name}_ms']:.2f} ms per request")  # fmt: skip
    print(f"{pad} CPU ratios (healthz ms / page ms: the ratio with a whole core for the server in every phase): "
          + ", ".join(f"{name} {figures['healthz_ms'] / figures[f'{name}_ms']:.3f}" for name in TARGETS))
    print(f"{pad} floor: the signed-in /profile page {figures['floor']:.1f}/s, ratio {figures['floor_ratio']:.3f}, "
          f"CPU ratio {figures['healthz_ms'] / figures['floor_ms']:.3f} (the session, a small template)")  # fmt: skip
    shutil.rmtree(data_dir)
    return figures


async def bench(label: str, database_url: str, args: argparse.Namespace) -> dict[int, dict[str, float]]:
    return {members: await measure(label, database_url, members, args) for members in args.sizes}


async def on_postgresql(args: argparse.Namespace) -> dict[int, dict[str, float]] | None:
    """Each size in its own fresh database, dropped afterwards."""
    results = {}
    try:
        for members in args.sizes:
            async with throwaway_database("safespace_bench") as url:
                results[members] = await measure("postgresql", url, members, args)
    except NoPostgreSQL as exc:
        print(f"postgresql: skipped, {exc}")
        return None
    return results


def verdict(ratio: float, target: float) -> str:
    return "met" if ratio >= target else "NOT met"


def summary(label: str, results: dict[int, dict[str, float]]) -> None:
    heads = "".join(f" {name + '/s':>9} {'ratio':>6}" for name in TARGETS)
    print(f"\n{label}: {'members':>8} {'seed s':>7} {'healthz/s':>10}{heads}"
          f"   server CPU ms/request: {'healthz':>7}" + "".join(f" {name:>6}" for name in TARGETS))  # fmt: skip
    for members, f in results.items():
        cells = "".join(f" {f[name]:>9.1f} {f[f'{name}_ratio']:>6.3f}" for name in TARGETS)
        print(f"{'':{len(label) + 1}} {members:>8} {f['seed_seconds']:>7.1f} {f['healthz']:>10.1f}{cells}"
              f"   {'':22}{f['healthz_ms']:>7.2f}" + "".join(f" {f[f'{name}_ms']:>6.1f}" for name in TARGETS))  # fmt: skip
    for name, target in TARGETS.items():
        each = ", ".join(f"{members}: {f[f'{name}_ratio']:.3f} {verdict(f[f'{name}_ratio'], target)}" for members, f in results.items())
        print(f"{'':{len(label) + 1}} target {name}/healthz >= {target:.2f} at every size: "
              f"{verdict(min(f[f'{name}_ratio'] for f in results.values()), target)} ({each})")  # fmt: skip
    if len(results) > 1:
        small, large = min(results), max(results)
        for page in TARGETS:
            # The verdict compares each size's figure: its ratio to the healthz measured just before
            # it, so the machine's drift over the minutes between sizes cancels. Raw requests/s and
            # server CPU per request are printed beside it.
            rel = results[large][f"{page}_ratio"] / results[small][f"{page}_ratio"]
            raw = results[large][page] / results[small][page]
            cpu = results[small][f"{page}_ms"] / results[large][f"{page}_ms"]
            growth = f" (target >= 0.80: {verdict(rel, 0.8)})" if page == "trend" else ""
            print(f"{'':{len(label) + 1}} {page} at {large} vs {small} members, as healthz ratios: {rel:.2f}{growth}; "
                  f"requests/s {raw:.2f}; by server CPU per request {cpu:.2f}")  # fmt: skip


async def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--sizes", type=lambda s: [int(x) for x in s.split(",")], default=[500, 5000, 50000],
                        help="community sizes in members, comma-separated (default 500,5000,50000)")  # fmt: skip
    parser.add_argument("--rounds", type=int, default=156, help="closed weekly rounds (default 156: three years)")
    parser.add_argument("--no-open-round", dest="open_round", action="store_false", help="no round open now")
    parser.add_argument("--comments", type=float, default=0.02, help="share of respondents leaving a comment")
    parser.add_argument("--stories", type=int, default=60, help="released stories on the wall (default 60, as bench/soak.py)")
    parser.add_argument("--period", choices=["52", "all"], help="the trend page's period (default: its own, 26 rounds)")
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--seconds", type=float, default=4.0, help="counted seconds per phase")
    parser.add_argument("--repeats", type=int, default=3, help="healthz and the pages measured this many times in turn; medians")
    parser.add_argument("--db", choices=["sqlite", "postgresql", "both"], default="both")
    parser.add_argument("--profile", metavar="FILE", help="py-spy the server during each page phase (.svg or .txt)")
    args = parser.parse_args()
    print(f"sizes {args.sizes}, {TEAMS} teams, {args.concurrency} connections, one uvicorn worker, {os.cpu_count()} CPUs")
    results = {}
    if args.db in ("sqlite", "both"):
        results["sqlite"] = await bench("sqlite", "", args)
    if args.db in ("postgresql", "both") and (found := await on_postgresql(args)) is not None:
        results["postgresql"] = found
    for label, found in results.items():
        summary(label, found)
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
