"""A member deletes their own account (issue 20 item 4).

Their person row goes, and with it (by the foreign keys) their sessions, sign-in links,
memberships, notification choices and their rows in the ledgers of rounds and check-ins still
open. What stays: the totals they answered into (a tally holds nothing about who is in it), and
stories and replies they shared (nothing links them to the author, so they cannot be found; the
receipt code still withdraws them). The audit log keeps what a facilitator did, without their
address. A community nobody else is an active member of (invitations not yet accepted, and
deactivated members, do not count) goes with its only member; one where others remain needs another
facilitator first, so it is never left without one.
"""

from __future__ import annotations

import uuid

from sqlalchemy import delete, func, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from safespace.audit import entries as audit
from safespace.audit.models import AuditEntry
from safespace.errors import InvalidInput, Refused
from safespace.i18n import gettext as _
from safespace.identity.models import Community, Membership, Person

DELETED = "a deleted account"  # the audit log's actor in place of a deleted facilitator's address


async def _left_alone(db: AsyncSession, person_id: uuid.UUID) -> tuple[list[uuid.UUID], list[str]]:
    """Communities where the person is the only active facilitator: (those nobody else belongs to,
    the names of those where others would be left without a facilitator)."""
    mine = select(Membership.community_id).where(
        Membership.person_id == person_id, Membership.role == "facilitator", Membership.status == "active"
    )
    # Locked (PostgreSQL) until the deletion commits: two facilitators deleting at once, or a
    # demotion beside a deletion, must not both count the other as the one who stays.
    await db.execute(select(Community.id).where(Community.id.in_(mine)).order_by(Community.id).with_for_update())
    others = (Membership.community_id == Community.id, Membership.person_id != person_id)
    rows = await db.execute(
        select(
            Community.id,
            Community.name,
            select(func.count()).where(*others, Membership.role == "facilitator", Membership.status == "active").scalar_subquery(),
            select(func.count()).where(*others, Membership.status == "active").scalar_subquery(),
        ).where(Community.id.in_(mine))
    )
    alone, blocked = [], []
    for community_id, name, facilitators, people in rows.all():
        if facilitators:
            continue
        if people:
            blocked.append(name)
        else:
            alone.append(community_id)
    return alone, blocked


async def delete_account(db: AsyncSession, person_id: uuid.UUID, typed_email: str) -> None:
    """Delete the person, in the caller's transaction. InvalidInput: the address typed to confirm
    is not theirs; Refused: they are the only facilitator of a community others belong to."""
    person = await db.get_one(Person, person_id)
    if typed_email.strip().lower() != person.email.lower():
        raise InvalidInput({"confirm_email": _("Type your address exactly as shown above to confirm.")})
    alone, blocked = await _left_alone(db, person_id)
    if blocked:
        raise Refused(_("You are the only facilitator of %(names)s. Make another member a facilitator there first, so the community keeps one.", names=", ".join(sorted(blocked))))  # fmt: skip
    facilitated = set(
        await db.scalars(select(Membership.community_id).where(Membership.person_id == person_id, Membership.role == "facilitator"))
    ) - set(alone)
    await db.execute(update(AuditEntry).where(AuditEntry.actor == person.email).values(actor=DELETED))
    # A deactivation or role change names its member at the end of the detail (audit.member_changed).
    named = AuditEntry.kind.in_(("member", "role")), AuditEntry.detail.endswith(" " + person.email, autoescape=True)
    for entry in await db.scalars(select(AuditEntry).where(*named)):
        entry.detail = entry.detail.removesuffix(person.email) + DELETED
    for community_id in facilitated:
        await audit.record(db, community_id, DELETED, "account", "a facilitator deleted their account")
    await db.execute(delete(Community).where(Community.id.in_(alone)))
    await db.execute(delete(Person).where(Person.id == person_id))
