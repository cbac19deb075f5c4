"""Live updates of a check-in over Litestar's channels: the in-memory backend on SQLite (one
process), PostgreSQL's LISTEN/NOTIFY (AsyncPgChannelsBackend) on PostgreSQL, so that every app
process serving one check-in tells its own listeners.

What is published is exactly what every page may show: the state, and how many answered only
once at least k have. Below k nothing is published at all, so a listener cannot even count
messages; a change of answer publishes nothing (the count does not move).
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass

import msgspec
from litestar.channels import ChannelsPlugin
from litestar.channels.backends.asyncpg import AsyncPgChannelsBackend
from litestar.channels.backends.memory import MemoryChannelsBackend
from sqlalchemy import make_url
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from safespace.checkin.models import CheckIn
from safespace.checkin.services import shown_count
from safespace.settings import Settings


class LiveState(msgspec.Struct):
    state: str  # "open" | "closed" | "revealed"
    count: int | None  # None: fewer than k answered (never sent while open; see `worth_sending`)


def channel(checkin_id: uuid.UUID) -> str:
    return f"checkin_{checkin_id.hex}"


def channels_plugin(settings: Settings) -> ChannelsPlugin:
    if settings.is_sqlite:
        backend = MemoryChannelsBackend()
    else:
        dsn = make_url(settings.database).set(drivername="postgresql").render_as_string(hide_password=False)
        backend = AsyncPgChannelsBackend(dsn=dsn)
    # A slow listener loses older updates, never holds up the others: the newest says it all.
    return ChannelsPlugin(backend=backend, arbitrary_channels_allowed=True, subscriber_max_backlog=8, subscriber_backlog_strategy="dropleft")


def state_of(checkin: CheckIn, count: int) -> LiveState:
    return LiveState(state=checkin.state, count=shown_count(checkin, count))


def worth_sending(live: LiveState) -> bool:
    """P1/P3: an open check-in's update goes out only once it carries a count (k reached)."""
    return live.state != "open" or live.count is not None


def publish(channels: ChannelsPlugin, checkin: CheckIn, live: LiveState) -> None:
    if worth_sending(live):
        channels.publish(msgspec.json.encode(live), channel(checkin.id))


@dataclass
class Hub:
    """What the event stream needs beyond the request: short sessions of its own (a stream may
    last an hour; it must not hold a pooled connection for that long)."""

    sessionmaker: async_sessionmaker[AsyncSession]
