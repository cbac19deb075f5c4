"""The `safespace` command: serve, migrate, demo, create-community, invite, tick, keys rotate,
login-link, sso-providers, import-roster, backup, restore. What each does around its work (settings, the schema and key checks,
explaining a failure in one line) is in preflight.py."""

from __future__ import annotations

import asyncio
import os
import sys
from datetime import timedelta
from pathlib import Path

import click
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from safespace.identity.roster_cli import import_roster
from safespace.preflight import Commands, command_settings, fail, key_file_opens_the_database, schema_matches_the_code, with_db
from safespace.settings import PREFIX, Settings, served_at


@click.group(cls=Commands, help="Safespace: anonymous trust pulse surveys and failure sharing.")
def main() -> None:
    pass


@main.command(help="Serve the web app with uvicorn.")
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=8000, show_default=True, type=click.IntRange(1, 65535))
@click.option(
    "--workers", default=1, show_default=True, type=click.IntRange(min=1),
    help="Worker processes (PostgreSQL only: SQLite takes one writer, so one worker).",
)
def serve(host: str, port: int, workers: int) -> None:
    import uvicorn

    settings = served_at(command_settings(), host, port)
    # SQLite allows one writer, and its write turns are per process (see docs/ARCHITECTURE.md).
    if workers > 1 and settings.is_sqlite:
        fail("--workers above 1 needs PostgreSQL (SAFESPACE_DATABASE_URL=postgresql+asyncpg://...): "
              "SQLite takes one writer at a time, so serve it with one worker.")
    schema_matches_the_code(settings, serving=True)  # before the key check, which reads tables the schema may lack
    key_file_opens_the_database(settings)
    click.echo(f"Safespace is serving {settings.base_url} (listening on {host}:{port}, {workers} worker(s)).")
    options = {
        "host": host,
        "port": port,
        "log_level": settings.log_level.lower(),
        "access_log": False,  # an access log would pair people with the time of an answer (P7)
        "proxy_headers": True,
        # Named, not "auto": a missing C parser or loop would otherwise pass unnoticed as a slower server.
        "http": "httptools",
        "loop": "uvloop",
        "forwarded_allow_ips": settings.trusted_proxies,
    }
    if workers == 1:
        from safespace.app import create_app

        uvicorn.run(create_app(settings, freeze_heap=True), **options)
    else:
        # Each worker process builds its own app from the same environment (uvicorn needs an
        # import string to start several); they share nothing but the database.
        os.environ[PREFIX + "BASE_URL"] = settings.base_url  # as served_at made it, for every worker
        uvicorn.run("safespace.cli:served_app", factory=True, workers=workers, **options)


def served_app():  # noqa: ANN201 - a Litestar app; the import stays lazy
    """The app of one `serve --workers N` process, from the environment like the parent's."""
    from safespace.app import create_app

    return create_app(command_settings(), freeze_heap=True)


@main.command(help="Apply database migrations (safe to run repeatedly).")
def migrate() -> None:
    from safespace.db.engine import make_engine
    from safespace.db.migrate import current_revision, upgrade

    settings = command_settings()

    async def run() -> str | None:
        engine = make_engine(settings)
        try:
            await upgrade(engine)
            return await current_revision(engine)
        finally:
            await engine.dispose()

    revision = asyncio.run(run())  # a database that is not there: one line (preflight.explain)
    click.echo(f"Database is at revision {revision}.")


@main.command(help="Create the demo community if it is missing, and print sign-in links.")
@click.option("--host", default="127.0.0.1", show_default=True, help="Where `serve` will listen: the links open there.")
@click.option("--port", default=8000, show_default=True, type=click.IntRange(1, 65535), help="The port `serve` will listen on.")
def demo(host: str, port: int) -> None:
    from safespace.demo import demo_links, ensure_demo
    from safespace.identity.mail import link_url
    from safespace.privacy.crypto import Keyring

    settings = served_at(command_settings(), host, port)  # SAFESPACE_BASE_URL, if set, wins
    schema_matches_the_code(settings)  # before the key file is made, which a failed command must not leave behind
    keyring = Keyring.load(settings.encryption_key_path)

    async def work(db: AsyncSession) -> tuple[bool, dict[str, str]]:
        made = await ensure_demo(db, keyring)
        return made.created, await demo_links(db, made.community)

    from safespace.demo import NAME
    from safespace.errors import InvalidInput

    try:
        created, tokens = with_db(settings, work, checked=True)
    except InvalidInput as exc:  # another community already has the demo's name in another case
        fail(f"Cannot create the demo community “{NAME}”: {' '.join(exc.errors.values())}")

    click.echo(f"{'Created' if created else 'Found'} the demo community “{NAME}”.")
    click.echo("One-time sign-in links (valid 15 minutes; run `safespace demo` again for new ones):")
    click.echo(f"  facilitator: {link_url(settings.base_url, tokens['facilitator'])}")
    click.echo(f"  member:      {link_url(settings.base_url, tokens['member'])}")


@main.command("create-community", help="Create a community with a first facilitator.")
@click.option("--name", required=True)
@click.option("--facilitator", "facilitator_email", required=True, help="Email of the first facilitator.")
@click.option("--vision", default="")
@click.option("--min-group-size", type=int, default=None, help="k; default SAFESPACE_DEFAULT_MIN_GROUP_SIZE.")
@click.option("--time-zone", default="UTC", show_default=True)
def create_community(
    name: str, facilitator_email: str, vision: str, min_group_size: int | None, time_zone: str
) -> None:
    from safespace.identity import services

    settings = command_settings()

    async def work(db: AsyncSession):  # noqa: ANN202
        person, _ = await services.get_or_create_person(db, facilitator_email)
        k = settings.default_min_group_size if min_group_size is None else min_group_size
        return await services.create_community(db, person.id, name, vision, k, time_zone)

    try:
        community = with_db(settings, work)
    except services.CommunityNameTaken as exc:
        fail(f"There is already a community called “{exc.existing.name}” ({exc.existing.id}): choose another name, "
              f"or invite people to it with `safespace invite --community {exc.existing.id}`.")
    except services.InvalidInput as exc:
        fail("\n".join(f"{field}: {message}" for field, message in exc.errors.items()))
    click.echo(f"Created {community.name} ({community.id}). Sign in as {facilitator_email} to continue.")


def _no_such_community(reference: str, names: list[str], shown: int = 20) -> str:
    if not names:
        return f"No community is called {reference!r}: there are none yet. Start one with `safespace create-community`."
    more = f" and {len(names) - shown} more" if len(names) > shown else ""
    return f"No community is called {reference!r}. The communities are: {', '.join(names[:shown])}{more} (a name or an id will do)."


@main.command(help="Invite members to a community by email (prints the links when mail is off).")
@click.option("--community", "community_ref", required=True, help="Community id, or its name (case and spacing aside).")
@click.option("--team", default=None, help="Team name for this batch.")
@click.argument("addresses", nargs=-1, required=True)
def invite(community_ref: str, team: str | None, addresses: tuple[str, ...]) -> None:
    from sqlalchemy import select

    from safespace.identity import members, services, signin
    from safespace.identity.mail import Postman
    from safespace.identity.models import Community, Team
    from safespace.mail import make_mailer
    from safespace.web.templates import template_environment

    settings = command_settings()

    async def work(db: AsyncSession):  # noqa: ANN202
        community = await services.find_community(db, community_ref)
        if community is None:
            raise LookupError(_no_such_community(community_ref, list(await db.scalars(select(Community.name).order_by(Community.name)))))
        team_id = None
        if team:
            team_id = await db.scalar(select(Team.id).where(Team.community_id == community.id, Team.name == team))
            if team_id is None:
                raise LookupError(f"{community.name} has no team named {team!r}.")
        result = await members.invite(db, community.id, list(addresses), team_id)
        tokens = [
            await signin.issue_link(db, m.person_id, community.id, ttl=signin.INVITATION_LINK_TTL)
            for m in result.invited
        ]
        await db.commit()
        postman = Postman(make_mailer(settings), template_environment(), settings.base_url)
        for membership, token in zip(result.invited, tokens, strict=True):
            await postman.invitation(membership, token, "Safespace")
        return result

    try:
        result = with_db(settings, work)
    except (LookupError, services.InvalidInput) as exc:
        fail(str(exc))
    click.echo(f"Invited {len(result.invited)}; already members: {len(result.already_members)}.")
    for entry in result.invalid:
        click.echo(f"Not an email address (skipped): {entry}", err=True)
    if result.invalid:
        sys.exit(1)


@main.command(help="Open, remind and close rounds that are due (idempotent; safe to run from cron every minute).")
def tick() -> None:
    from safespace.chat.delivery import ChatDelivery
    from safespace.db.engine import make_engine
    from safespace.mail import make_mailer
    from safespace.notifications.digest import DigestMailer
    from safespace.privacy.crypto import Keyring
    from safespace.pulse.mail import RoundMailer
    from safespace.schedule import tick as run_tick
    from safespace.web.templates import template_environment
    from safespace.webhooks.delivery import WebhookSender

    settings = command_settings()
    schema_matches_the_code(settings)  # first: the key check reads tables the schema may lack
    key_file_opens_the_database(settings)

    async def run():  # noqa: ANN202
        engine = make_engine(settings)
        try:
            mailer = RoundMailer(make_mailer(settings), template_environment(), settings.base_url)
            return await run_tick(
                async_sessionmaker(engine, expire_on_commit=False),
                Keyring.load(settings.encryption_key_path),
                mailer,
                session_idle=timedelta(minutes=settings.session_idle_minutes),
                story_release=(settings.story_release_weekday, settings.story_release_hour),
                token_key_bits=settings.token_key_bits,
                chat_delivery=ChatDelivery(settings.base_url),
                digests=DigestMailer(make_mailer(settings), template_environment(), settings.base_url),
                webhook_sender=WebhookSender(settings.base_url, settings.webhook_ca_file, settings.webhook_allow_private),
            )
        finally:
            await engine.dispose()

    report = asyncio.run(run())
    if report.skipped:
        click.echo("Another process is running the schedule right now; nothing to do.")
    else:
        click.echo(
            f"Opened {report.opened}, reminded {report.reminded}, closed {report.closed} round(s); "
            f"released {report.stories_released} story(ies)."
        )


@main.group(help="Encryption keys for comments and stories (kept outside the database).")
def keys() -> None:
    pass


@keys.command("rotate", help="Add a new key, re-encrypt every comment with it, then retire the old keys.")
def rotate_keys() -> None:
    from safespace.privacy.crypto import Keyring
    from safespace.privacy.rotation import count_not_current, reseal_all

    settings = command_settings()
    schema_matches_the_code(settings)
    key_file_opens_the_database(settings)  # a missing key file is not made afresh here either
    keyring = Keyring.load(settings.encryption_key_path)
    new_id = keyring.add_key()  # saved first: a crash below leaves every row readable

    resealed = with_db(settings, lambda db: reseal_all(db, keyring), checked=True)
    # A second pass catches a comment a running server sealed just before it saw the new key.
    resealed += with_db(settings, lambda db: reseal_all(db, keyring), checked=True)
    log_operator(settings, "keys", f"key {new_id} in use; {resealed} value(s) re-encrypted")
    if with_db(settings, lambda db: count_not_current(db, keyring), checked=True):
        click.echo(f"Key {new_id} is now in use; re-encrypted {resealed} value(s). Some values were written with an "
                   "older key meanwhile: run `safespace keys rotate` again later to retire the older keys.")
        return
    keyring.retire_older_keys()
    click.echo(f"Key {new_id} is now in use; re-encrypted {resealed} value(s); older keys removed.")


main.add_command(import_roster)  # identity/roster_cli.py: the members page's roster import


@main.command("sso-providers", help="Check each single sign-on provider of SAFESPACE_OIDC_PROVIDERS (its discovery "
              "document) and print the redirect URI to register with it.")
def sso_providers() -> None:
    from safespace.identity.sso import Providers, callback_url, discover

    settings = command_settings()
    providers = Providers(settings.sso_providers)
    if not providers.configured:
        fail("No single sign-on provider is configured: set SAFESPACE_OIDC_PROVIDERS (see the README).")
    broken = 0
    for provider in providers.configured:
        problem = asyncio.run(discover(providers, provider))
        click.echo(f"{provider.id} ({provider.name}): {problem or 'discovery OK'}; redirect URI {callback_url(settings.base_url, provider)}")
        broken += problem is not None
    if broken:
        fail(f"{broken} provider(s) could not be reached or described themselves wrongly; fix their issuer URL.")


@main.command("login-link", help="Print a one-time sign-in link for EMAIL (for operators without mail); "
              "for someone invited who has not joined yet, the link also accepts the invitation.")
@click.argument("email")
def login_link(email: str) -> None:
    from safespace.identity import members, services, signin
    from safespace.identity.mail import link_url

    settings = command_settings()

    async def work(db: AsyncSession) -> tuple[str, str | None] | None:
        person = await services.find_person(db, email.strip().lower())
        if person is None:
            return None
        # Invited and not yet in: the link accepts the invitation, as the invitation mail's does.
        invited = await members.pending_invitation(db, person.id)
        token = await signin.issue_link(db, person.id, invited.id if invited else None)
        return token, invited.name if invited else None

    issued = with_db(settings, work)
    if issued is None:
        fail(f"No one with the address {email} has been invited yet.")
    token, community = issued
    click.echo(link_url(settings.base_url, token))
    if community:
        click.echo(f"It also accepts the invitation to {community}.", err=True)


def log_operator(settings: Settings, kind: str, detail: str) -> None:
    """An operator's act in the audit log every community's facilitators read. The act itself is
    done: a database that cannot take the entry (an older schema) gets a note, not a failure."""
    from sqlalchemy.exc import SQLAlchemyError

    from safespace.audit import entries as audit

    try:
        with_db(settings, lambda db: audit.record(db, None, audit.OPERATOR, kind, detail), checked=True)
    except SQLAlchemyError as exc:
        click.echo(f"Note: not written to the audit log ({exc.__class__.__name__}).", err=True)


@main.command(help="Write a consistent snapshot of the database to PATH (a new file, or a folder to put one in). "
              "The encryption keys are not in it: back them up separately.")
@click.argument("path", type=click.Path(path_type=Path))
def backup(path: Path) -> None:
    from safespace.backup import BackupError, take

    settings = command_settings()
    try:
        report = asyncio.run(take(settings, path))
    except BackupError as exc:
        fail(str(exc))
    manifest = report.manifest
    # Logged after the snapshot (so not in it), for every community's facilitators to see.
    log_operator(settings, "backup", f"{manifest.row_total} rows to {Path(report.path).name}")
    kind = {"sqlite": "SQLite", "postgresql": "PostgreSQL"}[manifest.database]
    click.echo(
        f"Backed up the {kind} database (revision {manifest.revision}, {manifest.row_total} rows in "
        f"{len(manifest.rows)} tables) to {report.path} ({report.size / 1e6:.1f} MB) in {report.seconds:.1f} s."
    )
    # One file with both the data and its keys would open every comment and story for whoever holds it (P6).
    keys = ", ".join(map(str, manifest.key_ids)) or "none yet"
    secret = settings.secret_key_file or Path(settings.data_dir) / "secret.key"
    click.echo(
        f"The backup holds no keys (comments and stories in it are sealed with key(s) {keys} of "
        f"{settings.encryption_key_path}). Back up that file and {secret} separately, "
        "and keep them at least as long as this backup: without encryption.keys its comments and stories "
        "cannot be read."
    )
    if manifest.open_rounds:
        click.echo(
            f"Note: {manifest.open_rounds} round(s) are open. This backup keeps their participation list and "
            "unreleased comments as they stand; closing a round scrubs them from the database, not from this file."
        )


@main.command(help="Bring back the database from a file written by `safespace backup`, then migrate it. "
              "Stop the app first.")
@click.argument("path", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--force", is_flag=True, help="Replace a database that already holds data.")
def restore(path: Path, force: bool) -> None:
    from safespace.backup import BackupError
    from safespace.backup import restore as run_restore

    settings = command_settings()
    try:
        report = asyncio.run(run_restore(settings, path, force))
    except BackupError as exc:
        fail(str(exc))
    manifest = report.manifest
    kind = {"sqlite": "SQLite", "postgresql": "PostgreSQL"}[manifest.database]
    click.echo(
        f"Restored the {kind} database from {path} (taken {manifest.taken_at}, revision {manifest.revision}, "
        f"{manifest.row_total} rows) in {report.seconds:.1f} s."
    )
    if manifest.key_ids:
        click.echo(f"The key file {settings.encryption_key_path} opens its comments and stories "
                   f"(key(s) {', '.join(map(str, manifest.key_ids))}).")
    if report.migrated_to:
        click.echo(f"Migrated it from revision {manifest.revision} to {report.migrated_to}.")
    else:
        click.echo("It is at the current revision; no migration was needed.")


if __name__ == "__main__":
    main()
