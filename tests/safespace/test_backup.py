"""`safespace backup` and `safespace restore`, run as an operator runs them, on SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
import os
import re
import subprocess
import sys
import tarfile
import uuid
from pathlib import Path

import msgspec
import pytest
from sqlalchemy import delete, func, select, text
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from safespace.app import create_app
from safespace.backup import read_manifest, revisions
from safespace.db.migrate import current_revision, upgrade
from safespace.db.models import metadata
from safespace.demo import FACILITATOR, NAME, ensure_demo
from safespace.demo_rounds import PAST_ROUNDS, SURVEY_TITLE
from safespace.identity import services as identity
from safespace.identity.models import Community, Membership
from safespace.privacy.crypto import Keyring
from safespace.pulse import answering
from safespace.pulse.models import Participation, Round, Survey, Tally
from safespace.settings import Settings
from surveys.instrument import builtin_instruments
from tests.conftest import browser_like
from tests.helpers import sign_in

PS = builtin_instruments()["psychological_safety"]


def env_of(settings: Settings) -> dict[str, str]:
    return {
        **os.environ,
        "SAFESPACE_DATA_DIR": settings.data_dir,
        "SAFESPACE_DATABASE_URL": settings.database_url,
        "SAFESPACE_BASE_URL": settings.base_url,
    }


def safespace(settings: Settings, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "safespace", *args], env=env_of(settings), capture_output=True, text=True, timeout=180
    )


def backed_up(settings: Settings, folder: Path) -> Path:
    done = safespace(settings, "backup", str(folder))
    assert done.returncode == 0, done.stderr
    assert "holds no keys" in done.stdout and "encryption.keys" in done.stdout
    path = Path(re.search(r" to (\S+\.tar\.gz) ", done.stdout).group(1))
    assert path.stat().st_mode & 0o077 == 0, "a backup is private data: mode 0600"
    return path


async def make_demo(settings: Settings, db: AsyncSession) -> None:
    """What `safespace demo` does (in-process: one interpreter start fewer per test)."""
    await ensure_demo(db, Keyring.load(settings.encryption_key_path))
    await db.commit()


async def page_numbers(settings: Settings, db: AsyncSession) -> dict[str, object]:
    """Every figure the demo's pages and API show, read over HTTP as its facilitator."""
    community_id = await db.scalar(select(Community.id).where(Community.name == NAME))
    survey_id = await db.scalar(select(Survey.id).where(Survey.community_id == community_id, Survey.title == SURVEY_TITLE))
    rounds = list(await db.scalars(select(Round.id).where(Round.survey_id == survey_id).order_by(Round.number)))
    numbers: dict[str, object] = {}
    async with browser_like(create_app(settings)) as client:
        await sign_in(client, db, FACILITATOR[1])

        async def json(url: str) -> object:
            response = await client.get(url)
            assert response.status_code == 200, (url, response.text)
            return response.json()

        api = f"/api/v1/communities/{community_id}"
        numbers["results"] = [await json(f"{api}/rounds/{r}/results") for r in rounds]
        numbers["teams"] = [await json(f"{api}/insights/rounds/{r}/teams") for r in rounds]
        numbers["trend"] = await json(f"{api}/insights/trend?survey={survey_id}")
        numbers["vitality"] = await json(f"{api}/insights/vitality")
        numbers["objectives"] = await json(f"{api}/insights/objectives")
        numbers["members"] = len(await json(f"{api}/members"))
        wall = (await client.get(f"/c/{community_id}/stories/")).text
        numbers["wall"] = (
            re.findall(r'<article class="card story" id="([^"]+)"', wall),
            re.findall(r'<span class="count">(\d+)</span>', wall),
            re.findall(r"<h2>([^<]*)</h2>", wall),  # the titles: the sealed text opens after the restore
        )
    await db.rollback()  # hold no transaction while restore replaces the tables
    assert len(numbers["results"]) == PAST_ROUNDS + 1 and numbers["members"] == 42 and len(numbers["wall"][0]) == 12
    return numbers


async def every_row(engine: AsyncEngine) -> dict[str, list[tuple]]:
    async with engine.connect() as connection:
        return {
            table.name: sorted((await connection.execute(select(table))).all(), key=repr)
            for table in metadata.sorted_tables
        }


async def test_restore_brings_back_every_number_the_pages_show(settings, db: AsyncSession, engine, tmp_path) -> None:
    await make_demo(settings, db)
    before = await page_numbers(settings, db)
    rows_before = await every_row(engine)
    path = backed_up(settings, tmp_path)
    manifest = read_manifest(path)
    assert manifest.database == ("sqlite" if settings.database_url.startswith("sqlite") else "postgresql")
    assert manifest.revision == await current_revision(engine)
    assert manifest.key_ids == [Keyring.load(settings.encryption_key_path).current_id] and manifest.open_rounds == 1

    # The database changes after the backup: another community, and the stories are gone.
    assert safespace(settings, "create-community", "--name", "Another", "--facilitator", "a@x.org").returncode == 0
    await db.execute(delete(metadata.tables["story"]))
    await db.commit()

    refused = safespace(settings, "restore", str(path))
    assert refused.returncode == 1 and "already holds data" in refused.stderr and "--force" in refused.stderr
    assert await db.scalar(select(func.count()).select_from(Community)) == 2  # nothing was touched
    await db.rollback()

    restored = safespace(settings, "restore", "--force", str(path))
    assert restored.returncode == 0, restored.stderr
    assert "Restored the" in restored.stdout and "no migration was needed" in restored.stdout
    await engine.dispose()  # PostgreSQL: the pooled connections prepared statements on the dropped tables
    assert await every_row(engine) == rows_before
    assert await page_numbers(settings, db) == before


async def test_backup_during_an_open_round_is_consistent(settings, db: AsyncSession, engine, tmp_path) -> None:
    await make_demo(settings, db)
    community = await db.scalar(select(Community).where(Community.name == NAME))
    open_round = await db.scalar(select(Round).where(Round.community_id == community.id, Round.closed.is_(False)))
    people = []
    for n in range(250):
        person, _ = await identity.get_or_create_person(db, f"late{n}@climate.example")
        identity.add_membership(db, community.id, person.id, None, "active")
        people.append(person.id)
    await db.commit()
    keyring = Keyring.load(settings.encryption_key_path)
    sessions = async_sessionmaker(engine, expire_on_commit=False)
    answers = {f"psychological_safety.{key}": "6" for key in PS.item_keys}
    answered_live, backup_done = [], asyncio.Event()

    async def keep_answering() -> None:
        for n, person_id in enumerate(people):
            if backup_done.is_set():
                return
            async with sessions() as session:
                form = answers | ({"psychological_safety.comment": f"note {n}"} if n % 3 == 0 else {})
                await answering.submit(session, keyring, community.id, person_id, open_round.id, form)
                await session.commit()
            answered_live.append(person_id)
            await asyncio.sleep(0.03)

    answerer = asyncio.create_task(keep_answering())
    while len(answered_live) < 10:
        if answerer.done():
            answerer.result()  # it failed: say why instead of waiting for ever
        await asyncio.sleep(0.01)
    backup = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "safespace", "backup", str(tmp_path), env=env_of(settings),
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    out, err = await backup.communicate()
    backup_done.set()
    await answerer
    assert backup.returncode == 0, err.decode()
    assert "1 round(s) are open" in out.decode()

    path = next(tmp_path.glob("*.tar.gz"))
    restored = safespace(settings, "restore", "--force", str(path))
    assert restored.returncode == 0, restored.stderr
    await engine.dispose()
    async with sessions() as session:
        answered = await session.scalar(
            select(func.count()).select_from(Participation).where(Participation.round_id == open_round.id)
        )
        tallies = dict(
            (await session.execute(select(Tally.group_key, Tally.respondents).where(Tally.round_id == open_round.id))).all()
        )
        team_sizes = dict(
            (
                await session.execute(
                    select(Membership.team_id, func.count())
                    .join(Participation, Participation.person_id == Membership.person_id)
                    .where(Participation.round_id == open_round.id, Membership.community_id == community.id)
                    .group_by(Membership.team_id)
                )
            ).all()
        )
    # The ledger and every tally are from the same moment, though answers kept landing meanwhile.
    assert 10 <= answered < len(answered_live), "the backup was not taken while members were answering"
    assert tallies["community"] == answered
    for group_key, respondents in tallies.items():
        if group_key != "community":
            assert respondents == team_sizes.get(uuid.UUID(group_key), 0)


async def test_restore_refuses_a_key_file_that_cannot_open_the_backup(settings, db: AsyncSession, engine, tmp_path) -> None:
    await make_demo(settings, db)
    path = backed_up(settings, tmp_path)
    keys = settings.encryption_key_path
    saved = keys.read_bytes()
    keys.unlink()
    missing = safespace(settings, "restore", "--force", str(path))
    assert missing.returncode == 1 and "there is no key file" in missing.stderr and "Nothing was changed" in missing.stderr
    assert not keys.exists(), "restore must not make up a new key file"
    Keyring.load(keys)  # a new, different key
    other = safespace(settings, "restore", "--force", str(path))
    assert other.returncode == 1 and "cannot open" in other.stderr and "Nothing was changed" in other.stderr
    keys.write_bytes(saved)  # the right key file: restoring works (the other tests)


async def test_an_older_backup_is_migrated_after_restoring(settings, db: AsyncSession, engine, tmp_path) -> None:
    await db.close()
    async with engine.begin() as connection:
        await connection.run_sync(metadata.drop_all)
        await connection.execute(text("DROP TABLE alembic_version"))
    await upgrade(engine, "0004")
    old = backed_up(settings, tmp_path)
    assert read_manifest(old).revision == "0004"
    await upgrade(engine)
    await make_demo(settings, db)

    restored = safespace(settings, "restore", "--force", str(old))
    assert restored.returncode == 0, restored.stderr
    head = revisions()[0]
    assert head != "0004" and f"Migrated it from revision 0004 to {head}" in restored.stdout
    await engine.dispose()
    assert await current_revision(engine) == head
    assert sum(len(rows) for rows in (await every_row(engine)).values()) == 0  # what the old backup held: nothing


async def test_backup_keeps_no_row_version_the_database_has_replaced(settings, db: AsyncSession, engine, tmp_path) -> None:
    """P4: the copy carries the database as it is, not the old page images of SQLite's write-ahead log."""
    community = await identity.create_community(
        db, (await identity.get_or_create_person(db, "f@x.org"))[0].id, "Marsh", "OLDVISION-7f3a9c", 5, "UTC"
    )
    await db.commit()
    community.vision = "NEWVISION-2b8e41"
    await db.commit()
    if settings.database_url.startswith("sqlite"):
        live = Path(settings.database_url.removeprefix("sqlite+aiosqlite:///"))
        # Read by another process: closing any descriptor of the file here would drop this
        # process's SQLite locks on it (POSIX), and the pooled connections would lose track.
        wal = live.with_name(live.name + "-wal")
        files = subprocess.run(["cat", str(live), *([str(wal)] if wal.exists() else [])], capture_output=True).stdout
        assert b"OLDVISION-7f3a9c" in files, "the live files still hold the old version (or this test proves nothing)"
    path = backed_up(settings, tmp_path)
    with tarfile.open(path) as archive:
        kind = read_manifest(path).database
        stored = archive.extractfile(f"database.{'sqlite' if kind == 'sqlite' else 'pgdump'}").read()
    if kind == "postgresql":
        dump = tmp_path / "db.pgdump"
        dump.write_bytes(stored)
        stored = subprocess.run(["pg_restore", "--file=-", str(dump)], capture_output=True, check=True).stdout
    assert b"NEWVISION-2b8e41" in stored
    assert b"OLDVISION-7f3a9c" not in stored


def test_manifest_is_json_a_person_can_read(tmp_path) -> None:
    from safespace.backup import FORMAT, BackupError, Manifest, write_archive

    database = tmp_path / "db"
    database.write_bytes(b"x")
    manifest = Manifest(FORMAT, 1, "sqlite", "0005", "2026-01-01T00:00:00+00:00", {"person": 2}, [], 0)
    write_archive(tmp_path / "b.tar.gz", manifest, database)
    with tarfile.open(tmp_path / "b.tar.gz") as archive:
        assert msgspec.json.decode(archive.extractfile("manifest.json").read())["database"] == "sqlite"
    import hashlib

    # The manifest written carries the database member's checksum, which restore checks.
    assert read_manifest(tmp_path / "b.tar.gz") == msgspec.structs.replace(manifest, database_sha256=hashlib.sha256(b"x").hexdigest())
    (tmp_path / "junk.tar.gz").write_bytes(b"not a tar")
    with pytest.raises(BackupError, match="not a Safespace backup"):
        read_manifest(tmp_path / "junk.tar.gz")


def _damaged_copy(path: Path, folder: Path, damage: str) -> Path:
    """The backup at `path` with one kind of damage: its database member truncated to 90%, a byte
    flipped at 70%, replaced by random bytes (each with a manifest checksum that matches the damage,
    so the restore's own checks must catch it), a checksum that does not match, or a manifest whose
    row counts disagree with the database."""
    from safespace.backup import archive as backup

    manifest = read_manifest(path)
    member = backup.DATABASE_MEMBER[manifest.database]
    with tarfile.open(path, "r:*") as archive:
        data = archive.extractfile(member).read()
    if damage == "truncated":
        data = data[: len(data) * 9 // 10]
    elif damage == "bit flip":
        at = len(data) * 7 // 10
        data = data[:at] + bytes([data[at] ^ 0x10]) + data[at + 1 :]
    elif damage == "garbage":
        data = os.urandom(len(data))
    elif damage == "counts":
        manifest = msgspec.structs.replace(manifest, rows=manifest.rows | {"person": manifest.rows["person"] + 1})
    database = folder / f"damaged-{damage.replace(' ', '-')}"
    database.write_bytes(data)
    damaged = folder / f"{database.name}.tar.gz"
    if damage == "checksum":  # the member changed after the manifest was written
        database.write_bytes(data[:-1] + bytes([data[-1] ^ 1]))
        with tarfile.open(damaged, "w:gz") as archive:
            encoded = msgspec.json.encode(manifest)
            info = tarfile.TarInfo(backup.MANIFEST)
            info.size = len(encoded)
            archive.addfile(info, __import__("io").BytesIO(encoded))
            archive.add(database, arcname=member)
        return damaged
    backup.write_archive(damaged, manifest, database)  # a checksum of the damaged member
    return damaged


async def test_a_damaged_backup_leaves_the_database_as_it_was(settings, db: AsyncSession, engine, tmp_path) -> None:
    """`restore --force` with a damaged backup once left PostgreSQL with 0 tables, or with tables
    without keys and a tenth of the rows, and said it had rolled back. Now every check runs
    before the commit: the database keeps every row, and the message says nothing changed. One
    backup, each kind of damage restored from in turn."""
    # SQLite restores a checked copy (tests/faults covers damaged SQLite files; issue 21 item 6).
    damages = ["counts", "checksum"] if settings.is_sqlite else ["truncated", "bit flip", "garbage", "counts", "checksum"]
    await make_demo(settings, db)
    await db.rollback()
    path = backed_up(settings, tmp_path)
    assert safespace(settings, "create-community", "--name", "Made after the backup", "--facilitator", "n@x.org").returncode == 0
    rows_before = await every_row(engine)
    for damage in damages:
        await engine.dispose()
        failed = safespace(settings, "restore", "--force", str(_damaged_copy(path, tmp_path, damage)))
        assert failed.returncode == 1, (damage, failed.stdout + failed.stderr)
        said = failed.stderr
        assert "Traceback" not in said and ("as it was" in said or "Nothing was changed" in said), (damage, said)
        assert "damaged" in said or "does not match" in said, (damage, said)
        assert await every_row(engine) == rows_before, f"a refused restore of a backup with {damage} changed the database"
        if not settings.is_sqlite:
            async with engine.connect() as connection:
                keys = await connection.scalar(text(
                    "SELECT count(*) FROM pg_constraint c JOIN pg_namespace n ON n.oid = c.connamespace "
                    "WHERE n.nspname = 'public' AND c.contype = 'p'"))  # fmt: skip
            assert keys == len(metadata.sorted_tables) + 1, damage  # every table's primary key, and alembic_version's
