"""Sharing, releasing, reading and withdrawing failure stories, callable without HTTP."""

from __future__ import annotations

import json
import random
import uuid
from dataclasses import dataclass
from datetime import date, datetime
from zoneinfo import ZoneInfo

from sqlalchemy import delete, func, select
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.ext.asyncio import AsyncSession

from safespace.i18n import gettext as _
from safespace.identity.models import Community, Membership, Person
from safespace.identity.services import InvalidInput, clean_text, now
from safespace.privacy.crypto import Keyring, associated_data
from safespace.stories import receipts
from safespace.stories.identifying import Finding, find_identifying, roster_names
from safespace.stories.models import Story, StoryQuota, StoryRelease

FIELDS = ("title", "happened", "learned", "differently")
MAX_CHARS = {"title": 120, "happened": 4000, "learned": 4000, "differently": 4000}
DEFAULT_TAGS = ("policy design", "stakeholders", "data and evidence", "communication", "implementation", "funding")
BATCH_SIZE = 3  # a batch goes out as soon as this many stories wait


class WeeklyLimit(Exception):
    """The member has shared the most stories allowed this week."""


@dataclass
class StoryText:
    title: str
    happened: str
    learned: str
    differently: str

    def joined(self) -> str:
        return "\n".join([self.title, self.happened, self.learned, self.differently])


@dataclass
class SharedStory:
    story: Story
    text: StoryText


def _aad(story_id: uuid.UUID) -> bytes:
    return associated_data("story", "body", story_id)


def read_form(values: dict[str, str]) -> tuple[StoryText, list[str], bool]:
    errors: dict[str, str] = {}
    fields = {}
    for name in FIELDS:
        value = clean_text(values.get(name, ""), multiline=name != "title")
        if len(value) > MAX_CHARS[name]:
            errors[name] = _("Keep this part to %(n)s characters or fewer.") % {"n": MAX_CHARS[name]}
        fields[name] = value
    text = StoryText(**fields)
    if not any(fields.values()):
        errors["happened"] = _("Write at least what happened, or what you learned.")
    tags = [t for t in values.get("tags", []) if t in DEFAULT_TAGS] if isinstance(values.get("tags"), list) else (
        [values["tags"]] if values.get("tags") in DEFAULT_TAGS else []
    )
    if errors:
        raise InvalidInput(errors)
    return text, tags, bool(values.get("wants_advice"))


async def identifying_details(db: AsyncSession, community_id: uuid.UUID, text: StoryText) -> list[Finding]:
    rows = (
        await db.execute(
            select(Person.display_name, Person.email)
            .join(Membership, Membership.person_id == Person.id)
            .where(Membership.community_id == community_id, Membership.status != "deactivated")
        )
    ).all()
    names = roster_names([r.display_name for r in rows], [r.email for r in rows])
    return find_identifying(text.joined(), names)


def _week(moment: datetime) -> str:
    year, week, _day = moment.isocalendar()
    return f"{year}-W{week:02d}"


async def share(
    db: AsyncSession,
    keyring: Keyring,
    membership: Membership,
    text: StoryText,
    tags: list[str],
    wants_advice: bool,
    weekly_limit: int,
) -> str:
    """Store a story in the community's pending batch; returns its receipt code (shown once)."""
    insert = pg_insert if db.bind.dialect.name == "postgresql" else sqlite_insert
    counted = await db.execute(
        insert(StoryQuota)
        .values(person_id=membership.person_id, week=_week(now()), count=1)
        .on_conflict_do_update(index_elements=["person_id", "week"], set_={"count": StoryQuota.count + 1})
        .returning(StoryQuota.count)
    )
    if counted.scalar_one() > weekly_limit:
        raise WeeklyLimit  # the caller answers with an error, so the count is rolled back
    code = receipts.new_code()
    locator, salt, hashed = receipts.seal(code)
    story_id = uuid.uuid4()
    db.add(
        Story(
            id=story_id,
            community_id=membership.community_id,
            status="pending",
            released_on=None,
            position=0,
            tags=tags,
            wants_advice=wants_advice,
            body=keyring.seal(json.dumps(text.__dict__), _aad(story_id)),
            receipt_locator=locator,
            receipt_salt=salt,
            receipt_hash=hashed,
        )
    )
    await db.flush()
    return code


def open_story(keyring: Keyring, story: Story) -> StoryText:
    return StoryText(**json.loads(keyring.open(story.body, _aad(story.id))))


async def release_due(db: AsyncSession, keyring: Keyring, moment: datetime, weekday: int, hour: int) -> int:
    """Release pending batches: at once from BATCH_SIZE stories, else at the weekly release hour."""
    released = 0
    pending = (
        await db.execute(select(Story.community_id, func.count()).where(Story.status == "pending").group_by(Story.community_id))
    ).all()
    for community_id, count in pending:
        community = await db.get_one(Community, community_id)
        local = moment.astimezone(ZoneInfo(community.time_zone))
        week = _week(local)
        weekly_due = (local.weekday(), local.hour) >= (weekday, hour) and await db.get(
            StoryRelease, (community_id, week)
        ) is None
        if count >= BATCH_SIZE or weekly_due:
            released += await _release(db, keyring, community_id, local.date())
        if weekly_due:
            db.add(StoryRelease(community_id=community_id, week=week))
    await db.flush()
    return released


async def _release(db: AsyncSession, keyring: Keyring, community_id: uuid.UUID, day: date) -> int:
    """Re-insert the batch shuffled, under new ids, dated by the day of release only."""
    batch = list(await db.scalars(select(Story).where(Story.community_id == community_id, Story.status == "pending")))
    opened = [(story, open_story(keyring, story)) for story in batch]
    await db.execute(delete(Story).where(Story.id.in_([s.id for s in batch])))
    random.SystemRandom().shuffle(opened)
    for position, (old, text) in enumerate(opened):
        story_id = uuid.uuid4()
        db.add(
            Story(
                id=story_id,
                community_id=community_id,
                status="released",
                released_on=day,
                position=position,
                tags=old.tags,
                wants_advice=old.wants_advice,
                body=keyring.seal(json.dumps(text.__dict__), _aad(story_id)),
                receipt_locator=old.receipt_locator,
                receipt_salt=old.receipt_salt,
                receipt_hash=old.receipt_hash,
            )
        )
    return len(opened)


async def wall(
    db: AsyncSession, keyring: Keyring, community_id: uuid.UUID, tag: str | None = None, search: str | None = None
) -> list[SharedStory]:
    """Released stories, newest release first; filtered by tag and by words in the text."""
    stories = await db.scalars(
        select(Story)
        .where(Story.community_id == community_id, Story.status == "released")
        .order_by(Story.released_on.desc(), Story.position)
    )
    shown = []
    words = [w.lower() for w in (search or "").split() if w]
    for story in stories:
        if tag and tag not in story.tags:
            continue
        text = open_story(keyring, story)
        haystack = text.joined().lower()
        if all(word in haystack for word in words):
            shown.append(SharedStory(story, text))
    return shown


async def find_by_receipt(db: AsyncSession, community_id: uuid.UUID, code: str) -> Story | None:
    raw = receipts.normalize(code)
    if raw is None:
        return None
    candidates = await db.scalars(
        select(Story).where(Story.community_id == community_id, Story.receipt_locator == raw[: receipts.GROUP_LENGTH])
    )
    for story in candidates:
        if receipts.matches(raw, story.receipt_salt, story.receipt_hash):
            return story
    return None


async def withdraw(db: AsyncSession, story: Story) -> None:
    """Gone from every page, search and count; the ciphertext is deleted (secure_delete on SQLite)."""
    await db.execute(delete(Story).where(Story.id == story.id))
