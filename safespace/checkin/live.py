"""Live updates of a check-in over Litestar's channels: the in-memory backend on SQLite (one
process), PostgreSQL's LISTEN/NOTIFY (AsyncPgChannelsBackend) on PostgreSQL, so that every app
process serving one check-in tells its own listeners.

What is published is exactly what every page may show: the state, and how many answered only
once at least k have. Below k nothing is published at all, so a listener cannot even count
messages; a change of answer publishes nothing (the count does not move).
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import logging
import uuid
import weakref
from collections.abc import AsyncIterator, Iterable
from dataclasses import dataclass
from datetime import timedelta

import msgspec
from litestar.channels import ChannelsPlugin
from litestar.channels.backends.asyncpg import AsyncPgChannelsBackend
from litestar.channels.backends.memory import MemoryChannelsBackend
from litestar.response import ServerSentEventMessage
from sqlalchemy import make_url
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from safespace import clock
from safespace.checkin import services
from safespace.checkin.models import CheckIn
from safespace.checkin.services import shown_count
from safespace.settings import Settings

log = logging.getLogger(__name__)


class LiveState(msgspec.Struct):
    state: str  # "open" | "closed" | "revealed"
    count: int | None  # None: fewer than k answered (never sent while open; see `worth_sending`)


# The members' page's event stream, opened with a key and no session (checkin/token_routes.py).
EVENTS_PATH = "/api/v1/checkins/{code}/events"


def events_key(secret: bytes, checkin: CheckIn) -> str:
    """Opens the check-in's anonymous event stream: given on the members' page, so the stream
    needs no session (an EventSource reconnecting with the cookie would be a signed-in request at
    any moment, next to an anonymous answer)."""
    return hmac.new(secret, f"checkin-events/{checkin.id}".encode(), hashlib.sha256).hexdigest()[:32]


def channel(checkin_id: uuid.UUID) -> str:
    return f"checkin_{checkin_id.hex}"


class PostgresChannels(AsyncPgChannelsBackend):
    """Litestar's LISTEN/NOTIFY backend, made to start without the database and to outlive it:
    the app must come up (and /healthz answer) while PostgreSQL is down, and one failed NOTIFY
    must not stop the plugin's publishing task for good. It connects when a first stream
    subscribes, again after the connection was lost, and publishes on one kept connection
    (Litestar's opens a new one per message)."""

    async def on_startup(self) -> None:
        self._listener_lock = asyncio.Lock()
        self._queue = asyncio.Queue()
        self._listener_conn = None
        self._publisher = None

    async def on_shutdown(self) -> None:
        async with self._listener_lock:
            for conn in (self._listener_conn, self._publisher):
                if conn is not None and not conn.is_closed():
                    await conn.close()
            self._listener_conn = self._publisher = None
            self._subscribed_channels.clear()
            self._queue = None

    def _lost(self, _connection: object) -> None:
        self._listener_conn = None
        self._subscribed_channels.clear()

    async def subscribe(self, channels: Iterable[str]) -> None:
        async with self._listener_lock:
            if self._listener_conn is None or self._listener_conn.is_closed():
                self._subscribed_channels.clear()
                self._listener_conn = await self._connect()
                self._listener_conn.add_termination_listener(self._lost)
            for name in set(channels) - self._subscribed_channels:
                await self._listener_conn.add_listener(name, self._listener)
                self._subscribed_channels.add(name)

    async def unsubscribe(self, channels: Iterable[str]) -> None:
        async with self._listener_lock:
            if self._listener_conn is None or self._listener_conn.is_closed():
                self._subscribed_channels.difference_update(channels)
                return
            for name in set(channels) & self._subscribed_channels:
                await self._listener_conn.remove_listener(name, self._listener)
                self._subscribed_channels.remove(name)

    async def publish(self, data: bytes, channels: Iterable[str]) -> None:
        try:
            if self._publisher is None or self._publisher.is_closed():
                self._publisher = await self._connect()
            for name in channels:
                await self._publisher.execute("SELECT pg_notify($1, $2)", name, data.decode())
        except Exception as error:  # noqa: BLE001 - any failure: this update is lost, not the next
            self._publisher = None
            log.warning("check-in update not published (%s); pages still refresh", error.__class__.__name__)


def channels_plugin(settings: Settings) -> ChannelsPlugin:
    if settings.is_sqlite:
        backend = MemoryChannelsBackend()
    else:
        dsn = make_url(settings.database).set(drivername="postgresql").render_as_string(hide_password=False)
        backend = PostgresChannels(dsn=dsn)
    # A slow listener loses older updates, never holds up the others: the newest says it all.
    return ChannelsPlugin(backend=backend, arbitrary_channels_allowed=True, subscriber_max_backlog=8, subscriber_backlog_strategy="dropleft")


def state_of(checkin: CheckIn, count: int) -> LiveState:
    return LiveState(state=checkin.state, count=shown_count(checkin, count))


def worth_sending(live: LiveState) -> bool:
    """P1/P3: an open check-in's update goes out only once it carries a count (k reached)."""
    return live.state != "open" or live.count is not None


# A burst of answers (a room answering at once) sends the newest count at most this often, not
# once per answer: every update goes to every listener, so per-answer updates cost answers times
# listeners writes. The reveal and the close go at once.
COALESCE_SECONDS = 0.2
# Once a check-in's time is up, how often an open event stream reads its state, until the
# schedule's pass has closed it (that pass may have no way to publish: SQLite, cron).
POLL_AFTER_DUE_SECONDS = 5.0
POLL_AFTER_DUE_FOR = timedelta(minutes=15)  # then the stream ends: no schedule runs here (SAFESPACE_SCHEDULE_INTERVAL_SECONDS=0 and no cron)
_PENDING: weakref.WeakKeyDictionary[ChannelsPlugin, dict[uuid.UUID, LiveState]] = weakref.WeakKeyDictionary()


def publish(channels: ChannelsPlugin, checkin: CheckIn, live: LiveState) -> None:
    if not worth_sending(live):
        return
    pending = _PENDING.setdefault(channels, {})
    if live.state != "open":
        pending.pop(checkin.id, None)
        channels.publish(msgspec.json.encode(live), channel(checkin.id))
        return
    waiting = pending.get(checkin.id)
    if waiting is not None:
        if (live.count or 0) > (waiting.count or 0):
            pending[checkin.id] = live  # the flush already planned sends this one instead
        return
    pending[checkin.id] = live
    asyncio.get_running_loop().call_later(COALESCE_SECONDS, _flush, channels, checkin.id)


def _flush(channels: ChannelsPlugin, checkin_id: uuid.UUID) -> None:
    live = _PENDING.get(channels, {}).pop(checkin_id, None)
    if live is not None:  # None: the reveal or close went first
        channels.publish(msgspec.json.encode(live), channel(checkin_id))


@dataclass
class Hub:
    """What the event stream needs beyond the request: short sessions of its own (a stream may
    last an hour; it must not hold a pooled connection for that long)."""

    sessionmaker: async_sessionmaker[AsyncSession]


def events(checkin: CheckIn, channels: ChannelsPlugin, hub: Hub) -> AsyncIterator[ServerSentEventMessage]:
    """The live count and state of a check-in, as server-sent events: what the page shows,
    nothing more. Read from the hub's own short sessions, not the request's."""
    checkin_id, closes_at = checkin.id, checkin.closes_at

    async def current() -> LiveState:
        async with hub.sessionmaker() as db:
            found = await db.get(CheckIn, checkin_id)
            if found is None:  # deleted meanwhile (with its community): answers are closed
                return LiveState(state="closed", count=None)
            return state_of(found, await services.answered(db, checkin_id))

    async def stream() -> AsyncIterator[ServerSentEventMessage]:
        async with channels.start_subscription(channel(checkin_id)) as subscriber:
            state = await current()  # subscribed first, read second: an update between the two is not lost
            highest = state.count or 0
            yield ServerSentEventMessage(data=msgspec.json.encode(state).decode(), event="state")
            if state.state != "open":
                return
            updates: asyncio.Queue[bytes] = asyncio.Queue()
            async with subscriber.run_in_background(updates.put, join=False):
                while True:
                    # Past its time the check-in closes at the schedule's next pass, which on
                    # SQLite (or from cron) cannot tell this process: the stream then reads the
                    # state itself every few seconds until it has closed.
                    wait = max((closes_at - clock.now()).total_seconds(), 0) + POLL_AFTER_DUE_SECONDS
                    try:
                        update = msgspec.json.decode(await asyncio.wait_for(updates.get(), wait), type=LiveState)
                    except TimeoutError:
                        update = await current()
                        if update.state == "open" and clock.now() < closes_at + POLL_AFTER_DUE_FOR:
                            continue
                        if update.state == "open":
                            return  # no schedule has run since: the page's next load says so
                    if update.state == "open" and (update.count or 0) <= highest:
                        continue  # two processes' updates may cross: the count only grows
                    highest = max(highest, update.count or 0)
                    yield ServerSentEventMessage(data=msgspec.json.encode(update).decode(), event="state")
                    if update.state != "open":
                        return

    return stream()
