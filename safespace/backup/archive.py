"""The backup archive: its format and manifest, what a database holds, and the key-file check."""

from __future__ import annotations

import contextlib
import glob
import hashlib
import io
import os
import re
import shutil
import subprocess
import tarfile
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


async def facts_of(connection: AsyncConnection) -> Facts:
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
            facts = await facts_of(connection)
    finally:
        await engine.dispose()
    check_keys(facts.seals, settings.encryption_key_path, "the database", "Safespace did not start.", "start it again")


def check_keys(
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


def revisions() -> tuple[str, list[str]]:
    """The code's head revision and every revision it knows."""
    from alembic.script import ScriptDirectory

    from safespace.db.migrate import alembic_config

    scripts = ScriptDirectory.from_config(alembic_config())
    return scripts.get_current_head(), [s.revision for s in scripts.walk_revisions()]


@contextlib.asynccontextmanager
async def engine_for(url: str) -> AsyncIterator[AsyncEngine]:
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


def write_archive(destination: Path, manifest: Manifest, database_file: Path) -> int:
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


def extract_database(path: Path, manifest: Manifest, folder: Path) -> Path:
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


def manifest_for(kind: str, facts: Facts) -> Manifest:
    if facts.revision is None:
        raise BackupError("The database has no Safespace tables yet; run `safespace migrate` first.")
    return Manifest(FORMAT, FORMAT_VERSION, kind, facts.revision, datetime.now(UTC).isoformat(timespec="seconds"),
                    facts.rows, facts.seals, facts.open_rounds)  # fmt: skip


def sqlite_path(settings: Settings) -> Path:
    return Path(make_url(settings.database).database or "")


# --- PostgreSQL's tools ---------------------------------------------------------------------------


def pg_environment(settings: Settings) -> dict[str, str]:
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


async def server_major(connection: AsyncConnection) -> int:
    return int((await connection.execute(text("SHOW server_version_num"))).scalar_one()) // 10000
