"""`safespace import-roster FILE`: the roster import of the members page, from the command line.
A dry run unless --apply; the same checks, plan and invitations as the page (identity/roster.py)."""

from __future__ import annotations

from pathlib import Path

import click
from sqlalchemy.ext.asyncio import AsyncSession

from safespace.preflight import command_settings, fail, with_db


def _print_plan(planned, deactivate: bool) -> None:  # noqa: ANN001 - a roster.Plan
    click.echo(f"new (to invite): {len(planned.new)}; team changes: {len(planned.changed_team)}; "
               f"unchanged: {len(planned.unchanged)}; rows with errors: {len(planned.errors)}; "
               f"members not in the file: {len(planned.missing)}{' (to deactivate)' if deactivate else ' (left as they are)'}")  # fmt: skip
    for row in planned.new:
        click.echo(f"  new: {row.email}{' · ' + row.team if row.team else ''}")
    for row, before in planned.changed_team:
        click.echo(f"  team: {row.email}: {before or '(none)'} -> {row.team or '(none)'}")
    for line, value, why in planned.errors:
        click.echo(f"  line {line}: {value!r}: {why}", err=True)


@click.command("import-roster", help="Import members from a CSV file (email, name, team, language): shows what it would "
               "do; --apply does it and mails invitations to new people.")  # fmt: skip
@click.option("--community", "community_ref", required=True, help="Community id, or its name (case and spacing aside).")
@click.option("--apply", "apply_it", is_flag=True, help="Apply the roster (without it: a dry run that changes nothing).")
@click.option("--deactivate-missing", is_flag=True, help="Deactivate members missing from the file (facilitators stay).")
@click.argument("path", type=click.Path(path_type=Path, exists=True, dir_okay=False))
def import_roster(community_ref: str, apply_it: bool, deactivate_missing: bool, path: Path) -> None:
    from safespace.audit import entries as audit
    from safespace.identity import roster, services
    from safespace.identity.mail import Postman
    from safespace.mail import make_mailer
    from safespace.web.templates import template_environment

    settings = command_settings()

    async def work(db: AsyncSession):  # noqa: ANN202
        community = await services.find_community(db, community_ref)
        if community is None:
            raise LookupError(f"There is no community {community_ref!r}.")
        planned = await roster.plan(db, community.id, roster.read_rows(path.read_bytes()))
        if not apply_it:
            return planned, []
        invited = await roster.apply_and_record(db, community.id, planned, deactivate_missing, audit.OPERATOR)
        await db.commit()
        postman = Postman(make_mailer(settings), template_environment(), settings.base_url)
        for membership, token in invited:
            await postman.invitation(membership, token, "Safespace")
        return planned, invited

    try:
        planned, invited = with_db(settings, work)
    except (LookupError, roster.RosterRefused) as exc:
        fail(f"Nothing was changed. {exc}")
    _print_plan(planned, deactivate_missing)
    click.echo(f"Applied: {len(invited)} invited." if apply_it else "Dry run: nothing was changed. Add --apply to apply it.")
