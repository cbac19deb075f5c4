"""Writing and reading the audit log (audit/models.py says what is never written)."""

from __future__ import annotations

import csv
import io
import uuid
from collections.abc import Sequence
from typing import TYPE_CHECKING

from sqlalchemy import func, or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from safespace import clock
from safespace.audit.models import AuditEntry
from safespace.identity.models import Community

if TYPE_CHECKING:
    from litestar import Request

OPERATOR = "operator"  # the actor of what the `safespace` command does
PER_PAGE = 50

# Every kind of act the log keeps, with its label on the page and in the export.
KINDS = (
    "settings",  # k, the comment threshold, the community's name or time zone
    "survey",  # a survey created, changed or its schedule edited; a custom instrument created
    "round-closed",  # a round closed early by a facilitator
    "moderation",  # a story approved, hidden or restored
    "member",  # a member deactivated or reactivated
    "role",  # a member made facilitator or member
    "export",  # results downloaded
    "keys",  # encryption keys rotated
    "backup",  # a backup written
    "sso",  # single sign-on required or not
    "retention",  # how long results and stories are kept, and what the schedule deleted under it
    "account",  # a facilitator deleted their own account (their earlier entries name no one since)
    "webhook",  # a webhook endpoint registered or removed, or its secret rotated
)


async def record(db: AsyncSession, community_id: uuid.UUID | None, actor: str, kind: str, detail: str = "") -> None:
    """Add one entry, in the caller's transaction: the act and its record commit together."""
    assert kind in KINDS, kind
    db.add(AuditEntry(community_id=community_id, actor=actor, kind=kind, detail=detail, at=clock.now()))
    await db.flush()


def _of(community_id: uuid.UUID):  # noqa: ANN202 - a SQL condition
    # The community's own entries and the installation's (backups, key rotations) that concern it too.
    return or_(AuditEntry.community_id == community_id, AuditEntry.community_id.is_(None))


async def page_of(db: AsyncSession, community_id: uuid.UUID, page: int) -> tuple[Sequence[AuditEntry], int, int]:
    """One page of entries, newest first; the page's number (the one asked for, kept in range) and the number of pages."""
    total = await db.scalar(select(func.count()).select_from(AuditEntry).where(_of(community_id))) or 0
    pages = max(1, -(-total // PER_PAGE))
    page = min(max(page, 1), pages)
    rows = await db.scalars(
        select(AuditEntry).where(_of(community_id)).order_by(AuditEntry.at.desc(), AuditEntry.id).limit(PER_PAGE).offset((page - 1) * PER_PAGE)
    )
    return rows.all(), page, pages


def _cell(text: str) -> str:
    """A spreadsheet must not run a cell as a formula (CSV injection): such a cell gets a leading quote."""
    return "'" + text if text[:1] in ("=", "+", "-", "@", "\t", "\r") else text


async def as_csv(db: AsyncSession, community_id: uuid.UUID) -> str:
    rows = await db.scalars(select(AuditEntry).where(_of(community_id)).order_by(AuditEntry.at.desc(), AuditEntry.id))
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(["when_utc", "who", "what", "detail"])
    for entry in rows:
        writer.writerow([entry.at.strftime("%Y-%m-%d %H:%M:%S"), _cell(entry.actor), entry.kind, _cell(entry.detail)])
    return out.getvalue()


async def downloaded(request: Request, db: AsyncSession, what: str) -> None:
    """An export was downloaded: logged when a facilitator of the community of the path did it
    (never a member: reading results is never recorded)."""
    viewer = request.user
    community_id = request.path_params.get("community_id")
    if viewer is None or community_id is None:
        return
    if any(p.community_id == community_id and p.role == "facilitator" for p in viewer.places):
        await record(db, community_id, viewer.email, "export", f"{what} ({request.url.path.rsplit('.', 1)[-1]})")


async def member_changed(db: AsyncSession, community_id: uuid.UUID, actor: str, email: str, *, status: str | None = None, role: str | None = None) -> None:
    """A deactivation, reactivation or role change (a team move is not logged), in the same words
    whether the members page or the API made it."""
    if status is not None:
        await record(db, community_id, actor, "member", f"{'deactivate' if status == 'deactivated' else 'reactivate'} {email}")
    if role is not None:
        await record(db, community_id, actor, "role", f"make_{role} {email}")


def settings_of(community: Community) -> tuple:
    """What a settings change is logged by (read before the change, compared after)."""
    return (community.min_group_size, community.comment_threshold, community.name, community.time_zone)


async def settings_changed(db: AsyncSession, community: Community, actor: str, before: tuple) -> None:
    after = settings_of(community)
    if after != before:
        detail = f"k {before[0]} → {after[0]}; comment threshold {before[1]} → {after[1]}; name {after[2]}; time zone {after[3]}"
        await record(db, community.id, actor, "settings", detail)
