"""Stories and replies through blind-signature tokens (RFC 9474), like pulse answers.

Issue (signed in): the member takes a token of the week's story (or reply) key; the weekly quota
is counted then, under an HMAC. Redeem (anonymous): the story or reply arrives with the token
and no session, so the server stores it without ever knowing who sent it.
"""

from __future__ import annotations

import uuid
from datetime import timedelta

import msgspec
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from safespace import clock, ratelimit
from safespace.db.upsert import insert_once
from safespace.i18n import gettext as _
from safespace.identity.models import Community, Membership
from safespace.privacy import token_keys
from safespace.privacy.crypto import Keyring
from safespace.privacy.token_keys import TokenRefused
from safespace.stories import moderation, responses, services
from safespace.stories.models import Story, StoryKey, StorySpentToken

KINDS = ("story", "reply")
REPLIES_PER_WEEK = 30
# Identifying-details checks one unspent story token may ask for (each warning, then the writer
# confirms or edits): the check compares the text with the community's member names, so without
# a limit it would tell anyone with one token whether any name belongs to a member.
CHECKS_PER_TOKEN = 5
CHECK_WINDOW = timedelta(days=8)  # longer than a story key lives (a week)


class StoryTokenKey(msgspec.Struct):
    key_id: uuid.UUID
    kind: str
    week: str
    jwk: dict[str, str]
    fingerprint: str


async def key_for(db: AsyncSession, keyring: Keyring, community_id: uuid.UUID, kind: str, bits: int) -> StoryTokenKey:
    """This week's key of a kind, made on first use."""
    if kind not in KINDS:
        raise TokenRefused(_("Ask for a story or a reply token."), 404)
    week = services.week_of(clock.now())
    query = select(StoryKey).where(StoryKey.community_id == community_id, StoryKey.week == week, StoryKey.kind == kind)
    key = await db.scalar(query)
    if key is None:  # made on first use; two first uses may race: one key wins
        made = await token_keys.new_key(keyring, "story_key", bits)
        values = {"id": made.id, "community_id": community_id, "week": week, "kind": kind, "public_der": made.public_der,
                  "private_sealed": made.private_sealed, "fingerprint": made.fingerprint}  # fmt: skip
        await insert_once(db, StoryKey, values, ["community_id", "week", "kind"])
        key = await db.scalar(query)
    return _published(key)


async def published_keys(db: AsyncSession, community_id: uuid.UUID) -> list[StoryTokenKey]:
    """This week's story and reply keys of a community, for anyone: never made here, only listed."""
    week = services.week_of(clock.now())
    keys = await db.scalars(
        select(StoryKey).where(StoryKey.community_id == community_id, StoryKey.week == week).order_by(StoryKey.kind)
    )
    return [_published(key) for key in keys]


def _published(key: StoryKey) -> StoryTokenKey:
    return StoryTokenKey(key.id, key.kind, key.week, token_keys.jwk(key.public_der), key.fingerprint)


async def issue(
    db: AsyncSession, keyring: Keyring, secret: bytes, membership: Membership, key_id: uuid.UUID, blinded: bytes,
    stories_per_week: int,
) -> bytes:  # fmt: skip
    """Sign one blinded story or reply token, counting the member's weekly quota; the caller commits."""
    key = await db.scalar(select(StoryKey).where(StoryKey.id == key_id, StoryKey.community_id == membership.community_id))
    if key is None or key.week != services.week_of(clock.now()):
        raise TokenRefused(_("This key is not this week's; reload the page."), 409)
    signature = await token_keys.sign(keyring, "story_key", key.id, key.private_sealed, blinded)
    limit = stories_per_week if key.kind == "story" else REPLIES_PER_WEEK
    await services.count_quota(db, secret, membership.person_id, key.kind, limit)
    return signature


class StoryRedemption(msgspec.Struct, forbid_unknown_fields=True):
    key_id: uuid.UUID
    msg: str
    sig: str
    title: str = ""
    happened: str = ""
    learned: str = ""
    differently: str = ""
    tags: list[str] = msgspec.field(default_factory=list)
    wants_advice: bool = False
    confirmed: bool = False  # shared as it is, after seeing the identifying-details warning


class ReplyRedemption(msgspec.Struct, forbid_unknown_fields=True):
    key_id: uuid.UUID
    msg: str
    sig: str
    story_id: uuid.UUID
    reply: str


async def _spend(db: AsyncSession, key: StoryKey, msg: str, sig: str) -> None:
    token_hash = token_keys.check(key.public_der, msg, sig)
    db.add(StorySpentToken(key_id=key.id, token_hash=token_hash))
    try:
        await db.flush()
    except IntegrityError:
        await db.rollback()
        # Final: what was sent with it was stored (usually this browser's own send whose answer was
        # lost); a new token would store it twice.
        raise TokenRefused(_("This token has been used already."), 409) from None


async def _key(db: AsyncSession, key_id: uuid.UUID, kind: str) -> StoryKey:
    key = await db.get(StoryKey, key_id)
    if key is None or key.kind != kind:
        raise TokenRefused(_("This token's key is unknown or expired: fetch a new token."), 404, fresh_token=True)
    return key


async def redeem_story(db: AsyncSession, keyring: Keyring, secret: bytes, data: StoryRedemption) -> tuple[str | None, list]:
    """(receipt code, []) once stored, or (None, findings) to show before the member confirms.

    Identifying details are checked against the roster of the key's community, as on the
    signed-in path, but only for a token that verifies and is unspent, at most CHECKS_PER_TOKEN
    times per token; the token is spent only when the story is stored.
    """
    key = await _key(db, data.key_id, "story")
    token_hash = token_keys.check(key.public_der, data.msg, data.sig)  # a forged token learns nothing about the roster
    if await db.get(StorySpentToken, (key.id, token_hash)) is not None:
        raise TokenRefused(_("This token has been used already."), 409)  # final, as in _spend
    community = await db.get_one(Community, key.community_id)
    values = {"title": data.title, "happened": data.happened, "learned": data.learned, "differently": data.differently,
              "tags": data.tags, "wants_advice": "1" if data.wants_advice else ""}  # fmt: skip
    text, tags, wants_advice = services.read_form(values, moderation.community_tags(community))
    if not data.confirmed:
        counter = ratelimit.rate_key(secret, "story-check", token_hash.hex())
        if await ratelimit.over_limit(db, counter, CHECKS_PER_TOKEN, CHECK_WINDOW):
            raise TokenRefused(
                _("This text has been checked %(n)s times with this token. Send it as it is, or take a new token.")
                % {"n": CHECKS_PER_TOKEN},
                429,
            )
        findings = await services.identifying_details(db, community.id, text)
        if findings:
            return None, findings
    await _spend(db, key, data.msg, data.sig)
    code = await services.store_story(db, keyring, community.id, text, tags, wants_advice, community.moderate_stories)
    return code, []


async def redeem_reply(db: AsyncSession, keyring: Keyring, data: ReplyRedemption) -> None:
    key = await _key(db, data.key_id, "reply")
    story = await db.scalar(
        select(Story).where(Story.id == data.story_id, Story.community_id == key.community_id, Story.status == "released")
    )
    if story is None:
        raise TokenRefused(_("There is no such story to reply to."), 404)
    await _spend(db, key, data.msg, data.sig)
    await responses.reply(db, keyring, story, data.reply)
