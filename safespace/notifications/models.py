"""Notifications waiting for a facilitator's next digest, the kinds each facilitator turned off,
and what the schedule has already announced. Nothing here names a member or an answer."""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import JSON, ForeignKey, Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from safespace.db.base import Base, RandomId, UTCDateTime

ROUND_CLOSED = "round_closed"  # a round closed: its results are out, or too few answered
LOW_PARTICIPATION = "low_participation"  # a day before close, fewer answered than the rule in noting.py
REVIEW = "review"  # stories wait for a facilitator's review
REPORTED = "reported"  # stories or replies were reported
KINDS = (ROUND_CLOSED, LOW_PARTICIPATION, REVIEW, REPORTED)


class Notification(RandomId, Base):
    """One event for one facilitator's next digest; deleted once the digest went out.

    The digest says what is true when it is sent (the round's released figures, how many stories
    wait), so a row holds only which event and where: no figure, no story, no member.
    """

    __tablename__ = "notification"

    person_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("person.id", ondelete="CASCADE"), index=True)
    community_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("community.id", ondelete="CASCADE"))
    kind: Mapped[str] = mapped_column(String(20))
    round_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("round.id", ondelete="CASCADE"))
    noted_at: Mapped[datetime] = mapped_column(UTCDateTime)
    # Set while a digest holding this row is being sent (after the tick's commit); cleared when the
    # mail server refused it, so the next tick tries again. A claim older than CLAIM_STALE
    # (its process died while sending) is taken again.
    claimed_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    failures: Mapped[int] = mapped_column(Integer, default=0)


class NotificationOff(Base):
    """A kind of notification a facilitator turned off for one community (every kind is on by default)."""

    __tablename__ = "notification_off"

    person_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("person.id", ondelete="CASCADE"), primary_key=True)
    community_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("community.id", ondelete="CASCADE"), primary_key=True)
    kind: Mapped[str] = mapped_column(String(20), primary_key=True)


class NotificationWatch(Base):
    """The items of one kind (stories in review, reports) the schedule has announced already, so
    each is announced once. Random ids only, and no time."""

    __tablename__ = "notification_watch"

    community_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("community.id", ondelete="CASCADE"), primary_key=True)
    kind: Mapped[str] = mapped_column(String(20), primary_key=True)
    seen: Mapped[list] = mapped_column(JSON, default=list)
