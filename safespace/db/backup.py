"""`safespace backup` and `safespace restore`: one file holding a consistent snapshot of the database.

The file is a gzipped tar archive of two members: `manifest.json` (which database kind, the Alembic
revision, row counts, one sealed sample per encryption key in use) and the database itself (a
SQLite file made with the online backup API, or a `pg_dump` custom-format dump). It holds no key:
encryption.keys and secret.key are backed up apart from the data, so that one stolen file does not
open the comments and stories (P6). Restore checks the data directory's key file against the
backup before it changes anything.
"""

from __future__ import annotations

import asyncio
import contextlib
import glob
import hashlib
import io
import os
import re
import shutil
import sqlite3
import subprocess
import tarfile
import tempfile
import time
import zlib
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import msgspec
from sqlalchemy import func, inspect, select, text
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, AsyncSession, create_async_engine

from safespace.settings import Settings

FORMAT = "safespace-backup"
FORMAT_VERSION = 1
MANIFEST = "manifest.json"
DATABASE_MEMBER = {"sqlite": "database.sqlite", "postgresql": "database.pgdump"}


class BackupError(Exception):
    """Something the operator can fix; the message says what to do. Nothing was changed."""


class Seal(msgspec.Struct):
    """One sealed value of the backup, so restore can try the key file before it touches anything."""

    table: str
    column: str
    aad: str
    sealed: str  # hex


class Manifest(msgspec.Struct):
    format: str
    version: int
    database: str  # "sqlite" | "postgresql"
    revision: str
    taken_at: str  # UTC, to the second
    rows: dict[str, int]
    seals: list[Seal]
    open_rounds: int
    # SHA-256 of the database member; restore refuses a member that does not match (backups made
    # before this field existed have "" and are checked by their row counts only).
    database_sha256: str = ""

    @property
    def key_ids(self) -> list[int]:
        return sorted({int.from_bytes(bytes.fromhex(s.sealed)[1:5], "big") for s in self.seals})

    @property
    def row_total(self) -> int:
        return sum(self.rows.values())


@dataclass
class Facts:
    revision: str | None
    rows: dict[str, int]
    seals: list[Seal]
    open_rounds: int


@dataclass
class BackupReport:
    path: Path
    manifest: Manifest
    size: int
    seconds: float


@dataclass
class RestoreReport:
    manifest: Manifest
    migrated_to: str | None  # None: the backup was already at the current revision
    seconds: float


# --- what a database holds -------------------------------------------------------------------------


async def _facts(connection: AsyncConnection) -> Facts:
    """Revision, row counts, sealed samples and open rounds, read in the caller's transaction."""
    from safespace.privacy.crypto import FORMAT_VERSION, associated_data
    from safespace.privacy.rotation import SEALED
    from safespace.pulse.models import Round

    tables = sorted(await connection.run_sync(lambda c: inspect(c).get_table_names()))
    rows = {t: (await connection.execute(text(f'SELECT count(*) FROM "{t}"'))).scalar_one() for t in tables}
    revision = None
    if "alembic_version" in tables:
        revision = (await connection.execute(text("SELECT version_num FROM alembic_version"))).scalar()
    db = AsyncSession(bind=connection)
    seals = []
    for model, table, column, row_ref in SEALED:
        if table not in tables:
            continue  # a table a later revision adds
        sealed_column = getattr(model, column)
        key_id = func.substr(sealed_column, 2, 4)  # the key id bytes of the sealed format (crypto.py)
        # Only the keyring's seals: an open round's pending comments are under its round key.
        keyring_sealed = func.substr(sealed_column, 1, 1) == bytes([FORMAT_VERSION])
        for (raw_key_id,) in (await db.execute(select(key_id).where(keyring_sealed).distinct())).all():
            row = await db.scalar(select(model).where(key_id == raw_key_id, keyring_sealed).limit(1))
            aad = associated_data(table, column, row_ref(row)).decode()
            seals.append(Seal(table, column, aad, getattr(row, column).hex()))
    open_rounds = 0
    if "round" in tables:
        open_rounds = await db.scalar(select(func.count()).select_from(Round).where(Round.closed.is_(False))) or 0
    return Facts(revision, rows, seals, open_rounds)


async def check_key_file(settings: Settings) -> None:
    """Before `serve` or `tick` start: the database's sealed values (one per key in use) must open
    with the data directory's key file. A missing file would otherwise be made afresh, and new
    comments and stories sealed with a key the old data does not know (BackupError if not)."""
    from safespace.db.engine import make_engine

    engine = make_engine(settings)
    try:
        async with engine.connect() as connection:
            facts = await _facts(connection)
    finally:
        await engine.dispose()
    _check_keys(facts.seals, settings.encryption_key_path, "the database", "Safespace did not start.", "start it again")


def _check_keys(
    seals: list[Seal], key_path: Path, where: str, after: str = "Nothing was changed.", then: str = "run `safespace restore` again"
) -> None:
    """Every key the data was sealed with must be in the data directory's key file."""
    from safespace.privacy.crypto import Keyring, KeyringError

    if not seals:
        return
    if not key_path.exists():
        raise BackupError(
            f"{where[0].upper()}{where[1:]} holds encrypted comments or stories, but there is no key file at {key_path}. "
            "Put back the encryption.keys from your key backup (or point SAFESPACE_ENCRYPTION_KEY_FILE "
            f"at it), then {then}. " + after
        )
    keyring = Keyring.load(key_path)
    for seal in seals:
        try:
            keyring.open(bytes.fromhex(seal.sealed), seal.aad.encode())
        except KeyringError as exc:
            key_id = int.from_bytes(bytes.fromhex(seal.sealed)[1:5], "big")
            raise BackupError(
                f"The key file {key_path} cannot open {where}'s {seal.table}.{seal.column} (sealed with key "
                f"{key_id}: {exc}). Put back the encryption.keys that was in use when the backup was taken, "
                f"then {then}. " + after
            ) from None


def _revisions() -> tuple[str, list[str]]:
    """The code's head revision and every revision it knows."""
    from alembic.script import ScriptDirectory

    from safespace.db.migrate import alembic_config

    scripts = ScriptDirectory.from_config(alembic_config())
    return scripts.get_current_head(), [s.revision for s in scripts.walk_revisions()]


@contextlib.asynccontextmanager
async def _engine(url: str) -> AsyncIterator[AsyncEngine]:
    # No app pragmas: the copy is only read, and must stay out of WAL mode.
    engine = create_async_engine(url, hide_parameters=True)
    try:
        yield engine
    finally:
        await engine.dispose()


# --- the archive -----------------------------------------------------------------------------------


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        while chunk := fh.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def _write_archive(destination: Path, manifest: Manifest, database_file: Path) -> int:
    """Written beside the destination and renamed into place: never a half-written backup."""
    manifest = msgspec.structs.replace(manifest, database_sha256=_sha256(database_file))
    partial = destination.with_name(f".{destination.name}.partial")
    fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)  # the data is private
    try:
        with os.fdopen(fd, "wb") as raw, tarfile.open(fileobj=raw, mode="w:gz", compresslevel=6) as archive:
            encoded = msgspec.json.encode(manifest)
            info = tarfile.TarInfo(MANIFEST)
            info.size, info.mode, info.mtime = len(encoded), 0o600, int(time.time())
            archive.addfile(info, io.BytesIO(encoded))
            archive.add(database_file, arcname=DATABASE_MEMBER[manifest.database], recursive=False)
        os.replace(partial, destination)
    except BaseException:
        partial.unlink(missing_ok=True)
        raise
    return destination.stat().st_size


def read_manifest(path: Path) -> Manifest:
    try:
        with tarfile.open(path, "r:*") as archive:
            member = archive.extractfile(MANIFEST)
            manifest = msgspec.json.decode(member.read(), type=Manifest) if member else None
    except (tarfile.TarError, KeyError, OSError, EOFError, zlib.error, msgspec.ValidationError, msgspec.DecodeError) as exc:
        if isinstance(exc, EOFError):
            raise BackupError(f"{path} is damaged: it ends too soon (a copy cut short?). Nothing was changed.") from None
        # One line: tarfile's message lists every compression it tried, one per line.
        reason = "not a tar archive, or a damaged one" if isinstance(exc, tarfile.ReadError) else " ".join(str(exc).split())
        raise BackupError(f"{path} is not a Safespace backup ({reason}). Nothing was changed.") from None
    if manifest is None or manifest.format != FORMAT:
        raise BackupError(f"{path} is not a Safespace backup (no manifest).")
    if manifest.version > FORMAT_VERSION:
        raise BackupError(f"{path} was written by a newer Safespace (backup format {manifest.version}); upgrade first.")
    return manifest


def _extract_database(path: Path, manifest: Manifest, folder: Path) -> Path:
    target = folder / DATABASE_MEMBER[manifest.database]
    try:
        with tarfile.open(path, "r:*") as archive:
            source = archive.extractfile(DATABASE_MEMBER[manifest.database])
            if source is None:
                raise BackupError(f"{path} has no database in it. Nothing was changed.")
            with source, open(target, "wb") as out:  # by name, never extractall: no path from the archive is trusted
                shutil.copyfileobj(source, out, 1 << 20)
    except (tarfile.TarError, KeyError, EOFError, zlib.error) as exc:  # cut short (EOFError) or garbled
        raise BackupError(f"{path} is damaged: its database cannot be read ({exc.__class__.__name__}). Nothing was changed.") from None
    if manifest.database_sha256 and _sha256(target) != manifest.database_sha256:
        raise BackupError(f"{path} is damaged: its database does not match the checksum in its manifest. Nothing was changed.")
    return target


def destination_for(path: Path) -> Path:
    if path.is_dir():
        return path / f"safespace-{datetime.now(UTC):%Y%m%d-%H%M%S}.tar.gz"
    if path.exists():
        raise BackupError(f"{path} already exists; give a new file name (or a folder to put the backup in).")
    if not path.parent.is_dir():
        raise BackupError(f"The folder {path.parent} does not exist; create it first.")
    return path


def _manifest(kind: str, facts: Facts) -> Manifest:
    if facts.revision is None:
        raise BackupError("The database has no Safespace tables yet; run `safespace migrate` first.")
    return Manifest(FORMAT, FORMAT_VERSION, kind, facts.revision, datetime.now(UTC).isoformat(timespec="seconds"),
                    facts.rows, facts.seals, facts.open_rounds)  # fmt: skip


# --- backup ----------------------------------------------------------------------------------------


async def take(settings: Settings, path: Path) -> BackupReport:
    started = time.perf_counter()
    destination = destination_for(path)
    with tempfile.TemporaryDirectory(prefix=".safespace-backup-", dir=destination.parent) as folder:
        if settings.is_sqlite:
            database_file, manifest = await _sqlite_snapshot(settings, Path(folder) / "database.sqlite")
        else:
            database_file, manifest = await _postgres_snapshot(settings, Path(folder) / "database.pgdump")
        size = _write_archive(destination, manifest, database_file)
    return BackupReport(destination, manifest, size, time.perf_counter() - started)


def _sqlite_path(settings: Settings) -> Path:
    return Path(make_url(settings.database).database or "")


async def _sqlite_snapshot(settings: Settings, copy: Path) -> tuple[Path, Manifest]:
    source_path = _sqlite_path(settings)
    if not source_path.is_file():
        raise BackupError(f"There is no database at {source_path}; nothing to back up.")
    source = sqlite3.connect(source_path, timeout=30)
    try:
        target = sqlite3.connect(copy)
        try:
            source.execute("PRAGMA busy_timeout=30000")
            source.backup(target)  # one step: a single read transaction, so a consistent snapshot
            # A fresh, compacted file in rollback-journal mode: no free pages, no write-ahead log,
            # so no page image of a row that a close or a release has since scrubbed (P4).
            target.execute("PRAGMA journal_mode=DELETE")
            target.execute("PRAGMA secure_delete=ON")
            target.execute("VACUUM")
            if target.execute("PRAGMA integrity_check").fetchone()[0] != "ok":
                raise BackupError("The copy failed SQLite's integrity check; the database may be damaged.")
        finally:
            target.close()
    finally:
        source.close()
    # Everything the manifest says is read from the copy itself, so it matches the snapshot.
    async with _engine(f"sqlite+aiosqlite:///{copy}") as engine, engine.connect() as connection:
        facts = await _facts(connection)
    return copy, _manifest("sqlite", facts)


def _pg_environment(settings: Settings) -> dict[str, str]:
    """libpq's variables from the SQLAlchemy URL (the password stays off the command line)."""
    url = make_url(settings.database)
    env = {**os.environ, "PGDATABASE": url.database or "", "PGCONNECT_TIMEOUT": "10"}
    for variable, value in (("PGHOST", url.host), ("PGPORT", url.port), ("PGUSER", url.username), ("PGPASSWORD", url.password)):
        if value:
            env[variable] = str(value)
    ssl = url.query.get("sslmode") or url.query.get("ssl")
    if isinstance(ssl, str) and ssl in {"disable", "allow", "prefer", "require", "verify-ca", "verify-full"}:
        env["PGSSLMODE"] = ssl
    return env


def postgres_tool(name: str, server_major: int) -> Path:
    """The client program for this server: the same major version first, else a newer one."""
    candidates = [f"/usr/lib/postgresql/{server_major}/bin/{name}", shutil.which(name) or ""]
    def version_of(path: str) -> float:
        found = re.search(r"/postgresql/([\d.]+)/", path)
        return float(found.group(1)) if found else 0.0

    candidates += sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"), key=version_of, reverse=True)
    for candidate in filter(None, candidates):
        try:
            shown = subprocess.run([candidate, "--version"], capture_output=True, text=True, timeout=10).stdout
        except OSError:
            continue
        found = re.search(r"(\d+)(?:\.\d+)?", shown)
        if found and int(found.group(1)) >= server_major:
            return Path(candidate)
    raise BackupError(
        f"No {name} for PostgreSQL {server_major} or newer was found on PATH or under /usr/lib/postgresql/*/bin; "
        f"install the PostgreSQL {server_major} client programs (Debian: postgresql-client-{server_major})."
    )


async def _server_major(connection: AsyncConnection) -> int:
    return int((await connection.execute(text("SHOW server_version_num"))).scalar_one()) // 10000


async def _postgres_snapshot(settings: Settings, dump: Path) -> tuple[Path, Manifest]:
    from safespace.db.engine import make_engine

    engine = make_engine(settings)
    try:
        async with engine.connect() as connection:
            # pg_dump reads the very snapshot this transaction reads the manifest from.
            connection = await connection.execution_options(isolation_level="REPEATABLE READ", postgresql_readonly=True)
            async with connection.begin():
                pg_dump = postgres_tool("pg_dump", await _server_major(connection))
                snapshot = (await connection.execute(text("SELECT pg_export_snapshot()"))).scalar_one()
                facts = await _facts(connection)
                command = [str(pg_dump), "--format=custom", "--schema=public", f"--snapshot={snapshot}", f"--file={dump}"]
                done = await asyncio.to_thread(
                    subprocess.run, command, env=_pg_environment(settings), capture_output=True, text=True
                )
                if done.returncode != 0:
                    raise BackupError(f"pg_dump failed: {done.stderr.strip()}")
    except OSError as exc:
        raise BackupError(f"Cannot reach the database ({exc}). Check SAFESPACE_DATABASE_URL.") from None
    finally:
        await engine.dispose()
    return dump, _manifest("postgresql", facts)


# --- restore ---------------------------------------------------------------------------------------


async def _holds_data(engine: AsyncEngine) -> dict[str, int]:
    async with engine.connect() as connection:
        rows = (await _facts(connection)).rows
    return {table: n for table, n in rows.items() if n and table != "alembic_version"}


async def restore(settings: Settings, path: Path, force: bool) -> RestoreReport:
    from safespace.db.engine import make_engine
    from safespace.db.migrate import upgrade

    started = time.perf_counter()
    manifest = read_manifest(path)
    kind = "sqlite" if settings.is_sqlite else "postgresql"
    if manifest.database != kind:
        raise BackupError(
            f"{path} is a {manifest.database} backup, but this installation uses {kind} "
            "(SAFESPACE_DATABASE_URL). Restore it into the same kind of database."
        )
    head, known = _revisions()
    if manifest.revision not in known:
        raise BackupError(
            f"{path} is at revision {manifest.revision}, which this Safespace does not know (it is newer); "
            "install the Safespace version that wrote it, then restore."
        )
    _check_keys(manifest.seals, settings.encryption_key_path, "the backup")

    engine = make_engine(settings)
    try:
        if not force and (holding := await _holds_data(engine)):
            shown = ", ".join(f"{table} ({n})" for table, n in sorted(holding.items()))
            raise BackupError(
                f"The database already holds data: {shown}. Restoring replaces all of it; "
                "run `safespace restore --force PATH` if that is what you want (back it up first)."
            )
        with tempfile.TemporaryDirectory(prefix=".safespace-restore-", dir=settings.data_dir) as folder:
            database_file = _extract_database(path, manifest, Path(folder))
            if kind == "sqlite":
                await engine.dispose()
                await _sqlite_restore(settings, manifest, database_file)
            else:
                await _postgres_restore(settings, engine, manifest, database_file)
        migrated_to = None
        if manifest.revision != head:
            await upgrade(engine)
            migrated_to = head
        async with engine.connect() as connection:
            facts = await _facts(connection)
        _check_keys(facts.seals, settings.encryption_key_path, "the restored database",
                    "The database was restored, but its comments and stories cannot be read with this key file.")
    finally:
        await engine.dispose()
    return RestoreReport(manifest, migrated_to, time.perf_counter() - started)


def _same_rows(manifest: Manifest, facts: Facts, where: str, after: str = "") -> None:
    if facts.rows != manifest.rows:
        differ = sorted(t for t in set(facts.rows) | set(manifest.rows) if facts.rows.get(t) != manifest.rows.get(t))
        raise BackupError(f"{where} does not match the backup's manifest (tables {', '.join(differ)}); the file is damaged.{after}")


async def _sqlite_restore(settings: Settings, manifest: Manifest, copy: Path) -> None:
    # The extracted copy is checked before anything is written to the real database.
    async with _engine(f"sqlite+aiosqlite:///{copy}") as engine, engine.connect() as connection:
        _same_rows(manifest, await _facts(connection), "The backup's database", " Nothing was changed.")
    source = sqlite3.connect(copy)
    try:
        target = sqlite3.connect(_sqlite_path(settings), timeout=30)
        try:
            target.execute("PRAGMA busy_timeout=30000")
            target.execute("PRAGMA secure_delete=ON")
            source.backup(target)  # through SQLite's locks, so a server that is still running sees it whole
            # The write-ahead log now holds the replaced database's pages: checkpoint them away.
            target.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        finally:
            target.close()
    finally:
        source.close()


# Everything in the public schema goes, in the same transaction as the restore: a database that a
# newer revision migrated keeps no table the older backup lacks, and a failed restore changes nothing.
_DROP_PUBLIC = """
SET LOCAL lock_timeout = '60s';
DO $$
DECLARE r record;
BEGIN
  FOR r IN SELECT c.relname, c.relkind FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
           WHERE n.nspname = 'public' AND c.relkind IN ('r', 'p', 'v', 'm', 'S') LOOP
    EXECUTE format(CASE r.relkind WHEN 'v' THEN 'DROP VIEW IF EXISTS public.%I CASCADE'
                                  WHEN 'm' THEN 'DROP MATERIALIZED VIEW IF EXISTS public.%I CASCADE'
                                  WHEN 'S' THEN 'DROP SEQUENCE IF EXISTS public.%I CASCADE'
                                  ELSE 'DROP TABLE IF EXISTS public.%I CASCADE' END, r.relname);
  END LOOP;
  FOR r IN SELECT t.typname FROM pg_type t JOIN pg_namespace n ON n.oid = t.typnamespace
           WHERE n.nspname = 'public' AND t.typtype IN ('e', 'd') LOOP
    EXECUTE format('DROP TYPE IF EXISTS public.%I CASCADE', r.typname);
  END LOOP;
END $$;
"""


CHECK_MARK = "safespace-restore-check"


def _expected_structure(listing: str) -> dict[str, int]:
    """What `pg_restore --list` says the restored schema will have: primary key and unique
    constraints, foreign keys, and other indexes. Read from the archive's table of contents, which
    a truncated or damaged archive still carries whole."""
    found = {"keys": 0, "foreign keys": 0, "indexes": 0}
    for line in listing.splitlines():
        if line.startswith(";") or " public " not in line:
            continue
        entry = line.split(";", 1)[-1].split()
        if entry[2:4] == ["FK", "CONSTRAINT"]:
            found["foreign keys"] += 1
        elif entry[2:3] == ["CONSTRAINT"]:
            found["keys"] += 1
        elif entry[2:3] == ["INDEX"]:
            found["indexes"] += 1
    return found


def _verification(manifest: Manifest, expected: dict[str, int]) -> str:
    """SQL run after the restored script, in its transaction: any difference from the manifest or
    the archive's table of contents raises, and psql rolls the whole restore back. (psql
    --single-transaction commits when its input simply ends, as a truncated dump's does.)"""

    def check(value_sql: str, want: int | str, what: str) -> str:
        want_sql = str(want) if isinstance(want, int) else "'" + want.replace("'", "''") + "'"
        said = str(want).replace("'", "''")
        return (
            f"  SELECT ({value_sql})::text INTO found;\n"
            f"  IF found IS DISTINCT FROM ({want_sql})::text THEN\n"
            f"    RAISE EXCEPTION '{CHECK_MARK}: {what}: % in the restored database, {said} in the backup', coalesce(found, 'none');\n"
            "  END IF;\n"
        )

    parts = ["DO $$\nDECLARE found text;\nBEGIN\n"]
    parts.append(check("SELECT version_num FROM public.alembic_version", manifest.revision, "migration revision"))
    for table, rows in sorted(manifest.rows.items()):
        quoted = '"' + table.replace('"', '""') + '"'
        parts.append(check(f"SELECT count(*) FROM public.{quoted}", rows, f"rows of {table.replace(chr(39), '')}"))
    constraints = "SELECT count(*) FROM pg_constraint c JOIN pg_namespace n ON n.oid = c.connamespace WHERE n.nspname = 'public'"
    parts.append(check(f"{constraints} AND c.contype IN ('p', 'u')", expected["keys"], "primary keys and unique constraints"))
    parts.append(check(f"{constraints} AND c.contype = 'f'", expected["foreign keys"], "foreign keys"))
    parts.append(check("SELECT count(*) FROM pg_indexes WHERE schemaname = 'public'", expected["keys"] + expected["indexes"], "indexes"))
    parts.append("END $$;")
    return "".join(parts)


async def _postgres_restore(settings: Settings, engine: AsyncEngine, manifest: Manifest, dump: Path) -> None:
    """Checked before anything is touched (the archive's table of contents must read), then loaded
    in one transaction that verifies itself before it commits (_verification): on any failure
    the database is as it was."""
    async with engine.connect() as connection:
        major = await _server_major(connection)
    await engine.dispose()  # our own idle connections would otherwise wait on the drop
    pg_restore, psql = postgres_tool("pg_restore", major), postgres_tool("psql", major)
    env = _pg_environment(settings)
    listing = await asyncio.to_thread(subprocess.run, [str(pg_restore), "--list", str(dump)], capture_output=True, text=True, env=env)
    if listing.returncode != 0:
        raise BackupError(
            f"The backup's database is damaged (pg_restore cannot read it: {listing.stderr.strip()[-500:]}). Nothing was changed."
        )
    verification = _verification(manifest, _expected_structure(listing.stdout))

    def run() -> tuple[int, str, int, str]:
        # --schema=public: the objects in it, not the schema itself (which the database already has)
        script = subprocess.Popen(
            [str(pg_restore), "--no-owner", "--no-privileges", "--schema=public", "--file=-", str(dump)],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env,
        )  # fmt: skip
        loaded = subprocess.run(
            [str(psql), "-X", "-q", "-v", "ON_ERROR_STOP=1", "--single-transaction", "-c", _DROP_PUBLIC, "-f", "-", "-c", verification],
            stdin=script.stdout, capture_output=True, text=True, env=env,
        )  # fmt: skip
        script.stdout.close()
        script_errors = script.stderr.read().decode(errors="replace")
        script.wait()
        return loaded.returncode, loaded.stderr, script.returncode, script_errors

    loaded, loaded_errors, read, read_errors = await asyncio.to_thread(run)
    if loaded != 0:  # psql stopped at an error inside its single transaction: nothing was committed
        if CHECK_MARK in loaded_errors:
            found = loaded_errors.split(f"{CHECK_MARK}: ", 1)[1].splitlines()[0]
            reason = f"the backup is damaged ({found})" + (f"; pg_restore said: {read_errors.strip()[-300:]}" if read else "")
        elif read:
            reason = f"the backup is damaged (pg_restore: {read_errors.strip()[-1000:]})"
        else:
            reason = loaded_errors.strip()[-2000:]
        raise BackupError(f"Restoring into PostgreSQL failed, and was rolled back (the database is as it was): {reason}")
    if read != 0:  # every check passed and it committed, but pg_restore complained on the way
        raise BackupError(
            "The database was restored and matches the backup (revision, rows, keys and indexes), but pg_restore "
            f"reported: {read_errors.strip()[-2000:]}"
        )
    async with engine.connect() as connection:
        _same_rows(manifest, await _facts(connection), "The restored database")

