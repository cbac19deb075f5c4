"""Who people are and where they belong. Nothing here points at an answer or a story."""

from __future__ import annotations

import unicodedata
import uuid
from datetime import datetime

from sqlalchemy import (
    JSON,
    Boolean,
    CheckConstraint,
    ForeignKey,
    Integer,
    LargeBinary,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import Mapped, mapped_column, relationship, validates

from safespace.db.base import Base, RandomId, UTCDateTime

ROLES = ("member", "facilitator")
STATUSES = ("invited", "active", "deactivated")
LANGUAGES = ("en", "es")


class Person(RandomId, Base):
    __tablename__ = "person"

    email: Mapped[str] = mapped_column(String(320), unique=True)  # stored lower-cased
    display_name: Mapped[str] = mapped_column(String(80), default="")
    language: Mapped[str | None] = mapped_column(String(5))  # None: follow the browser
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    # The community the person last opened: where a new sign-in lands. No time is kept with it.
    # Read only through an active membership (signin.start_session), hence no foreign key (0011).
    last_community_id: Mapped[uuid.UUID | None] = mapped_column()

    memberships: Mapped[list[Membership]] = relationship(back_populates="person")


def community_name_key(name: str) -> str:
    """A community's name as names are compared: case, spacing and compatibility forms aside."""
    return unicodedata.normalize("NFKC", " ".join(name.split())).casefold()


class Community(RandomId, Base):
    __tablename__ = "community"
    __table_args__ = (
        CheckConstraint("min_group_size >= 3", name="min_group_size_at_least_3"),
        CheckConstraint("comment_threshold >= min_group_size", name="comment_threshold_at_least_k"),
    )

    name: Mapped[str] = mapped_column(String(120))
    # One community per name on an installation (`invite --community Gold` must not guess), kept
    # in step with `name` below; compared in Python because SQLite's lower() folds ASCII only.
    name_key: Mapped[str] = mapped_column(Text, unique=True, index=True)
    vision: Mapped[str] = mapped_column(Text, default="")
    min_group_size: Mapped[int] = mapped_column(Integer, default=5)
    # Free-text answers are shown only for groups with at least this many respondents (P5).
    comment_threshold: Mapped[int] = mapped_column(Integer, default=10)
    time_zone: Mapped[str] = mapped_column(String(64), default="UTC")
    moderate_stories: Mapped[bool] = mapped_column(Boolean, default=False)  # facilitators approve stories first
    # Answers only through blind-signature tokens (RFC 9474): the page needs JavaScript.
    require_tokens: Mapped[bool] = mapped_column(Boolean, default=False)
    story_tags: Mapped[list | None] = mapped_column(JSON)  # the topics members choose from; None: the defaults
    # The weekly story release (weekday 0 = Monday, hour in the community's time zone); None: the installation's.
    story_release_weekday: Mapped[int | None] = mapped_column(Integer)
    story_release_hour: Mapped[int | None] = mapped_column(Integer)
    # Bumped by the database's triggers whenever something the story wall shows changes (migration
    # 0022): the key of the wall's kept pages (stories/wall_page.py). Never written by the app.
    wall_revision: Mapped[int] = mapped_column(Integer, server_default="0")
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)

    teams: Mapped[list[Team]] = relationship(back_populates="community", order_by="Team.name")

    @validates("name")
    def _name_key_follows_the_name(self, _column: str, name: str) -> str:
        self.name_key = community_name_key(name)
        return name


class Team(RandomId, Base):
    __tablename__ = "team"
    __table_args__ = (UniqueConstraint("community_id", "name"),)

    community_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("community.id", ondelete="CASCADE"))
    name: Mapped[str] = mapped_column(String(80))

    community: Mapped[Community] = relationship(back_populates="teams")


class Membership(RandomId, Base):
    __tablename__ = "membership"
    __table_args__ = (
        UniqueConstraint("person_id", "community_id"),
        CheckConstraint("role in ('member', 'facilitator')", name="known_role"),
        CheckConstraint("status in ('invited', 'active', 'deactivated')", name="known_status"),
    )

    person_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("person.id", ondelete="CASCADE"))
    community_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("community.id", ondelete="CASCADE"), index=True)
    team_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("team.id", ondelete="SET NULL"))
    role: Mapped[str] = mapped_column(String(16), default="member")
    status: Mapped[str] = mapped_column(String(16), default="invited")
    # Set once the person accepted (followed the invitation or accepted it signed in): only then
    # may a facilitator's "reactivate" make the membership active again.
    accepted: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)

    person: Mapped[Person] = relationship(back_populates="memberships", lazy="joined")
    community: Mapped[Community] = relationship(lazy="joined")
    team: Mapped[Team | None] = relationship(lazy="joined")


class LoginLink(RandomId, Base):
    """A magic link. Only the SHA-256 of its token is kept: a database copy cannot sign anyone in."""

    __tablename__ = "login_link"

    token_hash: Mapped[bytes] = mapped_column(LargeBinary(32), unique=True)
    person_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("person.id", ondelete="CASCADE"), index=True)
    community_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("community.id", ondelete="CASCADE"))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime)
    used_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


class WebSession(RandomId, Base):
    """A signed-in browser. The cookie holds a random token; only its SHA-256 is kept here."""

    __tablename__ = "web_session"

    token_hash: Mapped[bytes] = mapped_column(LargeBinary(32), unique=True)
    person_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("person.id", ondelete="CASCADE"), index=True)
    community_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("community.id", ondelete="SET NULL"))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    last_seen_at: Mapped[datetime] = mapped_column(UTCDateTime)
    flash: Mapped[str | None] = mapped_column(Text)  # a notice for the next page, then cleared


class SsoRequired(Base):
    """A community whose members sign in only through an OpenID Connect provider: magic links are
    refused (identity/sso.py). A row of its own rather than a column of `community`, which older
    migrations' tests still write with the ORM."""

    __tablename__ = "sso_required"

    community_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("community.id", ondelete="CASCADE"), primary_key=True)


class Retention(Base):
    """How long a community keeps its closed rounds, check-ins and stories; no row: kept until deleted.
    A row of its own for the reason SsoRequired gives."""

    __tablename__ = "retention"
    __table_args__ = (CheckConstraint("days >= 91", name="at_least_91_days"),)

    community_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("community.id", ondelete="CASCADE"), primary_key=True)
    days: Mapped[int] = mapped_column(Integer)


class SsoAttempt(RandomId, Base):
    """A single sign-on started in a browser and not yet finished: what the callback checks.

    Kept in the database, not in process memory, so any replica can finish it; deleted when used
    (a replayed callback finds nothing) or when it expires. Only the state's SHA-256 is kept.
    """

    __tablename__ = "sso_attempt"

    state_hash: Mapped[bytes] = mapped_column(LargeBinary(32), unique=True)
    provider: Mapped[str] = mapped_column(String(32))
    nonce: Mapped[str] = mapped_column(String(128))
    code_verifier: Mapped[str] = mapped_column(String(128))
    next_path: Mapped[str | None] = mapped_column(Text)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime)
