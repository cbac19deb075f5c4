"""Setting up a community's chat and noting the posts it should get.

The Apprise URL carries the receiver's secret (a webhook token, a bot password): it is sealed
with the keyring, never shown back in full, and kept out of logs and failure reasons. What the
settings page shows of it (service, scheme, a host that is not a token) is kept beside it, so a
page view needs neither the key nor Apprise, whose first use loads every plugin (about a second).
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from urllib.parse import parse_qsl, unquote, urlsplit
from zoneinfo import ZoneInfo

import msgspec
from sqlalchemy import delete, exists, func, select
from sqlalchemy.ext.asyncio import AsyncSession

from safespace.chat.models import ChatChannel, ChatPost
from safespace.errors import InvalidInput
from safespace.i18n import DEFAULT_LANGUAGE, LANGUAGES
from safespace.i18n import gettext as _
from safespace.identity.models import Community
from safespace.privacy.crypto import Keyring, associated_data

MAX_URL_LENGTH = 2000


def url_aad(community_id: uuid.UUID) -> bytes:
    return associated_data("chat_channel", "url_sealed", community_id)


class Receiver(msgspec.Struct, frozen=True):
    """What the settings page may show of a URL: the service and, where it is not a secret, the host."""

    service: str
    scheme: str
    host: str | None


def shown_as(channel: ChatChannel) -> Receiver:
    return msgspec.convert(channel.shown_as, Receiver)


def apprise_plugin(url: str) -> Any:
    """Apprise's service object for a URL, or None (blocking: call it in a thread). Apprise logs a
    URL it cannot parse, whole, secrets included: its logger is silenced meanwhile."""
    import apprise  # here, not at import: the app starts without it, and most never use it

    logger = logging.getLogger("apprise")
    was, logger.disabled = logger.disabled, True
    try:
        return apprise.Apprise.instantiate(url)
    finally:
        logger.disabled = was


def receiver(url: str) -> Receiver | None:
    """The URL's service, or None if Apprise does not know it or it is not usable here."""
    plugin = apprise_plugin(url.strip())
    if plugin is None or not getattr(plugin, "enabled", True):
        return None
    host = urlsplit(url.strip()).hostname
    # Some services put a token where the host goes (slack://TokenA/...): Apprise's own privacy
    # form masks it, so a host is shown only where that form shows it unchanged.
    shown = urlsplit(plugin.url(privacy=True)).hostname
    return Receiver(str(plugin.service_name or "Apprise"), url.strip().split("://", 1)[0].lower(), host if host and host == shown else None)


def secrets_in(url: str, shown: Receiver) -> list[str]:
    """The parts of a URL that may be secret: user, password, path segments, query values, and a
    host Apprise masks. Longest first, so a failure reason is cleaned of the whole before a part."""
    parts = urlsplit(url)
    found = {url, parts.username or "", parts.password or "", parts.fragment}
    found |= {unquote(segment) for segment in parts.path.split("/")} | set(parts.path.split("/"))
    found |= {value for _key, value in parse_qsl(parts.query)}
    if shown.host is None:
        found.add(parts.netloc.rpartition("@")[2].rsplit(":", 1)[0])  # as written: hostname is lowercased
    return sorted((s for s in found if len(s) >= 3), key=len, reverse=True)


async def channel_of(db: AsyncSession, community_id: uuid.UUID) -> ChatChannel | None:
    return await db.get(ChatChannel, community_id)


async def set_channel(
    db: AsyncSession, keyring: Keyring, community_id: uuid.UUID, url: str, language: str, moment: datetime
) -> ChatChannel:
    """Set or replace the community's chat. A replaced URL's failure note goes with it."""
    url = url.strip()
    if not url:
        raise InvalidInput({"chat_url": _("Paste the Apprise URL of your chat, e.g. a Slack or Mattermost webhook.")})
    shown = await asyncio.to_thread(receiver, url) if len(url) <= MAX_URL_LENGTH else None
    if shown is None:
        raise InvalidInput({"chat_url": _("Apprise does not know this URL. Check it against the list of services at https://github.com/caronc/apprise/wiki and paste it again.")})  # fmt: skip
    language = language if language in LANGUAGES else DEFAULT_LANGUAGE
    channel = await channel_of(db, community_id)
    if channel is None:
        channel = ChatChannel(community_id=community_id)
        db.add(channel)
    channel.url_sealed = keyring.seal(url, url_aad(community_id))
    channel.shown_as = msgspec.to_builtins(shown)
    channel.language, channel.set_at = language, moment
    channel.last_delivered_at = channel.last_failed_at = channel.last_failure = None
    await db.flush()
    return channel


async def remove_channel(db: AsyncSession, community_id: uuid.UUID) -> None:
    """Forget the URL and every post still waiting for it."""
    await db.execute(delete(ChatPost).where(ChatPost.community_id == community_id))
    await db.execute(delete(ChatChannel).where(ChatChannel.community_id == community_id))


async def note_post(db: AsyncSession, community_id: uuid.UUID, kind: str, round_id: uuid.UUID | None, moment: datetime) -> bool:
    """Note a post in the caller's transaction, if the community has a chat; the schedule sends it
    after the commit (chat.delivery), so a slow or failing receiver never holds up the event."""
    if not await db.scalar(select(exists().where(ChatChannel.community_id == community_id))):
        return False
    db.add(ChatPost(community_id=community_id, kind=kind, round_id=round_id, attempts=0, next_attempt_at=moment, created_at=moment))
    return True


@dataclass(frozen=True)
class ChannelView:
    """The settings page's view of a chat: never the URL itself."""

    receiver: Receiver
    language: str
    set_at: datetime
    last_delivered_at: datetime | None
    last_failed_at: datetime | None
    last_failure: str | None
    waiting: int

    @property
    def failing(self) -> bool:
        """The last delivery failed (nothing has gone through since)."""
        return self.last_failed_at is not None and (self.last_delivered_at is None or self.last_failed_at > self.last_delivered_at)


async def channel_view(db: AsyncSession, community: Community) -> ChannelView | None:
    """What the settings page shows of the community's chat, its times in the community's zone."""
    channel = await channel_of(db, community.id)
    if channel is None:
        return None
    zone = ZoneInfo(community.time_zone)
    waiting = await db.scalar(select(func.count()).select_from(ChatPost).where(ChatPost.community_id == community.id)) or 0
    return ChannelView(
        shown_as(channel),
        channel.language,
        channel.set_at.astimezone(zone),
        channel.last_delivered_at and channel.last_delivered_at.astimezone(zone),
        channel.last_failed_at and channel.last_failed_at.astimezone(zone),
        channel.last_failure,
        waiting,
    )
