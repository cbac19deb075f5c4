"""Surveys, rounds, the participation ledger, tallies and comments.

What is stored about answering is split on purpose: `participation` knows WHO answered a round
and nothing else; `tally` and the comment tables know WHAT was answered and nothing about who.
No row on the "what" side has a member id, an email, a name, a time or an ordered id.
"""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import (
    JSON,
    Boolean,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    String,
    UniqueConstraint,
)
from sqlalchemy.orm import Mapped, mapped_column

from safespace.db.base import Base, RandomId, UTCDateTime


class CustomInstrument(RandomId, Base):
    """An instrument a facilitator built in the pages (surveys.instrument's dict form)."""

    __tablename__ = "custom_instrument"

    community_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("community.id", ondelete="CASCADE"), index=True)
    definition: Mapped[dict] = mapped_column(JSON)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)


class Survey(RandomId, Base):
    __tablename__ = "survey"

    community_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("community.id", ondelete="CASCADE"), index=True)
    title: Mapped[str] = mapped_column(String(120))
    instruments: Mapped[list] = mapped_column(JSON)  # instrument keys: built-in names or "custom:<id>"
    cadence: Mapped[dict] = mapped_column(JSON)  # surveys.cadence.Cadence as a dict
    paused: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    # What the trend is drawn from changed (a round closed, a note added or deleted): bumped in
    # that write's transaction. The kept trend charts are keyed by it; a counter, not a time, so
    # a replica whose clock runs behind cannot bring back an older drawing.
    trend_revision: Mapped[int] = mapped_column(Integer, default=0, server_default="0")


class Round(RandomId, Base):
    __tablename__ = "round"
    __table_args__ = (
        UniqueConstraint("survey_id", "number"),
        # A survey's rounds by state and number, with their ids: the trend page finds its open
        # round and its closed rounds from this index alone (insights.trend_figures).
        Index("ix_round_survey_state", "survey_id", "closed", "number", "id"),
    )

    survey_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("survey.id", ondelete="CASCADE"))
    community_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("community.id", ondelete="CASCADE"), index=True)
    number: Mapped[int] = mapped_column(Integer)
    opens_at: Mapped[datetime] = mapped_column(UTCDateTime)
    closes_at: Mapped[datetime] = mapped_column(UTCDateTime)
    closed: Mapped[bool] = mapped_column(Boolean, default=False)
    # Locked when the round opens: later changes to the community never reach this round.
    min_group_size: Mapped[int] = mapped_column(Integer)
    comment_threshold: Mapped[int] = mapped_column(Integer, default=10)  # locked like k
    instruments: Mapped[list] = mapped_column(JSON)  # snapshot of the instrument definitions
    population: Mapped[dict] = mapped_column(JSON)  # group key -> active members at opening
    reminder_sent: Mapped[bool] = mapped_column(Boolean, default=False)
    # Members who took a second answer token (another browser or device) or answered with the
    # signed-in form after taking one: counted at close from the ledger, shown beside the results
    # ("up to N answers may come from re-issued tokens"). Zero while the round is open.
    reissued: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    # Why each team counted apart at opening has no results, decided at close (whose tallies are
    # then deleted): team -> "fewer_than_k" or "protects_a_smaller_group". None before close, and
    # for rounds closed before this was recorded (the pages then name both reasons).
    hidden_teams: Mapped[dict | None] = mapped_column(JSON, nullable=True)


class Participation(Base):
    """Who answered a round: the ledger. No time, no order, nothing about the answers.

    The primary key is (round, random person id), so even the physical order of rows follows
    random ids rather than the order people answered (SQLite: WITHOUT ROWID).
    """

    __tablename__ = "participation"
    __table_args__ = {"sqlite_with_rowid": False}

    round_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("round.id", ondelete="CASCADE"), primary_key=True)
    person_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("person.id", ondelete="CASCADE"), primary_key=True)
    # Private mode: SHA-256 of the blinded message the member's token was signed for, so a browser
    # that lost the answer (left the page mid-request) can ask again for the same signature. A
    # blinded message is m * r^e mod n with a random r the server never sees: it is uniformly
    # distributed whatever the token, so it says nothing about the token later redeemed.
    # Dropped at close (the ledger is re-inserted without it).
    token_request: Mapped[bytes | None] = mapped_column(LargeBinary(32))
    # Any device: a member whose token is in another browser may take one more (or answer with the
    # signed-in form once). `reissued` says the second chance is used; `second_request` is the
    # second blinded message, kept for the same repeat as above. Both dropped at close.
    reissued: Mapped[bool] = mapped_column(Boolean, default=False, server_default="0")
    second_request: Mapped[bytes | None] = mapped_column(LargeBinary(32))


class RoundMail(Base):
    """Which mail about a round went to whom, so nobody gets the same mail twice.

    A row is written before its mail goes out (at most once: a crash while sending loses the
    mail rather than repeating it). A mail the server refused is marked for another try.
    """

    __tablename__ = "round_mail"
    __table_args__ = {"sqlite_with_rowid": False}

    round_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("round.id", ondelete="CASCADE"), primary_key=True)
    person_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("person.id", ondelete="CASCADE"), primary_key=True)
    kind: Mapped[str] = mapped_column(String(16), primary_key=True)  # "invitation" | "reminder"
    failures: Mapped[int] = mapped_column(Integer, default=0)  # > 0: refused that often, to try again


class Tally(Base):
    """Sufficient statistics of one instrument in one round for one group (surveys.tally.Tally)."""

    __tablename__ = "tally"

    round_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("round.id", ondelete="CASCADE"), primary_key=True)
    instrument: Mapped[str] = mapped_column(String(80), primary_key=True)
    group_key: Mapped[str] = mapped_column(String(40), primary_key=True)  # "community" or a team id
    respondents: Mapped[int] = mapped_column(Integer, default=0)
    data: Mapped[bytes] = mapped_column(LargeBinary)  # msgspec JSON of surveys.tally.Tally


class PendingComment(RandomId, Base):
    """A free-text answer waiting for its round to close. Encrypted; no member, no time."""

    __tablename__ = "pending_comment"

    round_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("round.id", ondelete="CASCADE"), index=True)
    instrument: Mapped[str] = mapped_column(String(80))
    group_key: Mapped[str] = mapped_column(String(40))
    body: Mapped[bytes] = mapped_column(LargeBinary)


class ReleasedComment(RandomId, Base):
    """A comment after its round closed, re-inserted in a shuffled order (position)."""

    __tablename__ = "released_comment"

    round_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("round.id", ondelete="CASCADE"), index=True)
    instrument: Mapped[str] = mapped_column(String(80))
    group_key: Mapped[str] = mapped_column(String(40))
    position: Mapped[int] = mapped_column(Integer)
    body: Mapped[bytes] = mapped_column(LargeBinary)


class Lease(Base):
    """Who may run periodic work now, on SQLite (PostgreSQL takes an advisory lock: pulse/lease.py),
    and notes such as "scrub due"."""

    __tablename__ = "lease"

    name: Mapped[str] = mapped_column(String(40), primary_key=True)
    holder: Mapped[str] = mapped_column(String(80))
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime)



class RoundKey(RandomId, Base):
    """An RSA key for blind-signature answer tokens (RFC 9474): one per round and group.

    The key that verifies a token says which tally the answers fold into (the community, or a
    team of at least k), so the anonymous request that carries the answers names no one. The
    private key is sealed with the installation's keyring; the row is deleted when the round
    closes, so no later token can verify.
    """

    __tablename__ = "round_key"
    __table_args__ = (UniqueConstraint("round_id", "group_key"),)

    round_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("round.id", ondelete="CASCADE"), index=True)
    group_key: Mapped[str] = mapped_column(String(40))  # "community" or a team id
    public_der: Mapped[bytes] = mapped_column(LargeBinary)  # SubjectPublicKeyInfo
    private_sealed: Mapped[bytes] = mapped_column(LargeBinary)  # PKCS#8, sealed with AES-GCM
    fingerprint: Mapped[str] = mapped_column(String(40))


class SpentToken(Base):
    """A redeemed answer token: its hash, so it cannot be used twice. No member, no time.

    Written in the same transaction as the fold; deleted when the round closes (its keys are
    gone by then, so no token of the round can be presented again).
    """

    __tablename__ = "spent_token"
    __table_args__ = {"sqlite_with_rowid": False}

    round_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("round.id", ondelete="CASCADE"), primary_key=True)
    token_hash: Mapped[bytes] = mapped_column(LargeBinary(32), primary_key=True)
