"""A community's webhook endpoints and the deliveries noted for them.

Nothing here is about a member: a delivery's body names a round, a survey or a summary as the
results page shows them (webhooks/payloads.py), never who answered, when, or who wrote a story.
"""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import JSON, CheckConstraint, ForeignKey, Integer, LargeBinary, String
from sqlalchemy.orm import Mapped, mapped_column

from safespace.db.base import Base, RandomId, UTCDateTime

EVENTS = ("round.opened", "round.closed", "stories.released", "action.published")
PING = "ping"  # the facilitators' test event: every endpoint takes it, it is tried once
STATUSES = ("waiting", "delivered", "given_up")


class WebhookEndpoint(RandomId, Base):
    """An HTTPS address a community's facilitators registered, with the events it wants."""

    __tablename__ = "webhook_endpoint"

    community_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("community.id", ondelete="CASCADE"), index=True)
    url: Mapped[str] = mapped_column(String(2000))
    # The signing secret, sealed with the keyring (associated data: webhook_endpoint, secret_sealed, id).
    secret_sealed: Mapped[bytes] = mapped_column(LargeBinary)
    events: Mapped[list] = mapped_column(JSON)  # a subset of EVENTS
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    last_delivered_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    last_failed_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    last_failure: Mapped[str | None] = mapped_column(String(300))  # a status code or an error, no secret


class WebhookDelivery(RandomId, Base):
    """One event for one endpoint, noted in the event's own transaction and sent by the schedule
    after the commit; the id is the receiver's de-duplication key (the Safespace-Delivery
    header). The last finished ones are kept for the facilitators' page."""

    __tablename__ = "webhook_delivery"
    __table_args__ = (
        CheckConstraint("status IN ('waiting', 'delivered', 'given_up')", name="known_status"),
        CheckConstraint(
            "event IN ('round.opened', 'round.closed', 'stories.released', 'action.published', 'ping')", name="known_event"
        ),
    )

    endpoint_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("webhook_endpoint.id", ondelete="CASCADE"), index=True)
    event: Mapped[str] = mapped_column(String(32))
    round_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("round.id", ondelete="CASCADE"), index=True)
    # The JSON sent, written at the first try (webhooks/payloads.py) and sent as it is every time after.
    body: Mapped[bytes | None] = mapped_column(LargeBinary)
    status: Mapped[str] = mapped_column(String(16), default="waiting")
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[datetime] = mapped_column(UTCDateTime, index=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    result: Mapped[str | None] = mapped_column(String(300))  # the last try's status code or error
