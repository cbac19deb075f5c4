"""Failure stories: no author, no time finer than a day, random ids, text sealed at rest."""

from __future__ import annotations

import uuid
from datetime import date

from sqlalchemy import JSON, Boolean, Date, ForeignKey, Integer, LargeBinary, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from safespace.db.base import Base, RandomId


class Story(RandomId, Base):
    """One story. Who wrote it is nowhere: only the receipt code (held by the author) finds it again.

    Pending stories wait in their community's batch; at release they are re-inserted in a
    shuffled order under new ids, so neither ids nor row order pair them with anything.
    """

    __tablename__ = "story"

    community_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("community.id", ondelete="CASCADE"), index=True)
    status: Mapped[str] = mapped_column(String(16))  # "review" | "pending" | "released" | "declined" | "hidden"
    decline_reason: Mapped[str | None] = mapped_column(String(500))  # declined or hidden: shown with the receipt
    released_on: Mapped[date | None] = mapped_column(Date)  # a day, never a time
    position: Mapped[int] = mapped_column(Integer, default=0)  # shuffled order within its release
    tags: Mapped[list] = mapped_column(JSON)
    wants_advice: Mapped[bool] = mapped_column(Boolean, default=False)
    body: Mapped[bytes] = mapped_column(LargeBinary)  # sealed JSON: title, happened, learned, differently
    # The receipt: a public locator finds the row, the rest is checked against a slow scrypt hash.
    receipt_locator: Mapped[str] = mapped_column(String(4), index=True)
    receipt_salt: Mapped[bytes] = mapped_column(LargeBinary(16))
    receipt_hash: Mapped[bytes] = mapped_column(LargeBinary(32))


class StoryQuota(Base):
    """How many stories a member shared in a week: nothing here points to a story.

    The member is an HMAC of (member, week) under the installation secret, so a copy of the
    database does not say who wrote that week; past weeks are deleted by the schedule.
    """

    __tablename__ = "story_quota"
    __table_args__ = {"sqlite_with_rowid": False}

    key: Mapped[bytes] = mapped_column(LargeBinary(32), primary_key=True)
    week: Mapped[str] = mapped_column(String(8), index=True)  # ISO year and week, e.g. 2026-W48
    count: Mapped[int] = mapped_column(Integer, default=0)


class StoryRelease(Base):
    """The weekly release of a community's batch happened for this week."""

    __tablename__ = "story_release"

    community_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("community.id", ondelete="CASCADE"), primary_key=True)
    week: Mapped[str] = mapped_column(String(8), primary_key=True)


class Reaction(RandomId, Base):
    """One reaction: counted per story and kind, never listed.

    `marker` is HMAC-SHA256(installation secret, member, story, kind): it makes "one of each kind
    per member" a unique constraint without storing the member. A copy of the database alone
    cannot tell who reacted; whoever also holds the secret key file could test each member
    (see docs/THREAT_MODEL.md).
    """

    __tablename__ = "reaction"

    story_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("story.id", ondelete="CASCADE"), index=True)
    kind: Mapped[str] = mapped_column(String(16))  # "been_there" | "helps_me" | "thank_you"
    month: Mapped[str] = mapped_column(String(7))  # e.g. 2026-11: for monthly counts, nothing finer
    marker: Mapped[bytes] = mapped_column(LargeBinary(32), unique=True)


class Reply(RandomId, Base):
    """A reply to a story: anonymous like the story, sealed, released with the next batch."""

    __tablename__ = "reply"

    story_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("story.id", ondelete="CASCADE"), index=True)
    status: Mapped[str] = mapped_column(String(16))  # "pending" | "released" | "hidden"
    released_on: Mapped[date | None] = mapped_column(Date)
    position: Mapped[int] = mapped_column(Integer, default=0)
    body: Mapped[bytes] = mapped_column(LargeBinary)


class Flag(RandomId, Base):
    """A member's report that a story or reply is harmful. Like reactions: a marker, no member."""

    __tablename__ = "flag"

    story_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("story.id", ondelete="CASCADE"), index=True)
    reply_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("reply.id", ondelete="CASCADE"))
    marker: Mapped[bytes] = mapped_column(LargeBinary(32), unique=True)


class StoryKey(RandomId, Base):
    """An RSA key for anonymous story and reply tokens (RFC 9474): one per community, week and kind.

    A member may take as many tokens of a week's key as the weekly quota allows (counted in
    story_quota under an HMAC, at issue); the token itself is redeemed without a session.
    """

    __tablename__ = "story_key"
    __table_args__ = (UniqueConstraint("community_id", "week", "kind"),)

    community_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("community.id", ondelete="CASCADE"), index=True)
    week: Mapped[str] = mapped_column(String(8))  # ISO year and week, e.g. 2026-W48
    kind: Mapped[str] = mapped_column(String(8))  # "story" | "reply"
    public_der: Mapped[bytes] = mapped_column(LargeBinary)
    private_sealed: Mapped[bytes] = mapped_column(LargeBinary)
    fingerprint: Mapped[str] = mapped_column(String(40))


class StorySpentToken(Base):
    """A redeemed story or reply token's hash, so it works once; deleted with its week's key."""

    __tablename__ = "story_spent_token"
    __table_args__ = {"sqlite_with_rowid": False}

    key_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("story_key.id", ondelete="CASCADE"), primary_key=True)
    token_hash: Mapped[bytes] = mapped_column(LargeBinary(32), primary_key=True)
