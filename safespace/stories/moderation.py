"""What facilitators do with stories: review, flags, hiding, topics, and counts (never who)."""

from __future__ import annotations

import hashlib
import hmac
import uuid
from collections import Counter
from dataclasses import dataclass
from datetime import date

from sqlalchemy import delete, func, select
from sqlalchemy.ext.asyncio import AsyncSession

from safespace.errors import InvalidInput
from safespace.i18n import gettext as _
from safespace.identity.models import Community
from safespace.privacy.crypto import Keyring, associated_data
from safespace.stories.models import Flag, Reaction, Reply, Story
from safespace.stories.services import DEFAULT_TAGS, SharedStory, StoryText, open_story
from safespace.text import clean_text


def community_tags(community: Community) -> list[str]:
    return list(community.story_tags) if community.story_tags else list(DEFAULT_TAGS)


async def set_tags(db: AsyncSession, community: Community, text: str) -> list[str]:
    tags = list(dict.fromkeys(t for t in (clean_text(line)[:40] for line in text.splitlines()) if t))
    if not tags:
        raise InvalidInput({"tags": _("Keep at least one topic.")})
    if len(tags) > 30:
        raise InvalidInput({"tags": _("Use at most 30 topics.")})
    community.story_tags = tags
    await db.flush()
    return tags


async def review_queue(db: AsyncSession, keyring: Keyring, community_id: uuid.UUID) -> list[SharedStory]:
    stories = await db.scalars(select(Story).where(Story.community_id == community_id, Story.status == "review"))
    return [SharedStory(s, open_story(keyring, s)) for s in stories]


async def moderate(db: AsyncSession, community_id: uuid.UUID, story_id: uuid.UUID, approve: bool, reason: str) -> None:
    """Approved stories join the pending batch (and still go out shuffled); declined never appear."""
    story = await db.get(Story, story_id)
    if story is None or story.community_id != community_id or story.status != "review":
        raise LookupError("no such story waiting for review")
    if approve:
        # An edited story that was out already goes back as it was (same id, same day).
        story.status = "released" if story.released_on else "pending"
        return
    reason = clean_text(reason)
    if not reason:
        raise InvalidInput({"reason": _("Tell the author why, so they can write it differently.")})
    story.status, story.decline_reason = "declined", reason[:500]


def flag_marker(secret: bytes, person_id: uuid.UUID, story_id: uuid.UUID, reply_id: uuid.UUID | None) -> bytes:
    return hmac.new(secret, f"flag:{person_id}:{story_id}:{reply_id}".encode(), hashlib.sha256).digest()


async def flag(db: AsyncSession, secret: bytes, person_id: uuid.UUID, story: Story, reply_id: uuid.UUID | None) -> None:
    """Report a story (or one of its replies) as harmful; a member's second flag changes nothing."""
    if reply_id is not None:
        reply_row = await db.get(Reply, reply_id)
        if reply_row is None or reply_row.story_id != story.id or reply_row.status != "released":
            raise LookupError("no such reply")
    marker = flag_marker(secret, person_id, story.id, reply_id)
    if await db.scalar(select(Flag.id).where(Flag.marker == marker)) is None:
        db.add(Flag(story_id=story.id, reply_id=reply_id, marker=marker))
        await db.flush()


@dataclass
class Flagged:
    story: Story
    text: StoryText
    reply_id: uuid.UUID | None
    reply_text: str | None
    flags: int


async def flagged(db: AsyncSession, keyring: Keyring, community_id: uuid.UUID) -> list[Flagged]:
    rows = await db.execute(
        select(Flag.story_id, Flag.reply_id, func.count())
        .join(Story, Story.id == Flag.story_id)
        .where(Story.community_id == community_id, Story.status == "released")
        .group_by(Flag.story_id, Flag.reply_id)
    )
    found = []
    for story_id, reply_id, count in rows:
        story = await db.get_one(Story, story_id)
        reply_text = None
        if reply_id is not None:
            reply_row = await db.get_one(Reply, reply_id)
            if reply_row.status != "released":
                continue
            reply_text = keyring.open(reply_row.body, associated_data("reply", "body", reply_row.id))
        found.append(Flagged(story, open_story(keyring, story), reply_id, reply_text, count))
    return sorted(found, key=lambda f: -f.flags)


async def hide(db: AsyncSession, community_id: uuid.UUID, story_id: uuid.UUID, reply_id: uuid.UUID | None, reason: str) -> None:
    """A facilitator hides a flagged story or reply; the reason shows on the author's receipt page."""
    story = await db.get(Story, story_id)
    if story is None or story.community_id != community_id:
        raise LookupError("no such story")
    reason = clean_text(reason)[:500]
    if reply_id is None:
        if not reason:
            raise InvalidInput({"reason": _("Tell the author why, so they can write it differently.")})
        story.status, story.decline_reason = "hidden", reason
    else:
        reply_row = await db.get(Reply, reply_id)
        if reply_row is None or reply_row.story_id != story.id:
            raise LookupError("no such reply")
        reply_row.status = "hidden"
    await db.execute(delete(Flag).where(Flag.story_id == story_id, Flag.reply_id == reply_id if reply_id else Flag.reply_id.is_(None)))
    await db.flush()


async def dismiss_flags(db: AsyncSession, community_id: uuid.UUID, story_id: uuid.UUID, reply_id: uuid.UUID | None) -> None:
    story = await db.get(Story, story_id)
    if story is None or story.community_id != community_id:
        raise LookupError("no such story")
    await db.execute(delete(Flag).where(Flag.story_id == story_id, Flag.reply_id == reply_id if reply_id else Flag.reply_id.is_(None)))


@dataclass
class Activity:
    month: str
    stories: int
    replies: int
    reactions: int


async def activity(db: AsyncSession, community_id: uuid.UUID) -> tuple[list[Activity], dict[str, int]]:
    """Counts per month (by release day; reactions by their month) and per topic. Never who."""
    months: dict[str, list[int]] = {}
    stories = list(await db.scalars(select(Story).where(Story.community_id == community_id, Story.status == "released")))
    per_tag: dict[str, int] = {}
    for story in stories:
        months.setdefault(story.released_on.strftime("%Y-%m"), [0, 0, 0])[0] += 1
        for tag in story.tags:
            per_tag[tag] = per_tag.get(tag, 0) + 1
    ids = [s.id for s in stories]
    if ids:
        for day, n in await db.execute(
            select(Reply.released_on, func.count()).where(Reply.story_id.in_(ids), Reply.status == "released").group_by(Reply.released_on)
        ):
            months.setdefault(day.strftime("%Y-%m"), [0, 0, 0])[1] += n
        for month, n in await db.execute(
            select(Reaction.month, func.count()).where(Reaction.story_id.in_(ids)).group_by(Reaction.month)
        ):
            months.setdefault(month, [0, 0, 0])[2] += n
    return [Activity(m, *v) for m, v in sorted(months.items(), reverse=True)], dict(sorted(per_tag.items()))


async def set_release(db: AsyncSession, community: Community, weekday: str, hour: str) -> None:
    try:
        day, at = int(weekday), int(hour)
    except ValueError:
        raise InvalidInput({"release": _("Choose a day of the week and an hour.")}) from None
    if not (0 <= day <= 6 and 0 <= at <= 23):
        raise InvalidInput({"release": _("Choose a day of the week and an hour from 0 to 23.")})
    community.story_release_weekday, community.story_release_hour = day, at
    await db.flush()


# --- counts for the insights pages (vitality, objectives) ---------------------------------


@dataclass
class MonthlyActivity:
    month: str  # e.g. 2026-11
    stories: int  # released that month
    replies: int  # released that month
    reactions: int


async def monthly_activity(db: AsyncSession, community_id: uuid.UUID, months: list[str]) -> list[MonthlyActivity]:
    """Released stories and replies and all reactions per month, for the vitality page.

    Counts of shared things, not of people: a released story is public to every member already.
    Withdrawn or hidden ones are not counted.
    """
    first = date.fromisoformat(months[0] + "-01")
    released = (Story.community_id == community_id) & (Story.status == "released")
    story_days = await db.scalars(select(Story.released_on).where(released, Story.released_on >= first))
    reply_days = await db.scalars(
        select(Reply.released_on)
        .join(Story, Story.id == Reply.story_id)
        .where(released, Reply.status == "released", Reply.released_on >= first)
    )
    reaction_months = await db.execute(
        select(Reaction.month, func.count())
        .join(Story, Story.id == Reaction.story_id)
        .where(released, Reaction.month >= months[0])
        .group_by(Reaction.month)
    )
    stories = Counter(day.strftime("%Y-%m") for day in story_days)
    replies = Counter(day.strftime("%Y-%m") for day in reply_days)
    reactions = dict(reaction_months.tuples().all())
    return [MonthlyActivity(m, stories.get(m, 0), replies.get(m, 0), reactions.get(m, 0)) for m in months]


async def released_since(db: AsyncSession, community_id: uuid.UUID, day: date, until: date | None = None) -> int:
    """How many stories were released on or after a day, and on or before `until` (withdrawn and
    hidden ones not counted)."""
    query = select(func.count()).select_from(Story).where(
        Story.community_id == community_id, Story.status == "released", Story.released_on >= day
    )
    if until is not None:
        query = query.where(Story.released_on <= until)
    return await db.scalar(query) or 0
