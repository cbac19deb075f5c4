"""Private mode under crashes: answers redeemed with blind-signature tokens while the server is
SIGKILLed, and story batches released by ticks SIGKILLed at random points (issue 21, "Also").

Real processes, no mocks, as in test_load.py and test_tick_crash.py: `safespace serve` in its own
process group (killed whole, workers and signing process with it), `safespace tick` as a process
of its own, members as sockets. The member's half of RFC 9474 (prepare, blind, finalize) is
safespace.privacy.blind's client functions, as in tests/safespace/pulse/test_tokens.py.

Answers: every member takes a token signed in, then all redeem it at once with an anonymous
POST /api/v1/answers; the server is killed at a random point of the load (after a random number
of answers were acknowledged, and a random moment more), restarted, and the members whose request
got no answer send it again with the same token, as the browser's outbox does after a network
error. Four kills, then everyone retries until answered. An answer acknowledged (201) is counted
exactly once; a retry refused as "used already" means the lost attempt was counted; the round's
tallies equal the fold of every member's answers exactly once.

The test after it follows the browser at a chosen point (the server paused after a redemption's
commit, before its answer, then killed): the outbox's retry is refused as spent, and the outbox
stops there. The refusal used to carry the fresh-token problem type, on which the outbox took a
second token and sent the same answers again, counting the member twice.

Stories: members share stories with story tokens (anonymous POST /api/v1/stories) while ticks run;
each tick is the real command with a hook (at the bottom of this file) that prints MARK at a
chosen database event (a statement or a commit) and carries on; the test sends SIGKILL a random
moment after reading it. A batch waits before each tick (so each has a release to do) and more
stories arrive while it runs; one tick in five is left alone, the others get a point drawn at
random, every other one in or around the release's transaction (learned from a traced tick).
Every story is found exactly once after every tick, is never released twice, and in the end is
released, with its text and its receipt.
"""

from __future__ import annotations

import asyncio
import inspect
import json
import os
import random
import signal
import subprocess
import sys
import uuid
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric import rsa
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession

from safespace.privacy import blind
from safespace.privacy.crypto import Keyring
from safespace.privacy.token_keys import FRESH_TOKEN, b64url, from_b64url
from safespace.pulse.answering import read_answers, read_tally
from safespace.pulse.models import Round, SpentToken, Tally
from safespace.pulse.services import COMMUNITY, round_instruments
from safespace.settings import Settings
from safespace.stories import receipts
from safespace.stories.models import Story
from safespace.stories.services import open_story
from safespace.web.session import SESSION_COOKIE
from surveys import tally as tally_rules
from surveys.instrument import builtin_instruments
from tests.faults.conftest import MEMBERS, ROOT, Server, commenting, is_postgres, server_env
from tests.load import INSTRUMENT, ledger, seed

CSRF_COOKIE = "safespace_csrf"
REDEEM = "/api/v1/answers"
KILLS = 4  # server kills while answers are redeemed (a restart takes 1.5 to 4 s)
USED_ALREADY = "used already"


def seeded_random() -> random.Random:
    """A new seed each run, printed (pytest shows it with a failure): random.Random(seed) replays the random choices, not the timing."""
    seed = int.from_bytes(os.urandom(4), "big")
    print(f"random seed {seed}")
    return random.Random(seed)


def workers_for(database_url: str) -> int:
    return 2 if is_postgres(database_url) else 1


# --- HTTP, one connection per request ----------------------------------------------------------------


@dataclass
class Reply:
    status: int  # 0: no complete answer (the connection was refused or died with the server)
    cookies: dict[str, str] = field(default_factory=dict)
    body: bytes = b""

    def json(self) -> dict:
        return json.loads(self.body)


async def call(port: int, method: str, path: str, cookies: dict[str, str] | None = None, data: object = None, csrf: str = "") -> Reply:
    """One request on a connection of its own (Connection: close), JSON in and out."""
    body = b"" if data is None else json.dumps(data).encode()
    head = [f"{method} {path} HTTP/1.1", "Host: 127.0.0.1", "Connection: close"]
    if cookies:
        head.append("Cookie: " + "; ".join(f"{k}={v}" for k, v in cookies.items()))
    if csrf:
        head.append(f"X-CSRFToken: {csrf}")
    if data is not None:
        head += ["Content-Type: application/json", f"Content-Length: {len(body)}"]
    try:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
    except OSError:
        return Reply(0)
    raw = b""
    try:
        writer.write("\r\n".join(head).encode() + b"\r\n\r\n" + body)
        while chunk := await reader.read(65536):  # until the server closes the connection (or dies)
            raw += chunk
    except OSError:
        pass  # the connection died: what arrived before counts if it is a whole answer
    finally:
        writer.close()
    header, separator, rest = raw.partition(b"\r\n\r\n")
    if not separator:
        return Reply(0)
    lines = header.decode("latin-1").split("\r\n")
    reply, length = Reply(int(lines[0].split(" ", 2)[1])), None
    for name, _, value in (line.partition(":") for line in lines[1:]):
        name, value = name.strip().lower(), value.strip()
        if name == "content-length":
            length = int(value)
        elif name == "set-cookie":
            key, _, cookie = value.split(";", 1)[0].partition("=")
            reply.cookies[key.strip()] = cookie.strip()
    if length is None or len(rest) < length:
        return Reply(0)  # cut off mid-answer: the client never saw it whole
    reply.body = rest[:length]
    return reply


def public_key(jwk: dict[str, str]) -> rsa.RSAPublicKey:
    n, e = (int.from_bytes(from_b64url(jwk[part], part), "big") for part in ("n", "e"))
    return rsa.RSAPublicNumbers(e, n).public_key()


async def take_token(port: int, key_path: str, sign_path: str, session: str) -> dict[str, str]:
    """What tokens.js does signed in: fetch the key (and the CSRF cookie), blind a random message,
    have it signed, unblind and check it. Returns {key_id, msg, sig}."""
    key = await call(port, "GET", key_path, {SESSION_COOKIE: session})
    assert key.status == 200 and CSRF_COOKIE in key.cookies, (key.status, key.body[:300])
    published = key.json()
    public = public_key(published["jwk"])
    msg = blind.prepare(os.urandom(32))
    blinded, inv = blind.blind(public, msg)
    csrf = key.cookies[CSRF_COOKIE]
    body = {"key_id": published["key_id"], "blinded_msg": b64url(blinded)}
    signed = await call(port, "POST", sign_path, {SESSION_COOKIE: session, CSRF_COOKIE: csrf}, body, csrf=csrf)
    assert signed.status == 200, (signed.status, signed.body[:300])
    sig = blind.finalize(public, msg, from_b64url(signed.json()["blind_sig"], "blind_sig"), inv)
    return {"key_id": published["key_id"], "msg": b64url(msg), "sig": b64url(sig)}


# --- private-mode answers ------------------------------------------------------------------------------


@dataclass
class Answerer:
    index: int
    session: str
    form: dict[str, str]
    token: dict[str, str] = field(default_factory=dict)
    statuses: list[int] = field(default_factory=list)
    refusals: list[dict] = field(default_factory=list)

    @property
    def done(self) -> bool:
        return bool(self.statuses) and self.statuses[-1] in (201, 409)

    @property
    def lost_acknowledgment(self) -> bool:
        """Counted by a request whose answer never arrived: the retry with the same token was refused as spent."""
        return self.statuses[-1] == 409 and 0 in self.statuses


@dataclass
class PrivateRound:
    engine: AsyncEngine
    keyring: Keyring
    community_id: str
    round_id: str
    members: list[Answerer]

    @property
    def api(self) -> str:
        return f"/api/v1/communities/{self.community_id}/rounds/{self.round_id}"

    async def take_tokens(self, port: int, concurrency: int = 16) -> None:
        queue = iter(self.members)

        async def worker() -> None:
            for member in queue:
                member.token = await take_token(port, f"{self.api}/token-key", f"{self.api}/token", member.session)

        await asyncio.gather(*(worker() for _ in range(concurrency)))

    async def redeem(self, port: int, member: Answerer, token: dict[str, str] | None = None) -> int:
        body = {"round_id": self.round_id} | (token or member.token) | {"answers": member.form}
        reply = await call(port, "POST", REDEEM, data=body)  # no cookie: anonymous, as credentials "omit"
        member.statuses.append(reply.status)
        if reply.status == 409:
            member.refusals.append(reply.json())
        return reply.status

    async def tallies(self) -> dict[str, tally_rules.Tally]:
        """The round's tallies by group, opened with the server's keyring (sealed while the round is open)."""
        round_id = uuid.UUID(self.round_id)
        async with self.engine.connect() as db:
            rows = (
                await db.execute(select(Tally.group_key, Tally.data).where(Tally.round_id == round_id, Tally.instrument == INSTRUMENT))
            ).all()
        return {group: read_tally(self.keyring, round_id, INSTRUMENT, group, data) for group, data in rows}

    async def spent(self) -> int:
        async with self.engine.connect() as db:
            return await db.scalar(select(func.count()).select_from(SpentToken).where(SpentToken.round_id == uuid.UUID(self.round_id)))

    async def expected_community_tally(self, empty: tally_rules.Tally) -> tally_rules.Tally:
        """Every member's answers folded in once, by the same rules the server folds with."""
        async with AsyncSession(self.engine) as db:
            round_ = await db.get_one(Round, uuid.UUID(self.round_id))
        instruments = round_instruments(round_)
        return tally_rules.fold_all(empty, [read_answers(instruments, m.form)[0][INSTRUMENT] for m in self.members])


def answer_form(index: int) -> dict[str, str]:
    rng = random.Random(index)
    form = {f"{INSTRUMENT}.{item}": str(rng.randint(1, 7)) for item in builtin_instruments()[INSTRUMENT].item_keys}
    if commenting(index):
        form[f"{INSTRUMENT}.comment"] = f"Comment {index}: more time in retrospectives."
    return form


async def private_round(engine: AsyncEngine, data_dir: Path, members: int) -> PrivateRound:
    """bench/submit.py's community (4 teams, members signed in, an open round), its token keys made
    at opening with the server's keyring (the server started later uses the same data directory)."""
    data_dir.mkdir(exist_ok=True)
    keyring = Keyring.load(Settings(data_dir=str(data_dir)).encryption_key_path)
    community_id, round_id, sessions = await seed(engine, members, keyring)
    answerers = [Answerer(n, session, answer_form(n)) for n, session in enumerate(sessions)]
    return PrivateRound(engine, keyring, community_id, round_id, answerers)


async def redeem_under_kills(server: Server, pulse: PrivateRound, rng: random.Random, kills: int) -> list[tuple[int, int]]:
    """Everyone not answered yet sends at once (a first try, or again with the same token after a
    request that got no answer, as the outbox does); after a random number of acknowledgments and
    a random moment more the server is SIGKILLed and restarted, `kills` times.
    Returns (answers acknowledged, requests left with no answer) per kill."""
    report = []
    for _ in range(kills):
        waiting = [m for m in pulse.members if not m.done]
        if len(waiting) < 4:
            break
        threshold = rng.randint(1, max(1, len(waiting) // 3))
        acknowledged, cut = 0, asyncio.Event()

        async def attempt(member: Answerer, threshold: int, cut: asyncio.Event) -> None:
            nonlocal acknowledged
            if await pulse.redeem(server.port, member) == 201:
                acknowledged += 1
                if acknowledged >= threshold:
                    cut.set()

        load = asyncio.gather(*(attempt(m, threshold, cut) for m in waiting))
        cutting = asyncio.ensure_future(cut.wait())
        await asyncio.wait([cutting, load], timeout=120, return_when=asyncio.FIRST_COMPLETED)
        cutting.cancel()
        await asyncio.sleep(rng.uniform(0, 0.005))  # a random moment after the threshold
        server.kill()
        await load
        statuses = Counter(m.statuses[-1] for m in waiting)
        assert statuses.keys() <= {0, 201, 409}, (statuses, server.log_text()[-3000:])
        report.append((acknowledged, statuses[0]))
        # At the crash: every spent token has its answers in the tally and no more (one transaction),
        # and every acknowledged answer is among them.
        spent, tallied = await pulse.spent(), (await pulse.tallies())[COMMUNITY].respondents
        assert spent == tallied, f"after kill {len(report)}: {spent} tokens spent, {tallied} answer sets tallied"
        assert spent >= sum(201 in m.statuses for m in pulse.members), f"after kill {len(report)}: an acknowledged answer is lost"
        await server.start()  # same port, same database, same data directory
    return report


async def retry(server: Server, pulse: PrivateRound, member: Answerer, tries: int = 5) -> None:
    for _ in range(tries):
        if await pulse.redeem(server.port, member) in (201, 409):
            return
        await asyncio.sleep(0.5)


async def test_private_answers_survive_server_kills_counted_exactly_once(
    database_url: str, engine: AsyncEngine, db: AsyncSession, serve, tmp_path: Path
) -> None:
    rng = seeded_random()
    pulse = await private_round(engine, tmp_path / "data", MEMBERS)
    empty = (await pulse.tallies())[COMMUNITY]
    assert empty.respondents == 0
    server = await serve(database_url, workers=workers_for(database_url))
    await pulse.take_tokens(server.port)
    found = await ledger(engine, uuid.UUID(pulse.round_id))
    assert found == {"participation": MEMBERS, "community": 0, "teams": 0, "comments": 0}  # tokens taken, nothing counted

    kills = await redeem_under_kills(server, pulse, rng, KILLS)
    assert len(kills) == KILLS, kills
    assert all(lost > 0 for _acknowledged, lost in kills), f"a kill found nothing in flight: {kills}"
    # Then everyone left sends (or sends again) until the server answers.
    await asyncio.gather(*(retry(server, pulse, m) for m in pulse.members if not m.done))

    for member in pulse.members:
        assert member.done, f"member {member.index} is locked out: {member.statuses}"
        assert member.statuses.count(201) <= 1, f"member {member.index}'s token counted twice: {member.statuses}"
        assert set(member.statuses) <= {0, 201, 409}, f"member {member.index}: {member.statuses}"
        if member.statuses[-1] == 409:
            # Refused as spent: only after an attempt whose answer was lost, which was counted.
            assert member.lost_acknowledgment, f"member {member.index}'s token was spent by no request of theirs: {member.statuses}"
            refusal = member.refusals[-1]
            assert refusal.get("type") != FRESH_TOKEN and USED_ALREADY in refusal["detail"], refusal
    # Nothing acknowledged lost, nothing doubled: one spent token and one answer set per member,
    # in the community's tally and in the team's, and one comment per commenter.
    assert await pulse.spent() == MEMBERS
    found = await ledger(engine, uuid.UUID(pulse.round_id))
    commenters = sum(commenting(m.index) for m in pulse.members)
    assert found == {"participation": MEMBERS, "community": MEMBERS, "teams": MEMBERS, "comments": commenters}, found
    tallies = await pulse.tallies()
    expected = await pulse.expected_community_tally(empty)
    assert tallies[COMMUNITY] == expected, "the community's tally is not every member's answers folded once"
    teams = [t for group, t in tallies.items() if group != COMMUNITY]
    merged = teams[0]
    for team in teams[1:]:
        merged = tally_rules.merge(merged, team)
    assert merged == expected, "the teams' tallies together are not every member's answers folded once"

    lost = sum(m.lost_acknowledgment for m in pulse.members)
    # Every token replayed once more: refused as spent, and nothing changes.
    replayed = await asyncio.gather(*(pulse.redeem(server.port, m) for m in pulse.members))
    assert set(replayed) == {409}, Counter(replayed)
    assert await pulse.spent() == MEMBERS and (await pulse.tallies())[COMMUNITY] == expected
    assert "Traceback" not in server.log_text(), server.log_text()[-3000:]
    print(
        f"\n{database_url.split(':')[0]}: {MEMBERS} members, kills (acknowledged, no answer): {kills}; "
        f"{lost} answers counted whose acknowledgment died with the server"
    )


# --- the browser's outbox after an answer whose acknowledgment died with the server ------------------


@dataclass
class HookedServer(Server):
    """`safespace serve` with one worker (the app runs in that process) through a hook at the
    bottom of this file; with no hook, the plain command."""

    hook: list = field(default_factory=list)  # [a hook below, its arguments but the command line's]

    async def start(self) -> None:
        if not self.hook:
            return await Server.start(self)
        command = hook_command(*self.hook, ["--port", str(self.port), "--workers", "1"])
        env = self.env | {"SAFESPACE_BASE_URL": f"http://127.0.0.1:{self.port}"}
        with self.log.open("a") as log:
            self.process = subprocess.Popen(command, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        for _ in range(300):
            if self.process.poll() is not None:
                pytest.fail(f"the hooked server exited with {self.process.returncode}:\n{self.log_text()}")
            if (await call(self.port, "GET", "/healthz")).status == 200:
                return
            await asyncio.sleep(0.1)
        pytest.fail(f"the hooked server did not answer /healthz within 30 s:\n{self.log_text()}")

    async def paused(self, timeout: float = 30) -> bool:
        for _ in range(int(timeout / 0.01)):
            if "PAUSED" in self.log_text():
                return True
            await asyncio.sleep(0.01)
        return False


def require(condition: bool, message: str) -> None:
    """A precondition of the xfail test below: pytest.fail, not an AssertionError, so that only
    the assertion that names the bug can make it xfail (raises=AssertionError)."""
    if not condition:
        pytest.fail(message)


async def test_an_answer_whose_acknowledgment_died_is_counted_once_when_the_outbox_sends_it_again(
    database_url: str, engine: AsyncEngine, db: AsyncSession, tmp_path: Path
) -> None:
    """The same crash as above at a chosen point: the server (through the hook at the bottom of
    this file) prints PAUSED after the commit of the n-th redemption, before its answer is sent,
    and is SIGKILLed there. The member's browser then does what static/quiet.js's drain() does:
    the kept item again with the same token. The refusal used to carry the fresh-token problem
    type, on which the outbox took a second (re-issued) token and sent the same answers again: the
    member was counted twice. A spent token's refusal is final now: the outbox stops there."""
    rng = seeded_random()
    members = 8
    pulse = await private_round(engine, tmp_path / "data", members)
    empty = (await pulse.tallies())[COMMUNITY]
    nth = rng.randint(1, members)
    server = HookedServer(server_env(tmp_path / "data", database_url), 1, tmp_path / "serve.log", hook=[serve_pausing_hook, nth])
    try:
        await server.start()
        await pulse.take_tokens(server.port, concurrency=4)
        order = rng.sample(pulse.members, members)
        for member in order[: nth - 1]:
            require(await pulse.redeem(server.port, member) == 201, f"member {member.index}: {member.statuses}")
        crashed = order[nth - 1]
        sending = asyncio.ensure_future(pulse.redeem(server.port, crashed))
        require(await server.paused(), f"the server never paused:\n{server.log_text()[-3000:]}")
        server.kill()  # committed, not answered
        require(await sending == 0, f"the answer reached the member: {crashed.statuses}")
        require(await pulse.spent() == nth, "the paused redemption was not committed")

        server.hook = []  # the plain `safespace serve` from here, same port, same database
        await server.start()
        # The outbox kept the item and its token: it sends them again, and is told they are spent.
        require(await pulse.redeem(server.port, crashed) == 409, f"the retry: {crashed.statuses}")
        refusal = crashed.refusals[-1]
        require(USED_ALREADY in refusal["detail"], f"the retry's refusal: {refusal}")
        # quiet.js takes a new token only on `result.type === FRESH_TOKEN`; the outbox would have sent
        # the same answers again with it.
        assert refusal.get("type") != FRESH_TOKEN, f"a spent token's refusal asks for a new token: {refusal}"
        for member in order[nth:]:
            require(await pulse.redeem(server.port, member) == 201, f"member {member.index}: {member.statuses}")
    finally:
        server.stop()

    # Every member saw one acknowledgment, but the crashed one: its answer was lost, then "counted".
    require(all(m.statuses.count(201) == 1 for m in pulse.members if m is not crashed), [m.statuses for m in pulse.members])
    require(crashed.statuses == [0, 409], f"the crashed member: {crashed.statuses}")
    tallies = await pulse.tallies()
    assert tallies[COMMUNITY].respondents == members, (
        f"{members} members answered once each; the round counts {tallies[COMMUNITY].respondents} ({crashed.statuses})"
    )
    assert tallies[COMMUNITY] == await pulse.expected_community_tally(empty)


# --- story release by ticks killed at random points -------------------------------------------------

STORY_MEMBERS, STORIES_EACH = 24, 3  # a member may share three stories a week (settings.stories_per_week)
TICKS = 12  # ticks per database after the traced one, four in five told to print MARK (and killed)
BATCH_SIZE = 3  # stories/services.py: a batch goes out as soon as three wait


@dataclass
class Shared:
    title: str
    text: dict[str, str]
    token: dict[str, str]
    receipt: str = ""
    statuses: list[int] = field(default_factory=list)


def story_text(n: int) -> dict[str, str]:
    return {
        "title": f"Story {n:03d}: the pilot ran late",
        "happened": f"We launched pilot {n} before the data was in.",
        "learned": "Ask for the data earlier.",
        "differently": "Plan a buffer for the first month.",
    }


async def share(port: int, story: Shared) -> None:
    """What story-token.js sends: the story with its token, no cookie (the text names no one)."""
    body = {**story.token, **story.text, "tags": [], "wants_advice": False, "confirmed": False}
    reply = await call(port, "POST", "/api/v1/stories", data=body)
    story.statuses.append(reply.status)
    if reply.status == 201:
        story.receipt = reply.json()["receipt"]


class TickProcess:
    """`safespace tick` through tick_hook (bottom of this file): started ahead (the imports take
    most of a second), then told to go and at which database event to print MARK."""

    def __init__(self, process: asyncio.subprocess.Process) -> None:
        self.process = process

    @classmethod
    async def spawn(cls, env: dict[str, str]) -> TickProcess:
        process = await asyncio.create_subprocess_exec(
            *hook_command(tick_hook), cwd=ROOT, env=env, start_new_session=True,
            stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        )  # fmt: skip
        return cls(process)

    async def run(self, order: str, rng: random.Random) -> tuple[str, list[str]]:
        """("killed" | "finished", the lines it printed). A MARK line is answered with SIGKILL a
        random moment later, while the tick goes on."""
        line = await asyncio.wait_for(self.process.stdout.readline(), timeout=60)
        assert line.strip() == b"READY", (line, await self.process.stderr.read())
        self.process.stdin.write(order.encode() + b"\n")
        await self.process.stdin.drain()
        lines = []
        while line := await asyncio.wait_for(self.process.stdout.readline(), timeout=60):
            lines.append(line.decode().strip())
            if line.startswith(b"MARK"):
                await asyncio.sleep(rng.uniform(0, 0.003))
                self.kill()
                await self.process.wait()
                return ("killed" if self.process.returncode == -signal.SIGKILL else "finished"), lines
        await self.process.wait()
        assert self.process.returncode == 0, (self.process.returncode, lines, (await self.process.stderr.read()).decode()[-3000:])
        return "finished", lines

    def kill(self) -> None:
        try:
            os.killpg(self.process.pid, signal.SIGKILL)
        except ProcessLookupError:  # it had finished already
            pass


async def stories_now(engine: AsyncEngine, keyring: Keyring) -> dict[str, tuple[str, str, object, int]]:
    """title -> (status, id, released_on, position) of every story; a title twice fails here."""
    async with engine.connect() as db:
        rows = (await db.execute(select(Story.id, Story.body, Story.status, Story.released_on, Story.position))).all()
    found: dict[str, tuple[str, str, object, int]] = {}
    for row in rows:
        title = open_story(keyring, row).title  # type: ignore[arg-type]
        assert title not in found, f"{title!r} is stored twice: {found[title]} and {(row.status, str(row.id))}"
        found[title] = (row.status, str(row.id), row.released_on, row.position)
    return found


async def test_story_release_by_ticks_killed_at_random_points_releases_each_story_once(
    database_url: str, engine: AsyncEngine, db: AsyncSession, serve, tmp_path: Path
) -> None:
    spawned: list[TickProcess] = []
    try:
        await _stories_under_killed_ticks(database_url, engine, serve, tmp_path, spawned)
    finally:
        for tick in spawned:  # the ticks started ahead and never told to go, or a failure's leftovers
            if tick.process.returncode is None:
                tick.kill()
                await tick.process.wait()


async def _stories_under_killed_ticks(database_url: str, engine: AsyncEngine, serve, tmp_path: Path, spawned: list[TickProcess]) -> None:
    rng = seeded_random()
    data_dir = tmp_path / "data"
    data_dir.mkdir()
    keyring = Keyring.load(Settings(data_dir=str(data_dir)).encryption_key_path)
    community_id, _round_id, sessions = await seed(engine, STORY_MEMBERS)
    server = await serve(database_url, workers=workers_for(database_url))
    env = server_env(data_dir, database_url)

    async def spawn() -> TickProcess:
        tick = await TickProcess.spawn(env)
        spawned.append(tick)
        return tick

    # Two ticks are always starting ahead (their imports take most of a second each).
    ready = [asyncio.ensure_future(spawn()) for _ in range(2)]

    async def next_tick() -> TickProcess:
        tick = await ready.pop(0)
        ready.append(asyncio.ensure_future(spawn()))
        return tick

    # Signed in, each member takes the week's three story tokens (the first makes the week's key).
    key_path, sign_path = (
        f"/api/v1/communities/{community_id}/story-tokens/key?kind=story",
        f"/api/v1/communities/{community_id}/story-tokens",
    )
    first = await take_token(server.port, key_path, sign_path, sessions[0])
    takers = [sessions[0]] * (STORIES_EACH - 1) + [s for s in sessions[1:] for _ in range(STORIES_EACH)]
    rest = await asyncio.gather(*(take_token(server.port, key_path, sign_path, s) for s in takers))
    stories = [Shared(story_text(n)["title"], story_text(n), token) for n, token in enumerate([first, *rest])]
    unshared = iter(stories)
    shared: list[Shared] = []
    released: dict[str, tuple[str, object, int]] = {}  # title -> (id, released_on, position), fixed once released

    def check(state: dict[str, tuple[str, str, object, int]], when: str) -> None:
        acknowledged = {s.title for s in shared if s.receipt}
        assert set(state) == acknowledged, f"{when}: lost {acknowledged - set(state)}, unknown {set(state) - acknowledged}"
        for title, (status, story_id, day, position) in state.items():
            assert status in ("pending", "released"), (when, title, status)
            if status == "released":
                before = released.setdefault(title, (story_id, day, position))
                assert before == (story_id, day, position), f"{when}: {title!r} was released again: {before} -> {state[title][1:]}"
            else:
                assert title not in released, f"{when}: {title!r} went back to pending"

    def share_now(count: int) -> list[Shared]:
        batch = [story for story, _ in zip(unshared, range(count))]
        shared.extend(batch)
        return batch

    # A traced tick with a batch waiting: where the release's transaction lies among its events.
    await asyncio.gather(*(share(server.port, s) for s in share_now(BATCH_SIZE)))
    tick = await next_tick()
    outcome, trace = await tick.run("trace", rng)
    assert outcome == "finished" and any(f"released {BATCH_SIZE} story(ies)" in line for line in trace), trace
    events = [line.split(" ", 3) for line in trace if line.startswith("EVENT")]
    start = next(int(e[1]) for e in events if e[2] == "execute" and len(e) > 3 and e[3].startswith("DELETE FROM story WHERE"))
    end = next(int(e[1]) for e in events if e[2] == "commit" and int(e[1]) > start)
    total = len(events)
    state = await stories_now(engine, keyring)
    check(state, "after the traced tick")
    assert {status for status, *_ in state.values()} == {"released"}

    outcomes: Counter[str] = Counter()
    for n in range(TICKS):
        # A batch waits before each tick starts (so each has a release to do), more may come during it.
        waiting = sum(status == "pending" for status, *_ in state.values())
        await asyncio.gather(*(share(server.port, s) for s in share_now(max(0, BATCH_SIZE - waiting))))
        batch = share_now(rng.randint(0, 2))
        if rng.random() < 0.2:
            order = "run"  # now and then a tick left alone
        elif n % 2:
            order = f"mark {rng.randint(max(1, start - 3), end + 1)}"  # in or around the release's transaction
        else:
            order = f"mark {rng.randint(1, total)}"  # anywhere in the tick
        tick = await next_tick()
        # Members share while the tick runs: a story may arrive in the middle of a release.
        (outcome, lines), _ = await asyncio.gather(tick.run(order, rng), asyncio.gather(*(share(server.port, s) for s in batch)))
        assert all(s.statuses == [201] for s in batch), [(s.title, s.statuses) for s in batch]
        before = len(released)
        state = await stories_now(engine, keyring)
        mark = next((line for line in lines if line.startswith("MARK")), "")
        check(state, f"tick {n} ({order}, {outcome}: {mark or lines[-1:]})")
        landed = " ".join(mark.split()[2:4]) + (", its release committed" if len(released) > before else "")
        if outcome == "finished" and any("Another process is running the schedule" in line for line in lines):
            outcome = "skipped (the schedule's turn was taken)"
        outcomes[f"{outcome} {landed}".strip() if outcome == "killed" else outcome] += 1

    # Then ticks that are left alone, with a batch's worth waiting at least, until nothing waits.
    state = await stories_now(engine, keyring)
    pending = sum(status == "pending" for status, *_ in state.values())
    if pending and pending < BATCH_SIZE:
        await asyncio.gather(*(share(server.port, s) for s in share_now(BATCH_SIZE - pending)))
    for _ in range(5):
        tick = await next_tick()
        outcome, lines = await tick.run("run", rng)
        outcomes["left alone"] += 1
        state = await stories_now(engine, keyring)
        check(state, "a tick left alone")
        if all(status == "released" for status, *_ in state.values()):
            break
        await asyncio.sleep(1)  # PostgreSQL: a killed tick's advisory lock may outlive it a moment
    outcome, lines = await (await next_tick()).run("run", rng)
    outcomes["left alone"] += 1
    assert any("released 0 story(ies)" in line for line in lines), lines  # nothing twice
    await asyncio.gather(*ready)  # killed by the caller

    final = await stories_now(engine, keyring)
    check(final, "the end")
    assert final == state and {status for status, *_ in final.values()} == {"released"}
    acknowledged = [s for s in shared if s.receipt]
    assert len(final) == len(acknowledged) == len(shared), (len(final), len(acknowledged), len(shared))
    # Each released story is its author's text, and its receipt code still opens it.
    async with engine.connect() as connection:
        rows = {open_story(keyring, r).title: r for r in (await connection.execute(select(Story))).all()}  # type: ignore[arg-type]
    for story in acknowledged:
        row = rows[story.title]
        assert open_story(keyring, row).__dict__ == story.text  # type: ignore[arg-type]
        raw = receipts.normalize(story.receipt)
        assert raw is not None and row.receipt_locator == raw[: receipts.GROUP_LENGTH]
    matched = await asyncio.gather(
        *(
            asyncio.to_thread(receipts.matches, receipts.normalize(s.receipt), rows[s.title].receipt_salt, rows[s.title].receipt_hash)
            for s in acknowledged
        )
    )
    assert all(matched), [s.title for s, ok in zip(acknowledged, matched) if not ok]
    assert "Traceback" not in server.log_text(), server.log_text()[-3000:]
    print(
        f"\n{database_url.split(':')[0]}: {len(final)} stories; a traced tick (release transaction: events {start}-{end} of "
        f"{total}), then {outcomes.total()} ticks: {dict(outcomes)}"
    )


# --- the real commands with a hook, for the tests above ----------------------------------------------


def hook_command(hook: Callable[..., None], *args: object) -> list[str]:
    """`python -c` with the source of one of the hooks below and its arguments. Each hook is whole
    in itself (it imports what it uses), so the process imports the product, not this test module;
    the product carries no test switch (as tests/faults/paused_tick.py)."""
    return [sys.executable, "-c", f"{inspect.getsource(hook)}\n{hook.__name__}(*{list(args)!r})\n"]


def tick_hook() -> None:
    """The real `safespace tick`, started ahead: it prints READY, reads its order from stdin, then
    runs. "mark N": print MARK at the N-th database event (a statement about to run, or a commit)
    and carry on; "trace": print every event; "run": print none."""
    import sys

    from sqlalchemy import event
    from sqlalchemy.engine import Engine

    # What `safespace tick` imports when it runs, imported now: told to go, it starts at once.
    import safespace.db.engine
    import safespace.mail
    import safespace.pulse.mail
    import safespace.schedule
    import safespace.web  # noqa: F401
    from safespace import cli

    print("READY", flush=True)
    order = sys.stdin.readline().split()
    mode, at, count = order[0], int(order[1]) if len(order) > 1 else 0, 0

    def point(kind: str, statement: str = "") -> None:
        nonlocal count
        count += 1
        if mode == "trace" or count == at:
            print(f"{'EVENT' if mode == 'trace' else 'MARK'} {count} {kind} {' '.join(statement.split())[:80]}", flush=True)

    event.listen(Engine, "before_cursor_execute", lambda _conn, _cursor, statement, *_: point("execute", statement))
    event.listen(Engine, "commit", lambda _conn: point("commit"))
    cli.main(["tick"])


def serve_pausing_hook(nth: int, args: list[str]) -> None:
    """The real `safespace serve` with `args` (one worker: the app runs in this process); after the
    commit of the nth transaction that spent an answer token, it prints PAUSED and blocks, so that
    answer is never sent."""
    import sys
    import time

    from sqlalchemy import event
    from sqlalchemy.orm import Session

    from safespace import cli
    from safespace.pulse.models import SpentToken

    spent = 0

    def flushed(session: Session, _context: object) -> None:
        if any(isinstance(instance, SpentToken) for instance in session.new):
            session.info["spends"] = True

    def rolled_back(session: Session) -> None:
        session.info.pop("spends", None)

    def committed(session: Session) -> None:
        nonlocal spent
        if session.info.pop("spends", False):
            spent += 1
            if spent == nth:
                print("PAUSED", flush=True)
                time.sleep(300)  # blocks the event loop: the answer stays unsent until the kill
                sys.exit("serve_pausing_hook: nobody killed me")

    event.listen(Session, "after_flush", flushed)
    event.listen(Session, "after_rollback", rolled_back)
    event.listen(Session, "after_commit", committed)
    cli.main(["serve", *args])
