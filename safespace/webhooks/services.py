"""Registering a community's webhook endpoints, and noting the deliveries an event calls for.

An endpoint's signing secret is made here, shown to the facilitator once (the page that answers
the registration or the rotation), and otherwise kept sealed with the keyring: the page never
shows it again, and neither logs nor failure reasons hold it.
"""

from __future__ import annotations

import asyncio
import ipaddress
import secrets
import socket
import uuid
from dataclasses import dataclass
from datetime import datetime
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo

import httpx
from sqlalchemy import delete, func, select
from sqlalchemy.ext.asyncio import AsyncSession

from safespace.errors import InvalidInput, Refused
from safespace.i18n import gettext as _
from safespace.identity.models import Community
from safespace.privacy.crypto import Keyring, associated_data
from safespace.webhooks.models import EVENTS, PING, WebhookDelivery, WebhookEndpoint

MAX_URL_LENGTH = 2000
MAX_ENDPOINTS = 5  # per community
SECRET_PREFIX = "whsec_"


def secret_aad(endpoint_id: uuid.UUID) -> bytes:
    return associated_data("webhook_endpoint", "secret_sealed", endpoint_id)


def new_secret() -> str:
    return SECRET_PREFIX + secrets.token_urlsafe(32)


def secret_of(endpoint: WebhookEndpoint, keyring: Keyring) -> str:
    return keyring.open(endpoint.secret_sealed, secret_aad(endpoint.id))


NAT64 = ipaddress.IPv6Network("64:ff9b::/96")  # RFC 6052's well-known prefix


def is_private(address: str) -> bool:
    """Loopback, private, link-local, shared or reserved: anything that is not on the Internet."""
    ip = ipaddress.ip_address(address.split("%", 1)[0])  # an IPv6 zone (fe80::1%eth0) is not part of it
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.is_site_local:
            return True
        # An IPv4 address carried inside IPv6 (mapped, 6to4, NAT64) is judged as that address.
        embedded = ip.ipv4_mapped or ip.sixtofour or (ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF) if ip in NAT64 else None)
        if embedded is not None:
            ip = embedded
    return not ip.is_global or ip.is_multicast


async def private_address(url: str) -> str | None:
    """The first private address the URL's host resolves to, or None when they are all public.
    OSError (socket.gaierror) when the host cannot be resolved."""
    parts = urlsplit(url)
    found = await asyncio.get_running_loop().getaddrinfo(parts.hostname, parts.port or 443, type=socket.SOCK_STREAM)
    return next((info[4][0] for info in found if is_private(info[4][0])), None)


async def check_url(url: str, allow_private: bool) -> str:
    """The URL as stored, or InvalidInput saying what to change: HTTPS, a host, no password in
    it, and (unless the operator allows it) a host on the Internet, not inside the network."""
    url = url.strip()
    parts = urlsplit(url)
    if not url:
        raise InvalidInput({"url": _("Give the HTTPS address that should receive the events, e.g. https://hooks.example.org/safespace.")})
    if len(url) > MAX_URL_LENGTH:
        raise InvalidInput({"url": _("This address is too long: use one of at most 2,000 characters.")})
    if parts.scheme.lower() != "https" or not parts.hostname:
        raise InvalidInput({"url": _("Only HTTPS addresses can receive webhooks: use one that starts with https://.")})
    if parts.username or parts.password:
        raise InvalidInput({"url": _("Leave the user name and password out of the address: the signature tells the receiver the event is ours.")})
    if not _sendable(url, parts.hostname):
        raise InvalidInput({"url": _("This address cannot be used as it is written: check its port, and look for spaces or unusual characters in it.")})
    try:
        private = await private_address(url)
    except (OSError, UnicodeError, ValueError):
        raise InvalidInput({"url": _("The host %(host)s cannot be found. Check the address and try again.", host=parts.hostname)}) from None
    if private is not None and not allow_private:
        # Which address is not said: a facilitator must not map the inside network with this form.
        raise InvalidInput({"url": _("%(host)s is on a private or local network: webhooks go to addresses on the Internet only. The operator can allow private ones with SAFESPACE_WEBHOOK_ALLOW_PRIVATE.", host=parts.hostname)})  # fmt: skip
    return url


def _sendable(url: str, host: str) -> bool:
    """The HTTP client reads the address as checked here: a valid port, and the same host (a tab
    or an odd character that one parser drops and the other refuses would pass the check, then fail every send)."""
    try:
        urlsplit(url).port  # noqa: B018 - raises ValueError for a port out of range
        return httpx.URL(url).host == host.lower()
    except (ValueError, httpx.InvalidURL, UnicodeError):
        return False


def chosen_events(events: list[str]) -> list[str]:
    chosen = [event for event in EVENTS if event in events]
    if not chosen:
        raise InvalidInput({"events": _("Choose at least one event to send.")})
    return chosen


async def endpoints_of(db: AsyncSession, community_id: uuid.UUID) -> list[WebhookEndpoint]:
    query = select(WebhookEndpoint).where(WebhookEndpoint.community_id == community_id).order_by(WebhookEndpoint.created_at)
    return list(await db.scalars(query))


async def endpoint_of(db: AsyncSession, community_id: uuid.UUID, endpoint_id: uuid.UUID) -> WebhookEndpoint:
    """The community's endpoint; LookupError when it has no such one (another community's is not its)."""
    endpoint = await db.get(WebhookEndpoint, endpoint_id)
    if endpoint is None or endpoint.community_id != community_id:
        raise LookupError(endpoint_id)
    return endpoint


async def register(
    db: AsyncSession, keyring: Keyring, community_id: uuid.UUID, url: str, events: list[str], moment: datetime, allow_private: bool
) -> tuple[WebhookEndpoint, str]:
    """Register an endpoint; returns it with its secret, which the caller shows once."""
    count = await db.scalar(select(func.count()).select_from(WebhookEndpoint).where(WebhookEndpoint.community_id == community_id))
    if count >= MAX_ENDPOINTS:
        raise Refused(_("A community can have at most %(n)s webhook endpoints: remove one before adding another.", n=MAX_ENDPOINTS))
    errors: dict[str, str] = {}
    try:
        url = await check_url(url, allow_private)
    except InvalidInput as exc:
        errors |= exc.errors
    try:
        events = chosen_events(events)
    except InvalidInput as exc:
        errors |= exc.errors
    if errors:
        raise InvalidInput(errors)
    endpoint, secret = WebhookEndpoint(id=uuid.uuid4(), community_id=community_id, url=url, events=events, created_at=moment), new_secret()
    endpoint.secret_sealed = keyring.seal(secret, secret_aad(endpoint.id))
    db.add(endpoint)
    await db.flush()
    return endpoint, secret


def rotate(endpoint: WebhookEndpoint, keyring: Keyring) -> str:
    """A new secret for the endpoint, returned to be shown once; the old one signs nothing more
    (waiting deliveries are signed when sent, with the secret of that moment)."""
    secret = new_secret()
    endpoint.secret_sealed = keyring.seal(secret, secret_aad(endpoint.id))
    return secret


async def remove(db: AsyncSession, endpoint: WebhookEndpoint) -> None:
    """Forget the endpoint, its secret and its deliveries (sent or waiting)."""
    await db.execute(delete(WebhookDelivery).where(WebhookDelivery.endpoint_id == endpoint.id))
    await db.execute(delete(WebhookEndpoint).where(WebhookEndpoint.id == endpoint.id))


async def note(db: AsyncSession, community_id: uuid.UUID, event: str, moment: datetime, round_id: uuid.UUID | None = None) -> int:
    """Note the event for each of the community's endpoints that wants it, in the caller's
    transaction; the schedule sends them after the commit (webhooks.delivery), so a slow or
    failing receiver never holds up the event. Returns how many were noted."""
    assert event in EVENTS, event
    wanting = [endpoint for endpoint in await endpoints_of(db, community_id) if event in endpoint.events]
    for endpoint in wanting:
        _add(db, endpoint, event, moment, round_id)
    return len(wanting)


def ping(db: AsyncSession, endpoint: WebhookEndpoint, moment: datetime) -> WebhookDelivery:
    """The facilitators' test event for one endpoint (tried once)."""
    return _add(db, endpoint, PING, moment, None)


def _add(db: AsyncSession, endpoint: WebhookEndpoint, event: str, moment: datetime, round_id: uuid.UUID | None) -> WebhookDelivery:
    delivery = WebhookDelivery(id=uuid.uuid4(), endpoint_id=endpoint.id, event=event, round_id=round_id, status="waiting",
                               attempts=0, next_attempt_at=moment, created_at=moment)  # fmt: skip
    db.add(delivery)
    return delivery


@dataclass(frozen=True)
class DeliveryView:
    event: str
    created_at: datetime  # in the community's zone, as every time below
    status: str
    attempts: int
    result: str | None
    next_attempt_at: datetime | None  # a waiting one's next try


@dataclass(frozen=True)
class EndpointView:
    """The page's view of an endpoint: never its secret."""

    id: uuid.UUID
    url: str
    events: list[str]
    created_at: datetime
    last_delivered_at: datetime | None
    last_failed_at: datetime | None
    last_failure: str | None
    deliveries: list[DeliveryView]

    @property
    def failing(self) -> bool:
        """The last try failed (nothing has gone through since)."""
        return self.last_failed_at is not None and (self.last_delivered_at is None or self.last_failed_at > self.last_delivered_at)


async def endpoint_views(db: AsyncSession, community: Community, shown: int = 20) -> list[EndpointView]:
    """Each endpoint with its last deliveries, newest first, times in the community's zone."""
    zone = ZoneInfo(community.time_zone)

    def local(moment: datetime | None) -> datetime | None:
        return moment and moment.astimezone(zone)

    views = []
    for endpoint in await endpoints_of(db, community.id):
        query = select(WebhookDelivery).where(WebhookDelivery.endpoint_id == endpoint.id)
        rows = await db.scalars(query.order_by(WebhookDelivery.created_at.desc()).limit(shown))
        deliveries = [DeliveryView(row.event, local(row.created_at), row.status, row.attempts, row.result,
                                   local(row.next_attempt_at) if row.status == "waiting" else None) for row in rows]  # fmt: skip
        views.append(EndpointView(endpoint.id, endpoint.url, list(endpoint.events), local(endpoint.created_at), local(endpoint.last_delivered_at),
                                  local(endpoint.last_failed_at), endpoint.last_failure, deliveries))  # fmt: skip
    return views
