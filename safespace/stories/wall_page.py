"""The story wall as a member sees it, read in a few statements on bare connections and kept
rendered where it is the same for everyone.

A visit reads, by index and with no ORM session (db.engine.Reads): the community's name, topics,
wall revision and this week's published keys; and, for this member only, which stories of the
page they reacted to (their own HMAC markers, responses.reaction_markers) and the open rounds
they have taken no token for. The page's content (stories/_wall_content.html) is rendered with
*slots* for what is the viewer's own: the CSRF field and each reaction button's pressed state.
An unfiltered page of the wall is kept in that form, per process and bounded, keyed by the
community as read (name, topics, keys and wall revision), the page, the language and the
viewer's role (facilitators get a link to moderation). The wall revision is bumped by the
database's own triggers whenever a released story, a released reply or a reaction is written
(migration 0022), so a kept page is used without reading its stories, replies or counts, and
every replica sees a change at its next visit. Only a page not kept (or no longer right) reads
them, in one statement. The slots are filled on every visit from the member's own reads, so no
member's state is ever kept, let alone shown to another. A search or a topic filter decrypts to
choose its stories (services.wall) and is never kept.
"""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any, NamedTuple

from markupsafe import Markup
from sqlalchemy import Text, bindparam, cast, func, null, select, union_all

from safespace import clock
from safespace.db.batch import padded
from safespace.db.engine import Reads
from safespace.identity.models import Community
from safespace.privacy.crypto import Keyring, associated_data
from safespace.pulse.models import Participation, Round
from safespace.stories.models import Reaction, Reply, Story, StoryKey
from safespace.stories.responses import REACTIONS, reaction_markers
from safespace.stories.services import DEFAULT_TAGS, WALL_PAGE, SharedStory, open_story, week_of

MARK = "\x00"  # around a slot's name; clean_text keeps control characters out of all stored text
CSRF = "csrf"


def slot(name: str) -> str:
    return f"{MARK}{name}{MARK}"


def pressed_slot(story_id: uuid.UUID, kind: str) -> str:
    return slot(f"pressed:{story_id}:{kind}")


class PublishedKey(NamedTuple):
    kind: str  # "story" | "reply"
    fingerprint: str


@dataclass(frozen=True)
class WallCommunity:
    id: uuid.UUID
    name: str
    tags: tuple[str, ...]  # the topics members choose from
    keys: tuple[PublishedKey, ...]  # this week's, the same for every member
    revision: int  # Community.wall_revision: changes with anything the wall shows


@dataclass(frozen=True)
class RoundRef:
    id: uuid.UUID


@dataclass(frozen=True)
class OpenRoundRef:
    """What templates/_private.html's round_tokens needs of an open round the member has no token for."""

    round: RoundRef
    state: str = "open"


_COMMUNITY = (
    select(Community.name, Community.story_tags, Community.wall_revision, StoryKey.kind, StoryKey.fingerprint)
    .select_from(Community)
    .outerjoin(StoryKey, (StoryKey.community_id == Community.id) & (StoryKey.week == bindparam("week")))
    .where(Community.id == bindparam("community_id"))
    .order_by(StoryKey.kind)
)
def _reactions(kind: str):  # noqa: ANN202 - a labelled scalar subquery
    return select(func.count(Reaction.id)).where(Reaction.story_id == Story.id, Reaction.kind == kind).scalar_subquery().label(kind)


# One page of stories (one more, to know whether an older page exists) with each story's reaction
# counts (one index range per story and kind) and its released replies, one row per reply (or one
# with no reply): the page in one statement. The topics as their JSON text: the rows as read are
# then a key of the kept page as they are.
_STORIES = (
    select(Story.id, Story.released_on, Story.position, cast(Story.tags, Text).label("tags"), Story.wants_advice, Story.body,
           *(_reactions(kind) for kind in REACTIONS))  # fmt: skip
    .where(Story.community_id == bindparam("community_id"), Story.status == "released")
    .order_by(Story.released_on.desc(), Story.position, Story.id)
    .limit(bindparam("limit"))
    .offset(bindparam("offset"))
    .subquery("page")
)
_PAGE = (
    select(_STORIES, Reply.id.label("reply_id"), Reply.body.label("reply_body"))
    .select_from(_STORIES.outerjoin(Reply, (Reply.story_id == _STORIES.c.id) & (Reply.status == "released")))
    .order_by(_STORIES.c.released_on.desc(), _STORIES.c.position, _STORIES.c.id, Reply.position, Reply.id)
)
_REPLIES = (
    select(Reply.id, Reply.story_id, Reply.body)
    .where(Reply.story_id.in_(bindparam("story_ids", expanding=True)), Reply.status == "released")
    .order_by(Reply.position, Reply.id)
)
_COUNTS = (
    select(Reaction.story_id, Reaction.kind, func.count())
    .where(Reaction.story_id.in_(bindparam("story_ids", expanding=True)))
    .group_by(Reaction.story_id, Reaction.kind)
)
# The member's own, in one statement: markers of their reactions among those of the page (round
# columns empty), then the open rounds they have taken no token for (marker empty).
_OWN = union_all(
    select(Reaction.marker, cast(null(), Round.id.type).label("round_id"), cast(null(), Round.closes_at.type).label("closes_at"))
    .where(Reaction.marker.in_(bindparam("markers", expanding=True))),
    select(cast(null(), Reaction.marker.type), Round.id, Round.closes_at)
    .outerjoin(Participation, (Participation.round_id == Round.id) & (Participation.person_id == bindparam("person_id")))
    .where(Round.community_id == bindparam("community_id"), Round.closed.is_(False), Round.opens_at <= bindparam("moment"),
           Round.closes_at > bindparam("moment"), Participation.round_id.is_(None)),
)  # fmt: skip


async def community(reads: Reads, community_id: uuid.UUID, moment: datetime) -> WallCommunity | None:
    rows = await reads.rows(_COMMUNITY, {"community_id": community_id, "week": week_of(moment)})
    if not rows:
        return None
    name, tags, revision = rows[0][:3]
    keys = tuple(PublishedKey(kind, fingerprint) for *_community, kind, fingerprint in rows if kind is not None)
    return WallCommunity(community_id, name, tuple(tags) if tags else DEFAULT_TAGS, keys, revision)


class PageRead(NamedTuple):
    stories: list[Any]  # one row per story, newest release first (not decrypted)
    more: bool  # an older page exists
    replies: dict[uuid.UUID, list[tuple[uuid.UUID, bytes]]]  # story id -> [(reply id, sealed body)], shuffled order


async def page_stories(reads: Reads, community_id: uuid.UUID, page: int) -> PageRead:
    """One unfiltered page of released stories with their released replies, in one statement."""
    rows = await reads.rows(_PAGE, {"community_id": community_id, "limit": WALL_PAGE + 1, "offset": (page - 1) * WALL_PAGE})
    stories: dict[uuid.UUID, Any] = {}
    replies: dict[uuid.UUID, list[tuple[uuid.UUID, bytes]]] = {}
    for row in rows:
        stories.setdefault(row.id, row)
        if row.reply_id is not None:
            replies.setdefault(row.id, []).append((row.reply_id, row.reply_body))
    shown = list(stories.values())
    return PageRead(shown[:WALL_PAGE], len(shown) > WALL_PAGE, replies)


async def replies(reads: Reads, story_ids: list[uuid.UUID]) -> dict[uuid.UUID, list[tuple[uuid.UUID, bytes]]]:
    """For stories chosen by a search or a topic: story id -> [(reply id, sealed body)] of their
    released replies, in their shuffled order."""
    found: dict[uuid.UUID, list[tuple[uuid.UUID, bytes]]] = {}
    for reply_id, story_id, body in await reads.rows(_REPLIES, {"story_ids": padded(story_ids)}) if story_ids else []:
        found.setdefault(story_id, []).append((reply_id, body))
    return found


def page_counts(rows: list[Any]) -> dict[uuid.UUID, dict[str, int]]:
    """story id -> {kind: count}, from _PAGE's rows (a column per kind)."""
    return {row.id: {kind: row._mapping[kind] for kind in REACTIONS} for row in rows}


async def counts(reads: Reads, story_ids: list[uuid.UUID]) -> dict[uuid.UUID, dict[str, int]]:
    """story id -> {kind: count}, for stories chosen by a search or a topic (not read with _PAGE)."""
    found: dict[uuid.UUID, dict[str, int]] = {}
    for story_id, kind, n in await reads.rows(_COUNTS, {"story_ids": padded(story_ids)}) if story_ids else []:
        found.setdefault(story_id, {})[kind] = n
    return found


async def own_state(
    reads: Reads, secret: bytes, community_id: uuid.UUID, person_id: uuid.UUID, reacted: tuple[tuple[uuid.UUID, str], ...]
) -> tuple[set[tuple[uuid.UUID, str]], list[OpenRoundRef]]:
    """This member's: which of the page's reactions (story, kind) with a count are theirs, and the
    open rounds they have taken no token for (the page takes them ahead of use, templates/_private.html).
    A kind nobody chose on a story cannot be the member's: no marker is worked out or looked up for it."""
    mine = reaction_markers(secret, person_id, reacted)
    rows = await reads.rows(_OWN, {"markers": padded(mine), "community_id": community_id, "person_id": person_id,
                                   "moment": clock.now()})  # fmt: skip
    pressed = {mine[marker] for marker, _round, _closes in rows if marker is not None}
    rounds = sorted((closes_at, round_id) for marker, round_id, closes_at in rows if marker is None)
    return pressed, [OpenRoundRef(RoundRef(round_id)) for _closes, round_id in rounds]


@dataclass(frozen=True)
class WallStory:
    """What the wall shows of a story besides its text."""

    id: uuid.UUID
    released_on: date
    tags: list[str]
    wants_advice: bool


def opened(keyring: Keyring, rows: list[Any], replies: dict) -> tuple[list[SharedStory], dict]:
    """The stories (_PAGE's rows, or Story objects chosen by a search) and their replies
    decrypted, for rendering."""
    texts = {
        story_id: [(reply_id, keyring.open(body, associated_data("reply", "body", reply_id))) for reply_id, body in found]
        for story_id, found in replies.items()
    }
    shown = []
    for row in rows:
        tags = json.loads(row.tags) if isinstance(row.tags, str) else row.tags
        shown.append(SharedStory(WallStory(row.id, row.released_on, tags or [], row.wants_advice), open_story(keyring, row)))
    return shown, texts


class Rendered(NamedTuple):
    """A page's content split at its slots (even items are text, odd ones slot names), and the
    (story, kind) pairs on it with at least one reaction: the viewer's own can only be among them."""

    parts: tuple[str, ...]
    reacted: tuple[tuple[uuid.UUID, str], ...]

    @classmethod
    def of(cls, content: str, counts: dict[uuid.UUID, dict[str, int]]) -> Rendered:
        reacted = tuple((story_id, kind) for story_id, kinds in counts.items() for kind in REACTIONS if kinds.get(kind))
        return cls(tuple(content.split(MARK)), reacted)

    def filled(self, csrf_input: str, pressed: set[tuple[uuid.UUID, str]]) -> Markup:
        """The content with this viewer's CSRF field and pressed buttons."""
        on = {f"pressed:{story_id}:{kind}" for story_id, kind in pressed}

        def fill(name: str) -> str:
            if name == CSRF:
                return csrf_input
            return "true" if name in on else "false"

        return Markup("".join(part if n % 2 == 0 else fill(part) for n, part in enumerate(self.parts)))


# Unfiltered wall pages by (WallCommunity, page, language, role).
_KEPT: dict[tuple, Rendered] = {}
_KEPT_MAX = 256  # a full cache starts again


def kept(key: tuple) -> Rendered | None:
    return _KEPT.get(key)


def keep(key: tuple, rendered: Rendered) -> Rendered:
    if len(_KEPT) >= _KEPT_MAX:
        _KEPT.clear()
    _KEPT[key] = rendered
    return rendered
