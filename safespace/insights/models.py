"""What facilitators add to the numbers: objectives and notes pinned to rounds.

Neither table says anything about an answer: an objective is a target the community sets
itself, a note is a facilitator's own words about what happened around a round.
"""

from __future__ import annotations

import uuid
from datetime import date, datetime

from sqlalchemy import CheckConstraint, Date, Float, ForeignKey, Index, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from safespace.db.base import Base, RandomId, UTCDateTime


class Objective(RandomId, Base):
    """A SMART objective: one metric from a fixed list, a target value and a due date."""

    __tablename__ = "objective"
    __table_args__ = (
        CheckConstraint(
            "metric IN ('psychological_safety', 'favourable', 'trust', 'response_rate', 'stories_per_month', 'vitality')",
            name="known_metric",
        ),
    )

    community_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("community.id", ondelete="CASCADE"), index=True)
    title: Mapped[str] = mapped_column(String(200))
    metric: Mapped[str] = mapped_column(String(40))
    target: Mapped[float] = mapped_column(Float)
    # The metric's released value when the objective was set (None: nothing released yet), so
    # progress is measured from where the community started.
    baseline: Mapped[float | None] = mapped_column(Float)
    starts_on: Mapped[date] = mapped_column(Date)
    due_on: Mapped[date] = mapped_column(Date)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)


class RoundNote(RandomId, Base):
    """A facilitator's note pinned to a round, e.g. "reorganisation announced"."""

    __tablename__ = "round_note"
    __table_args__ = (Index("ix_round_note_round_time", "round_id", "created_at"),)  # a round's notes in order

    round_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("round.id", ondelete="CASCADE"))
    text: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
