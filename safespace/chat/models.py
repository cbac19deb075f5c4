"""A community's chat: where its posts go (one sealed Apprise URL) and the posts waiting to go.

Nothing here is about a member: a post names a round and what happened to it (opened, closing
soon, closed), never who answered.
"""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import JSON, CheckConstraint, ForeignKey, Integer, LargeBinary, String
from sqlalchemy.orm import Mapped, mapped_column

from safespace.db.base import Base, RandomId, UTCDateTime

POST_KINDS = ("invitation", "reminder", "results", "test")


class ChatChannel(Base):
    """One per community that set up a chat; its URL holds the receiver's secret, so it is sealed."""

    __tablename__ = "chat_channel"

    community_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("community.id", ondelete="CASCADE"), primary_key=True)
    # The Apprise URL, sealed with the keyring (associated data: chat_channel, url_sealed, community id).
    url_sealed: Mapped[bytes] = mapped_column(LargeBinary)
    # What may be shown of it: services.Receiver (service, scheme, and a host that is not a token).
    shown_as: Mapped[dict] = mapped_column(JSON)
    language: Mapped[str] = mapped_column(String(8))  # the posts' language: a channel has no one reader
    set_at: Mapped[datetime] = mapped_column(UTCDateTime)
    last_delivered_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    last_failed_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # Why, in the receiver's words with the URL's secrets taken out (delivery.reason).
    last_failure: Mapped[str | None] = mapped_column(String(300))


class ChatPost(RandomId, Base):
    """A post noted with the event that calls for it (in that transaction) and sent after it by the
    schedule; a receiver that fails is tried again later, with a growing wait."""

    __tablename__ = "chat_post"
    __table_args__ = (CheckConstraint("kind IN ('invitation', 'reminder', 'results', 'summary', 'test')", name="known_kind"),)

    community_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("community.id", ondelete="CASCADE"), index=True)
    kind: Mapped[str] = mapped_column(String(16))
    round_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("round.id", ondelete="CASCADE"), index=True)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[datetime] = mapped_column(UTCDateTime, index=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
