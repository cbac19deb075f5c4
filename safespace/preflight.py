"""What every `safespace` command does around its work: its settings, one transaction on a
database at the code's schema revision, the key file checked against the database, and the one
line it prints when an expected failure (a database down or missing, a damaged key file) stops it."""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TypeVar

import click
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from safespace.logs import configure_logging
from safespace.settings import Settings, SettingsError, load_settings

T = TypeVar("T")


_loaded: list[Settings] = []  # the command's settings, for explaining its failure (explain)


def command_settings() -> Settings:
    try:
        settings = load_settings()
    except SettingsError as exc:
        click.echo(f"Safespace cannot start: {exc}", err=True)
        sys.exit(2)
    configure_logging(settings.log_level)
    # Every table, so that foreign keys resolve whatever models a command imports itself (the app,
    # which imports them all, is no longer loaded for a command).
    import safespace.db.models  # noqa: F401

    _loaded.append(settings)
    return settings


def _causes(exc: BaseException) -> list[BaseException]:
    """The exception, what it wraps (SQLAlchemy's .orig) and what caused it."""
    found: list[BaseException] = []
    pending: list[BaseException | None] = [exc]
    while pending:
        current = pending.pop()
        if current is None or any(current is seen for seen in found) or len(found) > 20:
            continue
        found.append(current)
        pending += [getattr(current, "orig", None), current.__cause__, current.__context__]
    return found


def database_problem(exc: BaseException, database_url: str) -> str | None:
    """One line for a database that is not there or does not answer; None for anything else."""
    import asyncpg
    from sqlalchemy.engine import make_url

    from safespace.web.errors import database_unavailable

    url = make_url(database_url)
    causes = _causes(exc)
    if any(isinstance(cause, asyncpg.InvalidCatalogNameError) for cause in causes):
        return (
            f"The database {url.database!r} does not exist on {url.host}:{url.port or 5432}: create it "
            f"(`createdb {url.database}`) or correct SAFESPACE_DATABASE_URL, then run `safespace migrate`."
        )
    unavailable = next((cause for cause in causes if database_unavailable(cause)), None)
    if unavailable is None:
        return None
    reason = str(getattr(unavailable, "orig", None) or unavailable).split("\n", 1)[0][:200]
    return (
        f"Cannot reach the database at {url.render_as_string(hide_password=True)} ({reason}). "
        "Check SAFESPACE_DATABASE_URL, and that the database server is running."
    )


def explain(exc: Exception) -> str | None:
    """The one line an operator needs for an expected failure, or None (a bug: the traceback shows)."""
    from safespace.db.migrate import MigrationsMissing
    from safespace.privacy.crypto import KeyringError

    if isinstance(exc, MigrationsMissing):
        return str(exc)
    if isinstance(exc, SettingsError | KeyringError):
        return f"Safespace cannot start: {exc}"
    return database_problem(exc, _loaded[-1].database) if _loaded else None


class Commands(click.Group):
    """Commands whose expected failures (a database that is down or missing, a damaged key file)
    end with one line saying what is wrong and what to do, and exit 1, not with a traceback."""

    def invoke(self, ctx: click.Context) -> object:
        try:
            return super().invoke(ctx)
        except Exception as exc:
            if isinstance(exc, click.ClickException | click.exceptions.Exit | click.Abort):
                raise
            line = explain(exc)
            if line is None:
                raise
            click.echo(line, err=True)
            sys.exit(1)


def with_db(settings: Settings, work: Callable[[AsyncSession], Awaitable[T]], checked: bool = False) -> T:
    """Run work in one transaction, committed if it returns, on a database at the code's schema
    revision (`checked`: the caller has seen to that already)."""
    from safespace.db.engine import make_engine

    if not checked:
        schema_matches_the_code(settings)

    async def run() -> T:
        engine = make_engine(settings)
        try:
            async with async_sessionmaker(engine, expire_on_commit=False)() as db:
                result = await work(db)
                await db.commit()
                return result
        finally:
            await engine.dispose()

    return asyncio.run(run())


def fail(message: str) -> None:
    click.echo(message, err=True)
    sys.exit(1)


def schema_matches_the_code(settings: Settings, serving: bool = False) -> None:
    """Commands refuse a database at another schema revision than the code's: unmigrated, older or
    newer, its pages would answer 500 and a tick would fail half-way. A database that does not
    answer stops a command (one line, explain); `serve` starts anyway and answers 503 until it
    is back, unless the database does not exist at all. A SQLite file is not created here."""
    from safespace.db.engine import make_engine
    from safespace.db.migrate import current_revision, schema_mismatch

    if settings.is_sqlite:
        from sqlalchemy.engine import make_url

        path = make_url(settings.database).database
        if path and path != ":memory:" and not Path(path).exists():
            fail(f"There is no database at {path} yet: run `safespace migrate` to create it.")

    async def read() -> str | None:
        engine = make_engine(settings)
        try:
            return await current_revision(engine)
        finally:
            await engine.dispose()

    try:
        revision = asyncio.run(read())
    except Exception as exc:
        problem = database_problem(exc, settings.database)
        if not serving or problem is None or "does not exist" in problem:
            raise
        # Down for now: serve answers 503 and /readyz says why until it is back.
        click.echo(f"{problem} Starting anyway.", err=True)
        return
    mismatch = schema_mismatch(revision)
    if mismatch is not None:
        fail(f"{mismatch.message()} Safespace did not start.")


def _key_files_are_sound(settings: Settings) -> None:
    """The secret and the key file, where they exist, can be read and are private (a missing one
    is made on first use). Checked before anything starts: a worker would fail with a traceback."""
    from safespace.privacy.crypto import Keyring

    if Path(settings.secret_key_file or Path(settings.data_dir) / "secret.key").exists():
        settings.secret_key()
    if settings.encryption_key_path.exists():
        Keyring.load(settings.encryption_key_path)


def key_file_opens_the_database(settings: Settings) -> None:
    """serve and tick refuse to start when the key file cannot open what the database holds."""
    from safespace.backup import BackupError, check_key_file

    _key_files_are_sound(settings)
    try:
        asyncio.run(check_key_file(settings))
    except BackupError as exc:
        fail(str(exc))
    except Exception as exc:  # noqa: BLE001 - the database may be down: serve answers 503 until it is back
        click.echo(f"Could not check the key file against the database ({exc.__class__.__name__}); starting anyway.", err=True)
