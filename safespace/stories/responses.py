"""Replies and reactions to a released story, callable without HTTP. A reply waits sealed and
goes out shuffled with the story releases (services._release_replies); a reaction is counted
under an HMAC marker of member, story and kind, so nothing stored names who reacted."""

from __future__ import annotations

import hmac
import uuid
from collections.abc import Iterable

from sqlalchemy import delete, func, select
from sqlalchemy.ext.asyncio import AsyncSession

from safespace import clock
from safespace.errors import InvalidInput
from safespace.i18n import gettext as _
from safespace.privacy.crypto import Keyring, associated_data
from safespace.stories.models import Reaction, Reply, Story
from safespace.text import clean_text

REACTIONS = ("been_there", "helps_me", "thank_you")
MAX_REPLY_CHARS = 2000


async def reply(db: AsyncSession, keyring: Keyring, story: Story, text: str) -> None:
    text = clean_text(text, multiline=True)
    if not text:
        raise InvalidInput({"reply": _("Write a reply first.")})
    if len(text) > MAX_REPLY_CHARS:
        raise InvalidInput({"reply": _("Keep your reply to %(n)s characters or fewer.") % {"n": MAX_REPLY_CHARS}})
    reply_id = uuid.uuid4()
    db.add(Reply(id=reply_id, story_id=story.id, status="pending", released_on=None, position=0,
                 body=keyring.seal(text, associated_data("reply", "body", reply_id))))
    await db.flush()


async def released_replies(
    db: AsyncSession, keyring: Keyring, story_ids: list[uuid.UUID]
) -> dict[uuid.UUID, list[tuple[uuid.UUID, str]]]:
    found: dict[uuid.UUID, list[tuple[uuid.UUID, str]]] = {}
    rows = await db.scalars(
        select(Reply).where(Reply.story_id.in_(story_ids), Reply.status == "released").order_by(Reply.position)
    )
    for r in rows:
        found.setdefault(r.story_id, []).append((r.id, keyring.open(r.body, associated_data("reply", "body", r.id))))
    return found


def reaction_marker(secret: bytes, person_id: uuid.UUID, story_id: uuid.UUID, kind: str) -> bytes:
    return hmac.digest(secret, f"reaction:{person_id}:{story_id}:{kind}".encode(), "sha256")


def reaction_markers(
    secret: bytes, person_id: uuid.UUID, reacted: Iterable[tuple[uuid.UUID, str]]
) -> dict[bytes, tuple[uuid.UUID, str]]:
    """reaction_marker of this member for each (story, kind) -> (story, kind): the wall works out
    one per kind with a reaction on each story it shows, so each id is turned into text once."""
    found, prefix, last = {}, "", None
    for story_id, kind in reacted:  # a story's kinds come together: its id is turned into text once
        if story_id != last:
            prefix, last = f"reaction:{person_id}:{story_id}:", story_id
        found[hmac.digest(secret, (prefix + kind).encode(), "sha256")] = (story_id, kind)
    return found


async def toggle_reaction(
    db: AsyncSession, secret: bytes, person_id: uuid.UUID, story: Story, kind: str
) -> bool:
    """Add the member's reaction of this kind, or take it back; True if it is now there."""
    if kind not in REACTIONS or story.status != "released":
        raise InvalidInput({"reaction": _("That reaction is not available.")})
    marker = reaction_marker(secret, person_id, story.id, kind)
    removed = await db.execute(delete(Reaction).where(Reaction.marker == marker))
    if removed.rowcount:
        return False
    db.add(Reaction(story_id=story.id, kind=kind, month=clock.now().strftime("%Y-%m"), marker=marker))
    await db.flush()
    return True


async def reaction_counts(db: AsyncSession, story_ids: list[uuid.UUID]) -> dict[uuid.UUID, dict[str, int]]:
    counts: dict[uuid.UUID, dict[str, int]] = {}
    rows = await db.execute(
        select(Reaction.story_id, Reaction.kind, func.count()).where(Reaction.story_id.in_(story_ids))
        .group_by(Reaction.story_id, Reaction.kind)
    )
    for story_id, kind, n in rows:
        counts.setdefault(story_id, {})[kind] = n
    return counts
