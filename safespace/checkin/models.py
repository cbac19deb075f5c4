"""A check-in, its tally, its participation ledger and its sealed comments.

Split like a round's tables (pulse/models.py): `checkin_participation` knows WHO joined and
nothing about the answer; `checkin_tally` and `checkin_comment` know WHAT was answered and
nothing about who. A member's current answer lives only in their own browser, in a receipt
sealed under the check-in's own key (a file outside the database, privacy/round_keys.py); the
ledger keeps a hash of the receipt's random nonce so the answer can be changed (folded out,
folded in) once per receipt. At close the key file, the hashes and the ledger are deleted.

Private mode (checkin/tokens.py): the ledger notes that a member took a token; the answer comes
without a session, with the token, and its receipt is bound to the token's hash, kept in
`checkin_spent_token`, not to the member.
"""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import (
    JSON,
    CheckConstraint,
    ForeignKey,
    Integer,
    LargeBinary,
    String,
)
from sqlalchemy.orm import Mapped, mapped_column

from safespace.db.base import Base, RandomId, UTCDateTime

STATES = ("open", "closed", "revealed")
OUTCOMES = ("trend", "discarded")


class CheckIn(RandomId, Base):
    __tablename__ = "checkin"
    __table_args__ = (
        CheckConstraint("state IN ('open', 'closed', 'revealed')", name="known_state"),
        CheckConstraint("outcome IS NULL OR outcome IN ('trend', 'discarded')", name="known_outcome"),
        CheckConstraint("min_group_size >= 3", name="min_group_size_at_least_3"),
    )

    community_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("community.id", ondelete="CASCADE"), index=True)
    code: Mapped[str] = mapped_column(String(12), unique=True)  # the short join code
    # The statements (or the free question) as an instrument definition, snapshotted at start.
    instrument: Mapped[dict] = mapped_column(JSON)
    prompt: Mapped[str | None] = mapped_column(String(200), nullable=True)  # optional free text
    state: Mapped[str] = mapped_column(String(12), default="open")
    # Locked at start from the community's settings, like a round's.
    min_group_size: Mapped[int] = mapped_column(Integer)
    comment_threshold: Mapped[int] = mapped_column(Integer)
    opened_at: Mapped[datetime] = mapped_column(UTCDateTime)  # the meeting's time, not an answer's
    closes_at: Mapped[datetime] = mapped_column(UTCDateTime)  # auto-close (safespace tick)
    # After the reveal: kept as a "meeting check-in" point of this survey's trend, or discarded.
    outcome: Mapped[str | None] = mapped_column(String(12), nullable=True)
    trend_survey_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("survey.id", ondelete="SET NULL"), nullable=True, index=True
    )


class CheckInTally(Base):
    """Sufficient statistics of the check-in's answers (surveys.tally.Tally); never one person's."""

    __tablename__ = "checkin_tally"

    checkin_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("checkin.id", ondelete="CASCADE"), primary_key=True)
    respondents: Mapped[int] = mapped_column(Integer, default=0)
    data: Mapped[bytes] = mapped_column(LargeBinary)  # msgspec JSON of surveys.tally.Tally
    # Members who took a second private-mode token (another browser or device): each may have
    # answered twice, so the results say "up to N answers may come from re-issued tokens".
    reissued: Mapped[int] = mapped_column(Integer, default=0, server_default="0")


class CheckInParticipation(Base):
    """Who joined: one row per member while the check-in is open. No time, no order, no answer.

    `receipt_hash` is SHA-256 of the random nonce inside the member's current receipt: it lets
    that receipt (and no older one) fold the previous answer out. Rows are deleted at close.
    """

    __tablename__ = "checkin_participation"
    __table_args__ = {"sqlite_with_rowid": False}

    checkin_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("checkin.id", ondelete="CASCADE"), primary_key=True)
    person_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("person.id", ondelete="CASCADE"), primary_key=True)
    # Set by an answer sent signed in (the form without private mode); NULL for a member who
    # only took tokens: whether they answered with them, nobody here can know.
    receipt_hash: Mapped[bytes | None] = mapped_column(LargeBinary(32), nullable=True)
    # Private mode: tokens taken (at most 2), and SHA-256 of the last blinded request, so that a
    # request repeated after a lost answer is signed again rather than counted as a second token.
    tokens: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    token_request: Mapped[bytes | None] = mapped_column(LargeBinary(32), nullable=True)


class CheckInKey(RandomId, Base):
    """The check-in's RSA key for private-mode tokens (RFC 9474), made at the first token taken;
    deleted at close with the spent tokens (no token of it can be presented again)."""

    __tablename__ = "checkin_key"

    checkin_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("checkin.id", ondelete="CASCADE"), unique=True)
    public_der: Mapped[bytes] = mapped_column(LargeBinary)
    private_sealed: Mapped[bytes] = mapped_column(LargeBinary)
    fingerprint: Mapped[str] = mapped_column(String(40))


class CheckInSpentToken(Base):
    """A token that answered: its hash, and the hash of the nonce in the answer's current receipt
    (which alone can change that answer). No member, no time. Deleted at close."""

    __tablename__ = "checkin_spent_token"
    __table_args__ = {"sqlite_with_rowid": False}

    checkin_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("checkin.id", ondelete="CASCADE"), primary_key=True)
    token_hash: Mapped[bytes] = mapped_column(LargeBinary(32), primary_key=True)
    receipt_hash: Mapped[bytes] = mapped_column(LargeBinary(32))


class CheckInComment(RandomId, Base):
    """Free text for the prompt: encrypted, no member, no time; re-inserted shuffled at close
    with its `position` (NULL while pending)."""

    __tablename__ = "checkin_comment"

    checkin_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("checkin.id", ondelete="CASCADE"), index=True)
    position: Mapped[int | None] = mapped_column(Integer, nullable=True)
    body: Mapped[bytes] = mapped_column(LargeBinary)
