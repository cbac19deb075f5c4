"""`safespace restore`: the archive verified before anything changes, then loaded and checked."""

from __future__ import annotations

import asyncio
import sqlite3
import subprocess
import tempfile
import time
from pathlib import Path

from sqlalchemy.ext.asyncio import AsyncEngine

from safespace.backup.archive import (
    BackupError,
    Facts,
    Manifest,
    RestoreReport,
    check_keys,
    engine_for,
    extract_database,
    facts_of,
    pg_environment,
    postgres_tool,
    read_manifest,
    revisions,
    server_major,
    sqlite_path,
)
from safespace.settings import Settings


async def _holds_data(engine: AsyncEngine) -> dict[str, int]:
    async with engine.connect() as connection:
        rows = (await facts_of(connection)).rows
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
    head, known = revisions()
    if manifest.revision not in known:
        raise BackupError(
            f"{path} is at revision {manifest.revision}, which this Safespace does not know (it is newer); "
            "install the Safespace version that wrote it, then restore."
        )
    check_keys(manifest.seals, settings.encryption_key_path, "the backup")

    engine = make_engine(settings)
    try:
        if not force and (holding := await _holds_data(engine)):
            shown = ", ".join(f"{table} ({n})" for table, n in sorted(holding.items()))
            raise BackupError(
                f"The database already holds data: {shown}. Restoring replaces all of it; "
                "run `safespace restore --force PATH` if that is what you want (back it up first)."
            )
        with tempfile.TemporaryDirectory(prefix=".safespace-restore-", dir=settings.data_dir) as folder:
            database_file = extract_database(path, manifest, Path(folder))
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
            facts = await facts_of(connection)
        check_keys(
            facts.seals,
            settings.encryption_key_path,
            "the restored database",
            "The database was restored, but its comments and stories cannot be read with this key file.",
        )
    finally:
        await engine.dispose()
    return RestoreReport(manifest, migrated_to, time.perf_counter() - started)


def _same_rows(manifest: Manifest, facts: Facts, where: str, after: str = "") -> None:
    if facts.rows != manifest.rows:
        differ = sorted(t for t in set(facts.rows) | set(manifest.rows) if facts.rows.get(t) != manifest.rows.get(t))
        raise BackupError(f"{where} does not match the backup's manifest (tables {', '.join(differ)}); the file is damaged.{after}")


async def _sqlite_restore(settings: Settings, manifest: Manifest, copy: Path) -> None:
    # The extracted copy is checked before anything is written to the real database.
    async with engine_for(f"sqlite+aiosqlite:///{copy}") as engine, engine.connect() as connection:
        _same_rows(manifest, await facts_of(connection), "The backup's database", " Nothing was changed.")
    source = sqlite3.connect(copy)
    try:
        target = sqlite3.connect(sqlite_path(settings), timeout=30)
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


# Everything in the public schema goes (tables, views, sequences, types, functions), in the same
# transaction as the restore: a database that a newer revision migrated keeps no table or trigger
# function the older backup lacks, and a failed restore changes nothing.
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
  -- Trigger functions (migration 0022's); an extension's own functions stay with it.
  FOR r IN SELECT p.oid::regprocedure AS signature FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
           WHERE n.nspname = 'public' AND p.prokind = 'f'
             AND NOT EXISTS (SELECT 1 FROM pg_depend d WHERE d.objid = p.oid AND d.deptype = 'e') LOOP
    EXECUTE format('DROP FUNCTION IF EXISTS %s CASCADE', r.signature);
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
        major = await server_major(connection)
    await engine.dispose()  # our own idle connections would otherwise wait on the drop
    pg_restore, psql = postgres_tool("pg_restore", major), postgres_tool("psql", major)
    env = pg_environment(settings)
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
        _same_rows(manifest, await facts_of(connection), "The restored database")
