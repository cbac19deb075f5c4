"""What facilitators add to the numbers: objectives, notes pinned to rounds, and actions.

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
    direction: Mapped[str] = mapped_column(String(5), server_default="raise")  # "raise" | "lower": toward the target
    # Where progress counts from: the metric's released value when the objective was set, or one
    # the facilitator gave. None only on objectives set before baselines were required.
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


ACTION_STATUSES = ("planned", "in_progress", "done", "dropped")


class Action(RandomId, Base):
    """What the community will do about a result: a statement (or a whole instrument) of a round,
    an owner who agreed to it, a due date and a status. It names a result, never a respondent."""

    __tablename__ = "action"
    __table_args__ = (
        CheckConstraint("status IN ('planned', 'in_progress', 'done', 'dropped')", name="known_status"),
        Index("ix_action_community_created", "community_id", "created_at"),
    )

    community_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("community.id", ondelete="CASCADE"))
    title: Mapped[str] = mapped_column(String(300))
    # The result it answers: a round, and in it an instrument and, optionally, one statement.
    round_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("round.id", ondelete="SET NULL"))
    instrument: Mapped[str | None] = mapped_column(String(80))
    item: Mapped[str | None] = mapped_column(String(80))
    owner: Mapped[str | None] = mapped_column(String(120))  # a facilitator, or a member who agreed to it
    due_on: Mapped[date | None] = mapped_column(Date)
    status: Mapped[str] = mapped_column(String(12))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)


class ActionUpdate(RandomId, Base):
    """One line of an action's log: a status change, a short update, or both."""

    __tablename__ = "action_update"
    __table_args__ = (Index("ix_action_update_action_time", "action_id", "created_at"),)

    action_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("action.id", ondelete="CASCADE"))
    status: Mapped[str] = mapped_column(String(12))
    text: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)


class RoundSummary(Base):
    """"You said, we did": a facilitator's short summary of a closed round's results and what the
    community will do, published once to every member (mail, and chat where set up)."""

    __tablename__ = "round_summary"

    round_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("round.id", ondelete="CASCADE"), primary_key=True)
    text: Mapped[str] = mapped_column(Text)
    published_at: Mapped[datetime] = mapped_column(UTCDateTime)
