"""Noting events for facilitators' digests (sent by digest.py), and the rules that decide them.

Every figure a digest may carry is computed here from the same released figures as the results
page: a round's community tally counted through surveys.disclosure.group_view.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import delete, select
from sqlalchemy.ext.asyncio import AsyncSession

from safespace.db.upsert import insert_once
from safespace.identity.models import Membership
from safespace.notifications.models import (
    KINDS,
    REPORTED,
    REVIEW,
    Notification,
    NotificationOff,
    NotificationWatch,
)
from safespace.pulse.models import Round
from safespace.pulse.results import tallied
from safespace.pulse.services import COMMUNITY
from safespace.stories.models import Flag, Story
from surveys import disclosure

LOW_SHARE = 0.5  # participation is low below half of the members, or below the previous round's rate


async def released_participation(db: AsyncSession, round_: Round) -> disclosure.GroupView:
    """The community's participation in a round as its results page shows it (P1, P3)."""
    members = int(round_.population.get(COMMUNITY, 0))
    return disclosure.group_view(await tallied(db, round_.id), members, round_.min_group_size, closed=round_.closed)


@dataclass(frozen=True)
class LowParticipation:
    """Why an open round's participation is low. `rate` is None when the results page shows no
    rate (fewer than k have answered): then the mail says so, and nothing more."""

    rate: float | None
    below_half: bool
    previous: Round | None  # the community's previous round, when this round is below its shown rate
    previous_rate: float | None


async def previous_round(db: AsyncSession, round_: Round) -> Round | None:
    """The community's last closed round before this one, whichever survey it belongs to."""
    return await db.scalar(
        select(Round)
        .where(Round.community_id == round_.community_id, Round.closed.is_(True), Round.id != round_.id,
               Round.closes_at <= round_.closes_at)
        .order_by(Round.closes_at.desc())
        .limit(1)
    )  # fmt: skip


async def low_participation(db: AsyncSession, round_: Round) -> LowParticipation | None:
    """Whether an open round's participation is low (`judge`), from its shown figures."""
    if round_.closed:
        return None
    view = await released_participation(db, round_)
    before = await previous_round(db, round_) if view.response_rate is not None else None
    before_view = await released_participation(db, before) if before is not None else None
    return judge(view, before, before_view)


def judge(view: disclosure.GroupView, before: Round | None, before_view: disclosure.GroupView | None) -> LowParticipation | None:
    """Low: the shown rate is below the previous round's shown rate or below half of the members;
    or no rate may be shown yet (fewer than k answered: the round would close without results).
    Decided from shown figures only, so the notice says nothing the results page would hide."""
    if view.response_rate is None:
        return LowParticipation(rate=None, below_half=False, previous=None, previous_rate=None)
    before_rate = before_view.response_rate if before_view is not None else None
    below_previous = before_rate is not None and view.response_rate < before_rate
    below_half = view.response_rate < LOW_SHARE
    if not (below_previous or below_half):
        return None
    return LowParticipation(
        rate=view.response_rate,
        below_half=below_half,
        previous=before if below_previous else None,
        previous_rate=before_rate if below_previous else None,
    )


async def note(db: AsyncSession, community_id: uuid.UUID, kind: str, moment: datetime, round_id: uuid.UUID | None = None) -> int:
    """Note an event for each of the community's active facilitators who has this kind on, once
    per digest (an event already waiting is not noted again). Returns how many were noted."""
    off = select(NotificationOff).where(
        NotificationOff.person_id == Membership.person_id,
        NotificationOff.community_id == community_id,
        NotificationOff.kind == kind,
    )
    people = await db.scalars(
        select(Membership.person_id).where(
            Membership.community_id == community_id,
            Membership.role == "facilitator",
            Membership.status == "active",
            ~off.exists(),
        )
    )
    noted = 0
    for person_id in list(people):
        waiting = await db.scalar(
            select(Notification.id).where(
                Notification.person_id == person_id,
                Notification.community_id == community_id,
                Notification.kind == kind,
                Notification.round_id == round_id if round_id else Notification.round_id.is_(None),
                Notification.claimed_at.is_(None),
            ).limit(1)
        )
        if waiting is None:
            db.add(Notification(person_id=person_id, community_id=community_id, kind=kind, round_id=round_id, noted_at=moment))
            noted += 1
    await db.flush()
    return noted


async def waiting_items(db: AsyncSession) -> dict[tuple[uuid.UUID, str], set[str]]:
    """(community, kind) -> the ids of stories waiting for review, and of reports on shown stories
    and replies (as the review page lists them)."""
    found: dict[tuple[uuid.UUID, str], set[str]] = {}
    for community_id, story_id in await db.execute(select(Story.community_id, Story.id).where(Story.status == "review")):
        found.setdefault((community_id, REVIEW), set()).add(str(story_id))
    for community_id, flag_id in await db.execute(
        select(Story.community_id, Flag.id).join(Story, Story.id == Flag.story_id).where(Story.status == "released")
    ):
        found.setdefault((community_id, REPORTED), set()).add(str(flag_id))
    return found


async def note_waiting(db: AsyncSession, moment: datetime) -> int:
    """From the schedule: note stories newly waiting for review and new reports, each item once."""
    current = await waiting_items(db)
    # The next full hour: a row noting when a story arrived or a member reported one must not say
    # to the minute when that was (a copy of the database could set it beside a session's
    # activity). Rounded up, never down, so no digest follows the previous one within the hour.
    hour = moment.replace(minute=0, second=0, microsecond=0)
    moment = hour if hour == moment else hour + timedelta(hours=1)
    watches = {(w.community_id, w.kind): w for w in await db.scalars(select(NotificationWatch))}
    noted = 0
    for key in set(current) | set(watches):
        community_id, kind = key
        now_waiting = current.get(key, set())
        watch = watches.get(key)
        seen = set(watch.seen) if watch is not None else set()
        if now_waiting - seen:
            noted += await note(db, community_id, kind, moment)
        if now_waiting != seen:
            if watch is None:
                await insert_once(db, NotificationWatch, {"community_id": community_id, "kind": kind, "seen": sorted(now_waiting)},
                                  ["community_id", "kind"])  # fmt: skip
            else:
                watch.seen = sorted(now_waiting)
    await db.flush()
    return noted


# --- each facilitator's choice, per community and kind --------------------------------------------


async def kinds_on(db: AsyncSession, person_id: uuid.UUID, community_id: uuid.UUID) -> set[str]:
    off = set(await db.scalars(select(NotificationOff.kind).where(
        NotificationOff.person_id == person_id, NotificationOff.community_id == community_id)))  # fmt: skip
    return set(KINDS) - off


async def choose_kinds(db: AsyncSession, person_id: uuid.UUID, community_id: uuid.UUID, on: set[str]) -> None:
    """Keep the kinds in `on` (unknown names are ignored), turn the others off; notifications
    already waiting of a kind turned off are dropped."""
    await db.execute(delete(NotificationOff).where(
        NotificationOff.person_id == person_id, NotificationOff.community_id == community_id))  # fmt: skip
    off = [kind for kind in KINDS if kind not in on]
    db.add_all([NotificationOff(person_id=person_id, community_id=community_id, kind=kind) for kind in off])
    if off:
        await db.execute(delete(Notification).where(
            Notification.person_id == person_id, Notification.community_id == community_id,
            Notification.kind.in_(off), Notification.claimed_at.is_(None)))  # fmt: skip
    await db.flush()
