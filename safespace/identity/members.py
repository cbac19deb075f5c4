"""Who belongs where: invitations and accepting them, a person's memberships, the roster, and
deactivating, reactivating, promoting or moving a member. The rules, callable without HTTP."""

from __future__ import annotations

import re
import uuid
from dataclasses import dataclass, field

from sqlalchemy import bindparam, func, select
from sqlalchemy.ext.asyncio import AsyncSession

from safespace.errors import InvalidInput, Refused
from safespace.i18n import gettext as _
from safespace.identity.models import Community, Membership, Person
from safespace.identity.services import add_membership, get_or_create_person, normalize_email, team_in

_SEPARATORS = re.compile(r"[\s,;]+")


def split_addresses(text: str) -> tuple[list[str], list[str]]:
    """Pasted text -> (valid normalized addresses, first seen first, no repeats; invalid entries)."""
    valid: list[str] = []
    invalid: list[str] = []
    for entry in _SEPARATORS.split(text):
        entry = entry.strip().strip("<>")
        if not entry:
            continue
        try:
            address = normalize_email(entry)
        except InvalidInput:
            if entry not in invalid:
                invalid.append(entry)
            continue
        if address not in valid:
            valid.append(address)
    return valid, invalid


@dataclass
class Invitations:
    invited: list[Membership] = field(default_factory=list)
    already_members: list[str] = field(default_factory=list)
    invalid: list[str] = field(default_factory=list)


async def invite(
    db: AsyncSession, community_id: uuid.UUID, addresses: str | list[str], team_id: uuid.UUID | str | None
) -> Invitations:
    """Create memberships for new addresses; list invalid ones back; ignore existing members."""
    text = addresses if isinstance(addresses, str) else "\n".join(addresses)
    valid, invalid = split_addresses(text)
    if not valid and not invalid:
        raise InvalidInput({"addresses": _("Paste at least one email address.")})
    team = await team_in(db, community_id, team_id)
    result = Invitations(invalid=invalid)
    for address in valid:
        person, _created = await get_or_create_person(db, address)
        existing = await db.scalar(
            select(Membership).where(Membership.person_id == person.id, Membership.community_id == community_id)
        )
        if existing:
            result.already_members.append(address)
            continue
        result.invited.append(add_membership(db, community_id, person.id, team.id if team else None, "invited"))
    await db.flush()
    for membership in result.invited:
        await db.refresh(membership, ["person", "team", "community"])
    return result


async def memberships_of(db: AsyncSession, person_id: uuid.UUID) -> list[Membership]:
    """Where a person may go: their active and invited memberships, by community name."""
    rows = await db.scalars(
        select(Membership)
        .join(Community)
        .where(Membership.person_id == person_id, Membership.status != "deactivated")
        .order_by(Community.name)
    )
    return list(rows)


# Built once: every page under a community runs it, and building a statement (and its cache key)
# costs about as much as running it.
_ACTIVE_MEMBERSHIP = select(Membership).where(
    Membership.person_id == bindparam("person_id"),
    Membership.community_id == bindparam("community_id"),
    Membership.status == "active",
)


async def active_membership(
    db: AsyncSession, person_id: uuid.UUID, community_id: uuid.UUID
) -> Membership | None:
    return await db.scalar(_ACTIVE_MEMBERSHIP, {"person_id": person_id, "community_id": community_id})


async def pending_invitation(db: AsyncSession, person_id: uuid.UUID) -> Community | None:
    """The community a person was invited to and has not joined, if they belong to none yet."""
    statuses = set(await db.scalars(select(Membership.status).where(Membership.person_id == person_id)))
    if "active" in statuses or "invited" not in statuses:
        return None
    return await db.scalar(
        select(Community)
        .join(Membership, Membership.community_id == Community.id)
        .where(Membership.person_id == person_id, Membership.status == "invited")
        .order_by(Community.name)
        .limit(1)
    )


async def accept_invitation(db: AsyncSession, person_id: uuid.UUID, community_id: uuid.UUID) -> bool:
    """The person joins the community they were invited to (and proved their address for)."""
    membership = await db.scalar(
        select(Membership).where(
            Membership.person_id == person_id,
            Membership.community_id == community_id,
            Membership.status == "invited",
        )
    )
    if membership is None:
        return False
    membership.status, membership.accepted = "active", True
    return True


async def roster(db: AsyncSession, community_id: uuid.UUID) -> list[Membership]:
    return list(
        await db.scalars(
            select(Membership)
            .join(Person)
            .where(Membership.community_id == community_id)
            .order_by(func.lower(Person.display_name), Person.email)
        )
    )


async def member_in(db: AsyncSession, community_id: uuid.UUID, membership_id: uuid.UUID) -> Membership:
    membership = await db.get(Membership, membership_id)
    if membership is None or membership.community_id != community_id:
        raise LookupError("no such member in this community")
    return membership


async def _active_facilitators(db: AsyncSession, community_id: uuid.UUID) -> int:
    return await db.scalar(
        select(func.count())
        .select_from(Membership)
        .where(
            Membership.community_id == community_id,
            Membership.role == "facilitator",
            Membership.status == "active",
        )
    ) or 0


async def _lock_community(db: AsyncSession, community_id: uuid.UUID) -> None:
    """Serialise role changes in one community (PostgreSQL row lock; SQLite's write lock)."""
    await db.execute(select(Community.id).where(Community.id == community_id).with_for_update())


async def change_member(
    db: AsyncSession,
    community_id: uuid.UUID,
    membership_id: uuid.UUID,
    *,
    status: str | None = None,
    role: str | None = None,
    team_id: uuid.UUID | str | None = ...,  # type: ignore[assignment]
) -> Membership:
    """Deactivate/reactivate, grant/withdraw the facilitator role, or move to another team."""
    await _lock_community(db, community_id)
    membership = await member_in(db, community_id, membership_id)
    if status is not None:
        if status not in ("active", "deactivated"):
            raise InvalidInput({"status": _("A member is either active or deactivated.")})
        if status == "deactivated":
            membership.status = "deactivated"
        elif membership.status == "deactivated":
            # Only someone who accepted the invitation becomes active; others are invited again.
            membership.status = "active" if membership.accepted else "invited"
    if role is not None:
        if role not in ("member", "facilitator"):
            raise InvalidInput({"role": _("A role is either member or facilitator.")})
        membership.role = role
    if team_id is not ...:
        team = await team_in(db, community_id, team_id)
        membership.team_id = team.id if team else None
    await db.flush()
    # Counted after the change, under the lock: two facilitators demoting each other cannot both pass.
    if await _active_facilitators(db, community_id) == 0:
        raise Refused(
            _("A community always keeps at least one facilitator. Make someone else a facilitator first.")
        )
    await db.refresh(membership, ["team"])
    return membership
