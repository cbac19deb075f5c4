"""One row per facilitator or operator action. Nothing here is written for a member's answer,
story, reaction, reply or reading of results: only the services of staff actions call record()."""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import ForeignKey, Index, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from safespace.db.base import Base, RandomId, UTCDateTime


class AuditEntry(RandomId, Base):
    __tablename__ = "audit_entry"
    __table_args__ = (Index("ix_audit_entry_community_at", "community_id", "at"),)

    # None: an installation-wide act (a backup, a key rotation), shown to every community.
    community_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("community.id", ondelete="CASCADE"))
    actor: Mapped[str] = mapped_column(String(320))  # the facilitator's address, or "operator"
    kind: Mapped[str] = mapped_column(String(40))
    detail: Mapped[str] = mapped_column(Text, default="")
    at: Mapped[datetime] = mapped_column(UTCDateTime)
