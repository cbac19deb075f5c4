"""Sharing, releasing, reading and withdrawing failure stories, callable without HTTP. Replies and
reactions: responses.py."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import logging
import random
import uuid
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from zoneinfo import ZoneInfo

from sqlalchemy import delete, func, select
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.ext.asyncio import AsyncSession

from safespace import clock
from safespace.errors import InvalidInput
from safespace.i18n import gettext as _
from safespace.identity.models import Community, Membership, Person
from safespace.privacy.crypto import Keyring, KeyringError, associated_data
from safespace.stories import receipts
from safespace.stories.identifying import Finding, find_identifying, roster_names
from safespace.stories.models import Reply, Story, StoryKey, StoryQuota, StoryRelease
from safespace.text import clean_text
from safespace.webhooks import services as webhooks

log = logging.getLogger(__name__)

FIELDS = ("title", "happened", "learned", "differently")
MAX_CHARS = {"title": 120, "happened": 4000, "learned": 4000, "differently": 4000}
DEFAULT_TAGS = ("policy design", "stakeholders", "data and evidence", "communication", "implementation", "funding")
BATCH_SIZE = 3  # a batch goes out as soon as this many stories wait
REPLIES_AT_ONCE = 3  # a story's replies go out at once when this many wait, else with the weekly release


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


def read_form(values: dict[str, str], allowed_tags: list[str] | tuple[str, ...] = DEFAULT_TAGS) -> tuple[StoryText, list[str], bool]:
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
    chosen = values.get("tags", [])
    chosen = chosen if isinstance(chosen, list) else [chosen]
    tags = [t for t in chosen if t in allowed_tags]
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


def week_of(moment: datetime) -> str:
    year, week, _day = moment.isocalendar()
    return f"{year}-W{week:02d}"


async def count_quota(db: AsyncSession, secret: bytes, person_id: uuid.UUID, kind: str, limit: int) -> None:
    """One more story (or story token) this week; WeeklyLimit past the limit (the caller rolls back).

    The row is keyed by an HMAC of (kind, member, week): the database alone says nothing of who.
    """
    insert = pg_insert if db.bind.dialect.name == "postgresql" else sqlite_insert
    week = week_of(clock.now())
    prefix = "quota" if kind == "story" else f"quota-{kind}"
    key = hmac.new(secret, f"{prefix}:{person_id}:{week}".encode(), hashlib.sha256).digest()
    counted = await db.execute(
        insert(StoryQuota)
        .values(key=key, week=week, count=1)
        .on_conflict_do_update(index_elements=["key"], set_={"count": StoryQuota.count + 1})
        .returning(StoryQuota.count)
    )
    if counted.scalar_one() > limit:
        raise WeeklyLimit


async def store_story(
    db: AsyncSession, keyring: Keyring, community_id: uuid.UUID, text: StoryText, tags: list[str], wants_advice: bool,
    moderated: bool,
) -> str:  # fmt: skip
    """Put a story in the community's pending batch (or up for review); returns its receipt code."""
    code = receipts.new_code()
    # In a thread: scrypt takes about 30 ms and 16 MiB, which the event loop must not wait for.
    locator, salt, hashed = await asyncio.to_thread(receipts.seal, code)
    story_id = uuid.uuid4()
    db.add(
        Story(
            id=story_id,
            community_id=community_id,
            status="review" if moderated else "pending",
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


async def share(
    db: AsyncSession,
    keyring: Keyring,
    membership: Membership,
    text: StoryText,
    tags: list[str],
    wants_advice: bool,
    weekly_limit: int,
    secret: bytes,
    moderated: bool = False,
) -> str:
    """The signed-in path: count the week's quota, then store; returns the receipt code."""
    await count_quota(db, secret, membership.person_id, "story", weekly_limit)
    return await store_story(db, keyring, membership.community_id, text, tags, wants_advice, moderated)


def open_story(keyring: Keyring, story: Story) -> StoryText:
    return StoryText(**json.loads(keyring.open(story.body, _aad(story.id))))


async def release_due(db: AsyncSession, keyring: Keyring, moment: datetime, weekday: int, hour: int) -> int:
    """Release pending batches: at once from BATCH_SIZE stories, else at the weekly release time.

    Every community's week is marked released once its slot passes, even with nothing waiting:
    a story written later that week waits for the next slot (or for two more), so it never goes
    out alone minutes after it was written. Returns stories plus replies released.
    """
    released = 0
    waiting = dict(
        (await db.execute(select(Story.community_id, func.count()).where(Story.status == "pending").group_by(Story.community_id))).all()
    )
    for community in await db.scalars(select(Community)):
        local = moment.astimezone(ZoneInfo(community.time_zone))
        week = week_of(local)
        when = (
            weekday if community.story_release_weekday is None else community.story_release_weekday,
            hour if community.story_release_hour is None else community.story_release_hour,
        )
        weekly_due = (local.weekday(), local.hour) >= when and await db.get(StoryRelease, (community.id, week)) is None
        count = waiting.get(community.id, 0)
        try:
            async with db.begin_nested():  # one community's failure must not hold back the others'
                here = 0
                if count and (count >= BATCH_SIZE or weekly_due):
                    stories_out = await _release(db, keyring, community.id, local.date())
                    if stories_out:  # noted with the batch, in its savepoint: no count (webhooks/payloads.py)
                        await webhooks.note(db, community.id, "stories.released", moment)
                    here += stories_out
                if weekly_due:
                    db.add(StoryRelease(community_id=community.id, week=week))
                here += await _release_replies(db, keyring, community.id, local.date(), minimum=1 if weekly_due else REPLIES_AT_ONCE)
            released += here
        except Exception:
            log.exception("story release of one community skipped this pass")
    # Past weeks' quota rows and token keys (with their spent tokens) are of no further use.
    await db.execute(delete(StoryQuota).where(StoryQuota.week < week_of(moment - timedelta(days=7))))
    await db.execute(delete(StoryKey).where(StoryKey.week < week_of(moment - timedelta(days=7))))
    await db.flush()
    return released


async def _release(db: AsyncSession, keyring: Keyring, community_id: uuid.UUID, day: date) -> int:
    """Re-insert the batch shuffled, under new ids, dated by the day of release only."""
    batch = list(await db.scalars(select(Story).where(Story.community_id == community_id, Story.status == "pending")))
    opened = []
    for story in batch:
        try:
            opened.append((story, open_story(keyring, story)))
        except KeyringError as exc:
            # Sealed with a key this key file lacks: it waits (the operator puts the key back);
            # the others of the batch go out as they would.
            log.error("a waiting story cannot be opened and stays waiting: %s", exc)
    batch = [story for story, _text in opened]
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


async def _release_replies(
    db: AsyncSession, keyring: Keyring, community_id: uuid.UUID, day: date, minimum: int
) -> int:
    """Release the waiting replies of each story that has at least `minimum` of them, shuffled.

    One reply alone never goes out on its own before the weekly release: its time would point
    to whoever was online then.
    """
    waiting = list(
        await db.scalars(
            select(Reply).join(Story, Story.id == Reply.story_id).where(
                Story.community_id == community_id, Reply.status == "pending"
            )
        )
    )
    by_story: dict[uuid.UUID, list[Reply]] = {}
    for reply in waiting:
        by_story.setdefault(reply.story_id, []).append(reply)
    shuffle = random.SystemRandom().shuffle
    released = 0
    for story_id, replies in by_story.items():
        if len(replies) < minimum:
            continue
        try:
            texts = [keyring.open(r.body, associated_data("reply", "body", r.id)) for r in replies]
        except KeyringError as exc:
            log.error("a story's waiting replies cannot be opened and stay waiting: %s", exc)
            continue
        released += len(replies)
        await db.execute(delete(Reply).where(Reply.id.in_([r.id for r in replies])))
        shuffle(texts)
        start = (await db.scalar(select(func.count()).select_from(Reply).where(Reply.story_id == story_id))) or 0
        for offset, text in enumerate(texts):
            reply_id = uuid.uuid4()
            db.add(Reply(id=reply_id, story_id=story_id, status="released", released_on=day, position=start + offset,
                         body=keyring.seal(text, associated_data("reply", "body", reply_id))))
    return released


async def released_story(db: AsyncSession, community_id: uuid.UUID, story_id: uuid.UUID) -> Story:
    story = await db.get(Story, story_id)
    if story is None or story.community_id != community_id or story.status != "released":
        raise LookupError("no such story")
    return story


async def edit(db: AsyncSession, keyring: Keyring, story: Story, text: StoryText, moderated: bool) -> None:
    """The author changes the text. With moderation on, or after a decline or hide, it is reviewed again."""
    if moderated or story.status in ("declined", "hidden"):
        story.status = "review"  # a released story keeps its id and date; approval puts it back
    story.decline_reason = None
    story.body = keyring.seal(json.dumps(text.__dict__), _aad(story.id))
    await db.flush()


WALL_PAGE = 20  # stories per page of the wall: each one is decrypted, with its replies, to be shown


@dataclass
class WallPage:
    stories: list[SharedStory]
    page: int
    more: bool  # an older page exists


async def wall(
    db: AsyncSession, keyring: Keyring, community_id: uuid.UUID, tag: str | None = None, search: str | None = None,
    page: int = 1, per_page: int = WALL_PAGE,
) -> WallPage:  # fmt: skip
    """One page of released stories, newest release first; filtered by tag and by words in the
    text. Only what the page shows is decrypted, except under a search (the words are in the
    ciphertext): then stories are opened in order until the page is full and one more matches."""
    page = max(1, page)
    released = (
        select(Story)
        .where(Story.community_id == community_id, Story.status == "released")
        .order_by(Story.released_on.desc(), Story.position, Story.id)
    )
    words = [w.lower() for w in (search or "").split() if w]
    if not tag and not words:  # the common visit: the database pages
        rows = list(await db.scalars(released.offset((page - 1) * per_page).limit(per_page + 1)))
        return WallPage([SharedStory(story, open_story(keyring, story)) for story in rows[:per_page]], page, len(rows) > per_page)
    skip, shown = (page - 1) * per_page, []
    for story in await db.scalars(released):
        if tag and tag not in story.tags:
            continue
        text = open_story(keyring, story) if words else None
        if words and not all(word in text.joined().lower() for word in words):
            continue
        if skip:
            skip -= 1
            continue
        if len(shown) == per_page:
            return WallPage(shown, page, True)
        shown.append(SharedStory(story, text or open_story(keyring, story)))
    return WallPage(shown, page, False)


async def receipt_candidates(db: AsyncSession, code: str) -> list[Story]:
    """The stories, in any community, whose receipt locator (the code's first group, kept in
    clear) the code names: the code alone finds the story, with no session to say where."""
    raw = receipts.normalize(code)
    if raw is None:
        return []
    locator = raw[: receipts.GROUP_LENGTH]
    return list(await db.scalars(select(Story).where(Story.receipt_locator == locator)))


async def find_by_receipt(candidates: list[Story], code: str) -> Story | None:
    """The candidate the whole code opens, checked with scrypt."""
    raw = receipts.normalize(code)
    if raw is None:
        return None
    for story in candidates:
        # scrypt takes ~16 MiB and tens of ms: off the event loop.
        if await asyncio.to_thread(receipts.matches, raw, story.receipt_salt, story.receipt_hash):
            return story
    return None


async def withdraw(db: AsyncSession, story: Story) -> None:
    """Gone from every page, search and count; the ciphertext is deleted (secure_delete on SQLite)."""
    await db.execute(delete(Story).where(Story.id == story.id))
