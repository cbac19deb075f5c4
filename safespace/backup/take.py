"""`safespace backup`: a consistent snapshot of the database, and its manifest, in one archive."""

from __future__ import annotations

import asyncio
import sqlite3
import subprocess
import tempfile
import time
from pathlib import Path

from sqlalchemy import text

from safespace.backup.archive import (
    BackupError,
    BackupReport,
    Manifest,
    destination_for,
    engine_for,
    facts_of,
    manifest_for,
    pg_environment,
    postgres_tool,
    server_major,
    sqlite_path,
    write_archive,
)
from safespace.settings import Settings


async def take(settings: Settings, path: Path) -> BackupReport:
    started = time.perf_counter()
    destination = destination_for(path)
    with tempfile.TemporaryDirectory(prefix=".safespace-backup-", dir=destination.parent) as folder:
        if settings.is_sqlite:
            database_file, manifest = await _sqlite_snapshot(settings, Path(folder) / "database.sqlite")
        else:
            database_file, manifest = await _postgres_snapshot(settings, Path(folder) / "database.pgdump")
        size = write_archive(destination, manifest, database_file)
    return BackupReport(destination, manifest, size, time.perf_counter() - started)


async def _sqlite_snapshot(settings: Settings, copy: Path) -> tuple[Path, Manifest]:
    source_path = sqlite_path(settings)
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
    async with engine_for(f"sqlite+aiosqlite:///{copy}") as engine, engine.connect() as connection:
        facts = await facts_of(connection)
    return copy, manifest_for("sqlite", facts)


async def _postgres_snapshot(settings: Settings, dump: Path) -> tuple[Path, Manifest]:
    from safespace.db.engine import make_engine

    engine = make_engine(settings)
    try:
        async with engine.connect() as connection:
            # pg_dump reads the very snapshot this transaction reads the manifest from.
            connection = await connection.execution_options(isolation_level="REPEATABLE READ", postgresql_readonly=True)
            async with connection.begin():
                pg_dump = postgres_tool("pg_dump", await server_major(connection))
                snapshot = (await connection.execute(text("SELECT pg_export_snapshot()"))).scalar_one()
                facts = await facts_of(connection)
                command = [str(pg_dump), "--format=custom", "--schema=public", f"--snapshot={snapshot}", f"--file={dump}"]
                done = await asyncio.to_thread(subprocess.run, command, env=pg_environment(settings), capture_output=True, text=True)
                if done.returncode != 0:
                    raise BackupError(f"pg_dump failed: {done.stderr.strip()}")
    except OSError as exc:
        raise BackupError(f"Cannot reach the database ({exc}). Check SAFESPACE_DATABASE_URL.") from None
    finally:
        await engine.dispose()
    return dump, manifest_for("postgresql", facts)
