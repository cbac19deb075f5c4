"""Roster import: a CSV of the people a community should have (e-mail, name, team, language).

Read and checked whole before anything is written: a bad file (not UTF-8, no e-mail column, too
many rows, the same address twice, a cell a spreadsheet would run as a formula) is refused with
one message and changes nothing. A good file gives a plan (new people, team changes, unchanged,
rows with errors and why, members missing from the file) that is shown first and applied only
when asked: new people are invited, team changes made, and, if asked, members missing from the
file are deactivated. A round that is open keeps the teams it opened with (its population was
stored when it opened), so a team change counts from the next round on.
"""

from __future__ import annotations

import csv
import io
import uuid
from dataclasses import dataclass, field

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from safespace.audit import entries as audit
from safespace.errors import InvalidInput
from safespace.i18n import gettext as _
from safespace.identity import signin
from safespace.identity.members import change_member
from safespace.identity.models import LANGUAGES, Membership, Person
from safespace.identity.services import add_membership, get_or_create_person, normalize_email, teams_of

MAX_ROWS = 10_000  # a community of practice is far smaller; a bigger file is a mistake
MAX_BYTES = 2_000_000
COLUMNS = {"email": "email", "e-mail": "email", "name": "name", "display name": "name", "display_name": "name",
           "team": "team", "language": "language"}  # fmt: skip
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


class RosterRefused(Exception):
    """The file as a whole cannot be used; the message says why and what to fix."""


@dataclass(frozen=True)
class Row:
    line: int
    email: str
    name: str
    team: str
    language: str


@dataclass
class Plan:
    new: list[Row] = field(default_factory=list)
    changed_team: list[tuple[Row, str]] = field(default_factory=list)  # (row, the team before)
    unchanged: list[Row] = field(default_factory=list)
    errors: list[tuple[int, str, str]] = field(default_factory=list)  # (line, what was there, why)
    missing: list[str] = field(default_factory=list)  # members (not facilitators) the file leaves out


def read_rows(data: bytes) -> list[Row]:
    """The file's rows, or RosterRefused naming the problem (nothing has been written)."""
    if len(data) > MAX_BYTES:
        raise RosterRefused(_("The file is larger than 2 MB. Split it, or leave out columns other than email, name, team and language."))
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise RosterRefused(_("The file is not UTF-8 text. Save it from your spreadsheet as “CSV UTF-8” and upload it again.")) from None
    reader = csv.reader(io.StringIO(text))
    header = [COLUMNS.get(cell.strip().lower(), "") for cell in next(reader, [])]
    if "email" not in header:
        raise RosterRefused(_("The first line must name the columns, and one must be “email” (also: name, team, language)."))
    rows, seen = [], set()
    for line, cells in enumerate(reader, start=2):
        if len(rows) >= MAX_ROWS:
            raise RosterRefused(_("The file has more than %(n)s rows. Import at most %(n)s people at a time.") % {"n": f"{MAX_ROWS:,}"})
        if not any(cell.strip() for cell in cells):
            continue
        values = {name: cell.strip() for name, cell in zip(header, cells, strict=False) if name}
        for cell in values.values():
            if cell.startswith(FORMULA_STARTS):
                raise RosterRefused(_("Line %(line)s holds “%(cell)s”, which a spreadsheet would run as a formula. Remove it and upload again.")
                                    % {"line": line, "cell": cell[:40]})  # fmt: skip
        email = values.get("email", "").lower()
        if email and email in seen:
            raise RosterRefused(_("%(email)s appears twice (again on line %(line)s). Keep one line per person.") % {"email": email, "line": line})
        seen.add(email)
        rows.append(Row(line, email, values.get("name", ""), values.get("team", ""), values.get("language", "").lower()))
    if not rows:
        raise RosterRefused(_("The file has no one in it: add one line per person under the column names."))
    return rows


async def _memberships(db: AsyncSession, community_id: uuid.UUID) -> dict[str, Membership]:
    """The community's memberships by address, in one query (the plan's and the applying's)."""
    found = await db.execute(select(Membership, Person.email).join(Person).where(Membership.community_id == community_id))
    return {email: membership for membership, email in found.all()}


async def plan(db: AsyncSession, community_id: uuid.UUID, rows: list[Row]) -> Plan:
    """What applying the rows would do, without doing it."""
    teams = {team.name.casefold(): team.name for team in await teams_of(db, community_id)}
    current = {email: (m, m.team.name if m.team else "") for email, m in (await _memberships(db, community_id)).items()}
    result, listed = Plan(), set()
    for row in rows:
        try:
            email = normalize_email(row.email)
        except InvalidInput:
            result.errors.append((row.line, row.email, _("not an e-mail address")))
            continue
        listed.add(email)  # in the file, even on a line with an error: never "missing"
        if row.team and row.team.casefold() not in teams:
            result.errors.append((row.line, row.team, _("no team of this name: create it on the Teams page first")))
            continue
        if row.language and row.language not in LANGUAGES:
            result.errors.append((row.line, row.language, _("language must be en or es, or left empty")))
            continue
        row = Row(row.line, email, row.name, teams.get(row.team.casefold(), ""), row.language)
        if email not in current or current[email][0].status == "deactivated":
            result.new.append(row)
        elif row.team != current[email][1]:
            result.changed_team.append((row, current[email][1]))
        else:
            result.unchanged.append(row)
    result.missing = sorted(
        email for email, (m, _team) in current.items() if email not in listed and m.status != "deactivated" and m.role != "facilitator"
    )
    return result


async def apply(db: AsyncSession, community_id: uuid.UUID, planned: Plan, deactivate_missing: bool) -> list[Membership]:
    """Carry the plan out in the caller's transaction; the new invitations, for their mails."""
    teams = {team.name: team.id for team in await teams_of(db, community_id)}
    current = await _memberships(db, community_id)  # one query, not one per row
    invited = []
    for row in planned.new:
        existing = current.get(row.email)
        if existing is not None:  # a deactivated member listed again: invited back, as "reactivate" does
            await change_member(db, community_id, existing.id, status="active", team_id=teams.get(row.team))
            continue
        person, created = await get_or_create_person(db, row.email)
        if created:
            person.display_name, person.language = row.name[:80], row.language or None
        invited.append(add_membership(db, community_id, person.id, teams.get(row.team), "invited"))
    for row, _before in planned.changed_team:
        current[row.email].team_id = teams.get(row.team)
    if deactivate_missing:
        for email in planned.missing:
            current[email].status = "deactivated"
    await db.flush()
    for membership in invited:
        await db.refresh(membership, ["person", "team", "community"])
    return invited


async def apply_and_record(
    db: AsyncSession, community_id: uuid.UUID, planned: Plan, deactivate_missing: bool, actor: str
) -> list[tuple[Membership, str]]:
    """apply(), its audit entry and the new people's invitation links, in the caller's transaction
    (the page, the API and the command alike); the caller commits, then mails each (membership, link)."""
    invited = await apply(db, community_id, planned, deactivate_missing)
    gone = len(planned.missing) if deactivate_missing else 0
    detail = f"roster import: {len(invited)} invited, {len(planned.changed_team)} team changes, {gone} deactivated"
    await audit.record(db, community_id, actor, "member", detail)
    return [(m, await signin.issue_link(db, m.person_id, community_id, ttl=signin.INVITATION_LINK_TTL)) for m in invited]
