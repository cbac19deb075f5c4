"""After a round closes, the database's files give back no per-answer tally state (issue 22, items 1-2).

An attack from the files, not from SQL: members answer a round with known answers, one answer per
transaction, in a known order; the round closes as the schedule closes it (`schedule.tick`:
close_round, then the scrub of ANSWER_TABLES); then the test reads every byte the database left
on disk and looks for the tally states it computed itself with surveys.tally (the same folding,
done without the database).

What is looked for (in `Probes`):
- every intermediate state of every tally row, i.e. `msgspec.json.encode(Tally)` after each
  answer: the community's and each counted team's. Two consecutive states differ by exactly one
  member's answers, so finding them rebuilds that member's answer set;
- the "changed bytes" of each such state: the state without the prefix and suffix it shares with
  the state before it. PostgreSQL logs an UPDATE whose old and new row versions sit on the same
  page as only the new version's changed middle (heap_update's prefix/suffix compression), so the
  full state need not appear in a WAL record even though replaying the WAL rebuilds it;
- every state of a team that is hidden at close (fewer than k answered), its final state
  included: close deletes that tally, so no state of it may be found;
- the plaintext of the comments (they are sealed with AES-GCM, so this must never match).
Legitimately written values (the empty tally written at open, and the final community and
big-team states written at close) are never probes, nor is any probe contained in one of them.

Where it looks:
- PostgreSQL: a throwaway cluster (as in test_database_loss.py) with `wal_level=replica`,
  `archive_mode=on` and an `archive_command` copying segments into a folder of the test. After the
  close: `CHECKPOINT; SELECT pg_switch_wal()` and a wait for the archiver; then every file under
  `base/<database oid>/` (heap, index, free-space and visibility maps: dead row versions and
  pages VACUUM compacted included), every file in `pg_wal/` (recycled segments included) and
  every file in the archive folder, as raw bytes. Raw bytes suffice, with one step: `wal_compression`
  is off (PostgreSQL's default, set explicitly here), so full-page images and row data sit in the
  WAL as they are, and a tally (about 1.5 kB) is below the 2 kB TOAST threshold, so it is stored
  uncompressed and inline; but WAL is written in 8 kB pages that each begin with a header, and a
  record that crosses a page boundary is split around it, so each WAL segment is also searched
  with its page headers cut out (`wal_records`; without that, one run on the leaking code missed
  2 of 13 community states and 2 of 4 of the hidden team's). A record split across two segment
  files is not joined (rare: one in 2048 page boundaries). pg_waldump is not used: it prints no
  row data; it helps by hand to see which record a match sits in (on the leaking code: HEAP
  INSERT/HOT_UPDATE records, the short HOT_UPDATEs being the prefix/suffix-compressed ones; no
  full-page image, since no checkpoint falls inside the round).
- SQLite: every file in the database's folder (the database, its -wal, -shm and -journal files).

The SQLite half passes because close is followed by `PRAGMA wal_checkpoint(TRUNCATE)` with
secure_delete on; skipping that scrub makes it fail (every state is in the -wal). The files are
read while the engine's connections are still open, as a copy of a live data directory would be
(the last connection to close would checkpoint and remove the -wal itself).

The round: a team "Big" of 6 (all answer: its tally is kept at close), a team "Small" of 5 of
which 4 answer (its tally exists while the round is open, since the team reaches k = 5, and is
deleted at close: 4 < k), and a team "Four" of 4, below k when the round opens, which therefore
never has a tally of its own (its members count in the community only). Community and Big:
each intermediate state is a probe; Small: every state is.
"""

from __future__ import annotations

import asyncio
import random
import shutil
import time
import uuid
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import asyncpg
import msgspec
import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import async_sessionmaker

from safespace import clock, schedule
from safespace.db.engine import make_engine
from safespace.db.migrate import upgrade
from safespace.identity.models import Person
from safespace.privacy.crypto import Keyring
from safespace.pulse import answering, services
from safespace.pulse.models import Round, Tally
from safespace.settings import Settings
from surveys import tally as tally_rules
from surveys.instrument import builtin_instruments
from tests.faults.test_database_loss import Cluster, throwaway_cluster
from tests.helpers import make_community

PS = builtin_instruments()["psychological_safety"]
K = 5
TEAMS = {
    "Big": [f"big{i}@x.org" for i in range(6)],
    "Small": [f"small{i}@x.org" for i in range(5)],
    "Four": [f"four{i}@x.org" for i in range(4)],
}
# Who answers, in this order (small4 never answers). Teams interleave, as they would.
ORDER = [
    "big0@x.org", "small0@x.org", "four0@x.org", "big1@x.org", "small1@x.org", "big2@x.org", "four1@x.org",
    "small2@x.org", "big3@x.org", "four2@x.org", "small3@x.org", "big4@x.org", "four3@x.org", "big5@x.org",
]  # fmt: skip
MIN_DELTA = 24  # shorter changed-bytes probes are left out (too little to be a state's evidence)


# --- what the test knows ---------------------------------------------------------------------------


def known_answers() -> dict[str, tuple[dict[str, int | None], str | None]]:
    """email -> (answers, comment): distinct answer sets, some with a skipped item, some with a comment."""
    rng = random.Random(22)
    given: dict[str, tuple[dict[str, int | None], str | None]] = {}
    for n, email in enumerate(ORDER):
        answers: dict[str, int | None] = {key: rng.randint(1, PS.scale.points) for key in PS.item_keys}
        if n % 5 == 3:
            answers[PS.item_keys[n % len(PS.item_keys)]] = None  # "prefer not to answer"
        comment = f"at-rest comment {n}: {uuid.UUID(int=rng.getrandbits(128)).hex}" if n % 3 == 0 else None
        given[email] = (answers, comment)
    assert len({tuple(a.items()) for a, _ in given.values()}) == len(ORDER), "answer sets must be distinct"
    return given


def form_of(answers: dict[str, int | None], comment: str | None) -> dict[str, str]:
    form = {f"{PS.key}.{key}": ("skip" if value is None else str(value)) for key, value in answers.items()}
    return form | ({f"{PS.key}.comment": comment} if comment else {})


def changed_bytes(before: bytes, after: bytes) -> bytes:
    """`after` without the prefix and suffix it shares with `before` (what heap_update logs)."""
    limit = min(len(before), len(after))
    prefix = 0
    while prefix < limit and before[prefix] == after[prefix]:
        prefix += 1
    suffix = 0
    while suffix < limit - prefix and before[-1 - suffix] == after[-1 - suffix]:
        suffix += 1
    return after[prefix : len(after) - suffix]


@dataclass
class Probes:
    """Byte strings that must not be found after the close, each with what it would give away."""

    found_by: dict[bytes, str] = field(default_factory=dict)
    legitimate: list[bytes] = field(default_factory=list)  # written on purpose: never searched for
    left_out: list[str] = field(default_factory=list)

    def add(self, what: str, data: bytes) -> None:
        if any(data in value for value in self.legitimate):
            self.left_out.append(what)  # it would match what close writes legitimately
        elif data in self.found_by:  # e.g. the community and the first answerer's team after one answer
            self.found_by[data] += f", which is also {what}"
        else:
            self.found_by[data] = what

    def add_states(self, group: str, states: list[bytes], members: list[str], keep_final: bool) -> None:
        """states[0] is the empty tally written at open; states[i] the state after members[i-1]."""
        last = len(states) - 1 if keep_final else len(states)
        for i in range(1, last):
            who = f"{group} tally after its answer {i} of {len(states) - 1} ({members[i - 1]})"
            self.add(f"the whole state of the {who}", states[i])
            delta = changed_bytes(states[i - 1], states[i])
            if len(delta) >= MIN_DELTA:
                self.add(f"the changed bytes ({len(delta)} B) of the {who}", delta)


WAL_LONG_HEADER, WAL_SHORT_HEADER = 40, 24  # PostgreSQL's XLogLongPageHeaderData / XLogPageHeaderData


def wal_records(data: bytes) -> bytes | None:
    """A WAL segment with its page headers cut out, or None if `data` is not a WAL segment.

    WAL is written in pages (XLOG_BLCKSZ, 8 kB) that each start with a header; a record that
    crosses a page boundary is split around it, so a tally in such a record is not contiguous in
    the raw file. Cutting the headers out joins it again (the long header of a segment's first
    page gives the page size)."""
    if len(data) < WAL_LONG_HEADER:
        return None
    page_size = int.from_bytes(data[36:40], "little")  # xlp_xlog_blcksz
    segment_size = int.from_bytes(data[32:36], "little")  # xlp_seg_size
    if page_size not in (1024, 2048, 4096, 8192, 16384, 32768, 65536) or segment_size != len(data):
        return None
    pages = [data[WAL_LONG_HEADER:page_size]]
    pages += [data[at + WAL_SHORT_HEADER : at + page_size] for at in range(page_size, len(data), page_size)]
    return b"".join(pages)


def search(files: list[Path], probes: Probes, root: Path) -> dict[str, list[str]]:
    """What was found where: probe -> ["file at byte N", ...], in each file's raw bytes and, for WAL
    segments, also in their records with the page headers cut out."""
    found: dict[str, list[str]] = {}
    for path in files:
        raw = path.read_bytes()
        views = [("", raw)]
        if (records := wal_records(raw)) is not None:
            views.append((" with its page headers cut out", records))
        name = path.relative_to(root) if path.is_relative_to(root) else path
        for probe, what in probes.found_by.items():
            for view, data in views:
                if (at := data.find(probe)) >= 0:
                    found.setdefault(what, []).append(f"{name}{view} at byte {at}")
                    break
    return found


# --- the two databases ------------------------------------------------------------------------------


@dataclass
class Store:
    database_url: str
    files: Callable[[], Awaitable[list[Path]]]  # after the close: flush what must reach the disk, list it
    describe: str
    root: Path  # where the files are (for shorter messages)


class ArchivingCluster(Cluster):
    """test_database_loss's throwaway cluster, archiving every WAL segment into `archive`."""

    def __init__(self, bin_dir: Path) -> None:
        super().__init__(bin_dir)
        self.archive = self.home / "archive"

    def init(self) -> None:
        super().init()
        self.archive.mkdir()
        shutil.chown(self.archive, "postgres", "postgres")
        with (self.data / "postgresql.conf").open("a") as conf:
            conf.write(
                "\n# tests/faults/test_files_at_rest.py\n"
                "wal_level = replica\n"
                "archive_mode = on\n"
                f"archive_command = 'cp %p {self.archive}/%f'\n"
                "wal_compression = off\n"
                "full_page_writes = on\n"
            )


@pytest.fixture
def archiving_cluster() -> Iterator[ArchivingCluster]:
    with throwaway_cluster(ArchivingCluster) as made:
        yield made


async def postgres_store(cluster: ArchivingCluster) -> Store:
    await cluster.new_database()

    async def files() -> list[Path]:
        connection = await asyncpg.connect(f"postgresql://root@127.0.0.1:{cluster.port}/safespace")
        try:
            oid = await connection.fetchval("SELECT oid FROM pg_database WHERE datname = current_database()")
            await connection.execute("CHECKPOINT")
            # pg_walfile_name of the switch's end names the segment just completed.
            segment = await connection.fetchval("SELECT pg_walfile_name(pg_switch_wal())")
            deadline = time.monotonic() + 30
            while True:
                archived, failed, last_failed = await connection.fetchrow(
                    "SELECT last_archived_wal, failed_count, last_failed_wal FROM pg_stat_archiver"
                )
                if archived is not None and archived >= segment and (cluster.archive / segment).exists():
                    break
                if time.monotonic() > deadline:
                    log = (cluster.home / "log").read_text(errors="replace")[-3000:]
                    pytest.fail(f"the archiver did not archive {segment} in 30 s (last {archived}, "
                                f"{failed} failures, last failed {last_failed}):\n{log}")  # fmt: skip
                await asyncio.sleep(0.1)
        finally:
            await connection.close()
        places = [cluster.data / "base" / str(oid), cluster.data / "pg_wal", cluster.archive]
        found = [path for place in places for path in sorted(place.rglob("*")) if path.is_file()]
        assert any(p.parent == cluster.archive for p in found), "the archive received nothing: the attack would prove nothing"
        return found

    return Store(cluster.url("safespace"), files, "PostgreSQL's base/<oid>, pg_wal and WAL archive", cluster.home)


def sqlite_store(folder: Path) -> Store:
    folder.mkdir()

    async def files() -> list[Path]:
        return [path for path in sorted(folder.iterdir()) if path.is_file()]

    url = f"sqlite+aiosqlite:///{folder / 'safespace.db'}"
    return Store(url, files, "SQLite's database, -wal, -shm and -journal files", folder)


@pytest.fixture(params=["sqlite", "postgresql"])
async def store(request: pytest.FixtureRequest, tmp_path: Path) -> Store:
    if request.param == "sqlite":
        return sqlite_store(tmp_path / "database")
    return await postgres_store(request.getfixturevalue("archiving_cluster"))


# --- the attack ---------------------------------------------------------------------------------------


async def test_closed_round_leaves_no_tally_state_in_the_files(store: Store, tmp_path: Path) -> None:
    settings = Settings(data_dir=str(tmp_path / "data"), database_url=store.database_url)  # key files: not searched
    engine = make_engine(settings)
    try:
        await upgrade(engine)
        sessionmaker = async_sessionmaker(engine, expire_on_commit=False)
        keyring = Keyring.load(settings.encryption_key_path)
        async with sessionmaker() as db:
            world = await make_community(db, teams=TEAMS, k=K)
            today = clock.now().astimezone(ZoneInfo("Europe/Madrid")).date()
            cadence = services.CadenceForm("weekly", today.weekday(), 1, 3, today.isoformat())
            survey = await services.create_survey(db, world.community.id, "Europe/Madrid", "Pulse", [PS.key], cadence)
            await db.commit()
            assert (await schedule.tick(sessionmaker, keyring, None, moment=clock.now())).opened == 1
            round_ = await db.scalar(select(Round).where(Round.survey_id == survey.id))
            people = {p.email: p.id for p in await db.scalars(select(Person).where(Person.email.in_(ORDER)))}
        big, small = str(world.teams["Big"]), str(world.teams["Small"])
        assert set(round_.population) == {services.COMMUNITY, big, small}, "Four is below k at open: no tally of its own"

        # Every state each tally row takes, computed without the database.
        empty = tally_rules.new_tally(PS.item_keys, PS.reverse_keys, PS.scale.points)
        team_of = {email: team for team, emails in TEAMS.items() for email in emails}
        groups = {services.COMMUNITY: "community", big: "team Big", small: "team Small"}
        tallies = {group: [empty] for group in groups}
        answered_by: dict[str, list[str]] = {group: [] for group in groups}
        given = known_answers()
        clear_while_open = 0  # answered-into tally rows read in the clear while the round was open
        rows = select(Tally.group_key, Tally.data).where(Tally.round_id == round_.id)
        for email in ORDER:
            answers, comment = given[email]
            async with sessionmaker() as db:  # one answer, one transaction
                await answering.submit(db, keyring, world.community.id, people[email], round_.id, form_of(answers, comment))
                await db.commit()
            for group in (services.COMMUNITY, str(world.teams[team_of[email]])):
                if group in tallies:
                    tallies[group].append(tally_rules.fold(tallies[group][-1], answers))
                    answered_by[group].append(email)
            # The oracle is right: every row the database holds in the clear is the state computed here.
            async with sessionmaker() as db:
                for group, data in (await db.execute(rows)).all():
                    if data[:1] == b"{":
                        assert data == msgspec.json.encode(tallies[group][-1]), f"{groups[group]}: the test's fold is not the product's"
                        clear_while_open += len(tallies[group]) > 1  # the empty tally of open is no one's answers
        states = {group: [msgspec.json.encode(t) for t in seq] for group, seq in tallies.items()}
        key_file = settings.encryption_key_path.parent / "round-keys" / f"{round_.id}.key"
        assert key_file.exists(), "the open round's states are sealed under a key file of its own"
        round_key = key_file.read_bytes()
        assert [len(s) - 1 for s in states.values()] == [len(ORDER), 6, 4]

        # Closed as the schedule closes it: close_round, then the scrub.
        report = await schedule.tick(sessionmaker, keyring, None, moment=round_.closes_at + timedelta(seconds=1))
        assert report.closed == 1
        async with sessionmaker() as db:
            kept = dict((await db.execute(rows)).all())
        assert kept == {services.COMMUNITY: states[services.COMMUNITY][-1], big: states[big][-1]}, (
            "close must keep exactly the community's and Big's final states, and delete Small's"
        )

        assert not key_file.exists(), "close must destroy the round's key: with it, every sealed state opens again"
        assert round_.id not in Keyring.load(settings.encryption_key_path).rounds.held()

        probes = Probes(legitimate=[states[big][0], states[services.COMMUNITY][-1], states[big][-1]])
        probes.add_states("community", states[services.COMMUNITY], answered_by[services.COMMUNITY], keep_final=True)
        probes.add_states("team Big", states[big], answered_by[big], keep_final=True)
        probes.add_states("team Small (hidden at close)", states[small], answered_by[small], keep_final=False)
        for n, (email, (_answers, comment)) in enumerate(given.items()):
            if comment:
                probes.add(f"the comment text of answer {n + 1} ({email})", comment.encode())
        probes.add("the round's key (it must never reach the database)", round_key)
        assert len(probes.found_by) >= len(ORDER) + 5 + 4, f"too few probes: {len(probes.found_by)}, left out {probes.left_out}"

        # Read while the service's connections are still open, as a copy of a live data directory
        # would be (SQLite's last connection to close would checkpoint and remove its -wal).
        files = await store.files()
        assert files, f"no files to read in {store.describe}"
        found = search(files, probes, store.root)
        assert not found, (
            f"{len(found)} of {len(probes.found_by)} probes for the round's per-answer states are still in "
            f"{store.describe} ({store.root}) after the close ({clear_while_open} reads of a tally row found a state "
            "in the clear while the round was open):\n" + "\n".join(f"- {what}:\n    " + "\n    ".join(where) for what, where in found.items())
        )
    finally:
        await engine.dispose()
