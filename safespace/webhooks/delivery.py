"""Sending noted webhook deliveries, signed, from the schedule after its commit.

Each request carries the body (webhooks/payloads.py) and four headers: Safespace-Event,
Safespace-Delivery (the delivery's id, for the receiver's de-duplication), Safespace-Timestamp
(Unix seconds) and Safespace-Signature: `v1=` and the hex HMAC-SHA256, keyed with the endpoint's
secret, of the timestamp, a dot and the body (README.md, "Webhooks", shows how to check it). A
2xx answer is delivered; anything else, a redirect, or no answer within the time limit is tried
again later, waiting longer each time (safespace.backoff), and the round, its mail and the
schedule carry on as if no webhook existed.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import logging
import ssl
import uuid
from dataclasses import dataclass, field
from datetime import datetime

import httpx
from sqlalchemy import delete, select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from safespace import clock
from safespace.backoff import CLAIM, MAX_ATTEMPTS, next_wait
from safespace.privacy.crypto import Keyring
from safespace.webhooks import payloads
from safespace.webhooks.models import PING, WebhookDelivery, WebhookEndpoint
from safespace.webhooks.services import private_address, secret_of

log = logging.getLogger(__name__)

TIMEOUT_SECONDS = 10.0
BATCH = 100
KEPT = 20  # finished deliveries kept per endpoint for the facilitators' page
PASS_SECONDS = 30.0  # a pass starts no new delivery after this long (each may take 2 x TIMEOUT_SECONDS)


def signature(secret: str, timestamp: int, body: bytes) -> str:
    """The Safespace-Signature header's value: HMAC-SHA256 (the standard library's) over the
    timestamp, a dot and the body, keyed with the whole secret as UTF-8."""
    return "v1=" + hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()


def headers(delivery_id: uuid.UUID, event: str, secret: str, timestamp: int, body: bytes) -> dict[str, str]:
    return {
        "Content-Type": "application/json",
        "User-Agent": "Safespace-Webhooks/1",
        "Safespace-Event": event,
        "Safespace-Delivery": str(delivery_id),
        "Safespace-Timestamp": str(timestamp),
        "Safespace-Signature": signature(secret, timestamp, body),
    }


def tls_context(ca_file: str) -> ssl.SSLContext:
    """The system's trusted CAs, plus the operator's (SAFESPACE_WEBHOOK_CA_FILE) when given."""
    context = ssl.create_default_context()
    if ca_file:
        context.load_verify_locations(cafile=ca_file)
    return context


@dataclass
class WebhookSender:
    base_url: str
    ca_file: str = ""
    allow_private: bool = False
    timeout: float = TIMEOUT_SECONDS
    _tls: ssl.SSLContext | None = field(default=None, repr=False)

    async def post(self, url: str, body: bytes, sent_headers: dict[str, str]) -> tuple[bool, str]:
        """One request: whether the receiver took it (2xx), and its answer or why not (no secret in it)."""
        try:
            if not self.allow_private and await private_address(url) is not None:
                # Not which address: a facilitator must not map the inside network with it.
                return False, "refused: the host now resolves to a private or local network address"
        except OSError:
            return False, "the host cannot be resolved"
        self._tls = self._tls or tls_context(self.ca_file)
        try:
            async with httpx.AsyncClient(verify=self._tls, follow_redirects=False, timeout=self.timeout) as client:
                answer = await asyncio.wait_for(client.post(url, content=body, headers=sent_headers), 2 * self.timeout)
        except (TimeoutError, httpx.TimeoutException):
            return False, f"no answer within {self.timeout:g} seconds"
        except httpx.HTTPError as exc:
            return False, f"{type(exc).__name__}: {exc}"[:300]
        except Exception as exc:  # noqa: BLE001 - an address httpx cannot use (InvalidURL, an IDNA error): a failed try, not a failed pass
            return False, f"the address cannot be used ({type(exc).__name__})"
        return 200 <= answer.status_code < 300, f"HTTP {answer.status_code}"

    async def deliver_due(
        self, sessionmaker: async_sessionmaker[AsyncSession], keyring: Keyring, moment: datetime | None = None,
        community_id: uuid.UUID | None = None,
    ) -> int:  # fmt: skip
        """Send the deliveries that are due; returns how many went through. Each is claimed in a
        short transaction of its own and sent outside any transaction."""
        moment = moment or clock.now()
        delivered = 0
        async with sessionmaker() as db:
            query = select(WebhookDelivery.id, WebhookDelivery.next_attempt_at).where(
                WebhookDelivery.status == "waiting", WebhookDelivery.next_attempt_at <= moment
            )
            if community_id is not None:
                query = query.join(WebhookEndpoint).where(WebhookEndpoint.community_id == community_id)
            due = (await db.execute(query.order_by(WebhookDelivery.created_at).limit(BATCH))).all()
            await db.rollback()
            started = asyncio.get_running_loop().time()
            for delivery_id, due_at in due:
                if asyncio.get_running_loop().time() - started > PASS_SECONDS:
                    break  # slow receivers must not hold up the schedule: the rest go with the next pass
                try:
                    delivered += await self._deliver_one(db, keyring, delivery_id, due_at, moment)
                except Exception:  # one delivery's fault (its body, its secret) must not stop the others
                    log.exception("a webhook delivery failed before it was sent; it is tried again after the claim")
                    await db.rollback()
        return delivered

    async def _deliver_one(self, db: AsyncSession, keyring: Keyring, delivery_id: uuid.UUID, due_at: datetime, moment: datetime) -> int:
        claimed = await db.execute(
            update(WebhookDelivery)
            .where(WebhookDelivery.id == delivery_id, WebhookDelivery.status == "waiting", WebhookDelivery.next_attempt_at == due_at)
            .values(next_attempt_at=moment + CLAIM)
        )
        if claimed.rowcount != 1:  # another pass has it
            await db.rollback()
            return 0
        delivery = await db.get_one(WebhookDelivery, delivery_id)
        endpoint = await db.get_one(WebhookEndpoint, delivery.endpoint_id)
        if delivery.body is None:  # the first try writes the body every later one sends
            delivery.body = await payloads.compose(db, delivery, endpoint.community_id, self.base_url)
        if delivery.body is None:
            await db.execute(delete(WebhookDelivery).where(WebhookDelivery.id == delivery_id))
            await db.commit()
            return 0
        url, body, event, attempts = endpoint.url, delivery.body, delivery.event, delivery.attempts + 1
        # Signed now, by the real clock: the receiver checks the timestamp against its own.
        sent = headers(delivery_id, event, secret_of(endpoint, keyring), int(clock.now().timestamp()), body)
        await db.commit()  # the claim and the body; no transaction is open while the receiver is called
        delivered, answer = await self.post(url, body, sent)
        await _record(db, delivery_id, event, attempts, delivered, answer, moment)
        return int(delivered)


async def _record(
    db: AsyncSession, delivery_id: uuid.UUID, event: str, attempts: int, delivered: bool, answer: str, moment: datetime
) -> None:
    """Note how the try went on the delivery and its endpoint, and keep the last KEPT finished."""
    # Read again: a facilitator may have removed the endpoint (and its deliveries) while this one was out.
    delivery = await db.get(WebhookDelivery, delivery_id, populate_existing=True)
    endpoint = await db.get(WebhookEndpoint, delivery.endpoint_id, populate_existing=True) if delivery else None
    if delivery is None or endpoint is None:
        await db.commit()
        return
    now = clock.now()
    delivery.attempts, delivery.result = attempts, answer
    if delivered:
        delivery.status, delivery.finished_at, endpoint.last_delivered_at = "delivered", now, now
    else:
        log.warning("a webhook %s delivery failed (attempt %d): %s", event, attempts, answer)
        endpoint.last_failed_at, endpoint.last_failure = now, answer
        if event == PING or attempts >= MAX_ATTEMPTS:
            delivery.status, delivery.finished_at = "given_up", now
        else:
            delivery.next_attempt_at = moment + next_wait(attempts)
    await db.flush()
    kept = select(WebhookDelivery.id).where(WebhookDelivery.endpoint_id == endpoint.id, WebhookDelivery.status != "waiting")
    kept = kept.order_by(WebhookDelivery.finished_at.desc()).limit(KEPT)
    await db.execute(
        delete(WebhookDelivery).where(
            WebhookDelivery.endpoint_id == endpoint.id, WebhookDelivery.status != "waiting", WebhookDelivery.id.not_in(kept.scalar_subquery())
        )
    )
    await db.commit()
