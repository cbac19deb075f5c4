"""A community's webhooks: registered by its facilitators over the real pages, told by the
schedule when a round opens and closes, stories are released and a summary is published, signed
so the README's verifier accepts them with the secret shown once, and holding no member and no
figure. The receiver is a real HTTPS server on 127.0.0.1 (conftest.py)."""

from __future__ import annotations

import json
import re
import uuid
from datetime import datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import httpx
import msgspec
from sqlalchemy import select, text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from safespace import clock, schedule
from safespace.audit.models import AuditEntry
from safespace.mail import make_mailer
from safespace.privacy.crypto import Keyring
from safespace.pulse import services as pulse
from safespace.pulse.mail import RoundMailer
from safespace.pulse.models import Round
from safespace.web.templates import template_environment
from safespace.webhooks import services as webhooks_services
from safespace.webhooks.delivery import WebhookSender, signature
from safespace.webhooks.models import EVENTS, WebhookDelivery, WebhookEndpoint
from tests.conftest import BASE_URL
from tests.helpers import World, make_community, post_form, sign_in
from tests.safespace.insights.conftest import form
from tests.safespace.pulse.conftest import post_as, session_cookie
from tests.safespace.webhooks.conftest import Receiver

README = Path(__file__).resolve().parents[3] / "README.md"
MEMBERS = [f"m{i}@x.org" for i in range(6)]
STORY = {"title": "The consultation nobody came to", "happened": "We announced it too late.",
         "learned": "Start outreach a month before.", "differently": "Ask the groups when they can meet."}  # fmt: skip


def readme_verify():
    """The verifier the README shows receivers, run as written there."""
    block = README.read_text().split("<!-- webhook-verifier -->", 1)[1].split("```python", 1)[1].split("```", 1)[0]
    namespace: dict = {}
    exec(block, namespace)  # our own documentation's example, run as a receiver would copy it
    return namespace["verify"]


def _tick(settings, engine, moment: datetime, timeout: float = 2.0, **more) -> schedule.TickReport:
    mailer = RoundMailer(make_mailer(settings), template_environment(), settings.base_url)
    sender = WebhookSender(settings.base_url, settings.webhook_ca_file, settings.webhook_allow_private, timeout=timeout)
    return schedule.tick(async_sessionmaker(engine, expire_on_commit=False), Keyring.load(settings.encryption_key_path), mailer,
                         moment=moment, webhook_sender=sender, **more)  # fmt: skip


async def _register(client: httpx.AsyncClient, community_id: uuid.UUID, url: str, events=EVENTS) -> tuple[httpx.Response, str | None]:
    """Add an endpoint as a facilitator does: open the page, fill in the form. Returns the answer and the secret it shows."""
    assert (await client.get(f"/c/{community_id}/webhooks")).status_code == 200
    answer = await post_form(client, f"/c/{community_id}/webhooks", {"url": url, "events": list(events)})
    found = re.search(r"whsec_[A-Za-z0-9_-]{43}", answer.text)
    return answer, found.group(0) if found else None


async def _world_with_webhook(client, db: AsyncSession, receiver: Receiver, events=EVENTS) -> tuple[World, str]:
    world = await make_community(db, teams={"Energy": MEMBERS})
    await sign_in(client, db, world.facilitator)
    answer, secret = await _register(client, world.community.id, receiver.url, events)
    assert answer.status_code == 200 and secret, answer.text
    return world, secret


async def _survey(db: AsyncSession, world: World):
    today = clock.now().astimezone(ZoneInfo("Europe/Madrid")).date()
    cadence = pulse.CadenceForm("weekly", today.weekday(), 1, 3, today.isoformat())
    survey = await pulse.create_survey(db, world.community.id, "Europe/Madrid", "Pulse", ["psychological_safety"], cadence)
    await db.commit()
    return survey


def _figures(body: bytes) -> list[str]:
    """The numbers a body carries besides its ids, its times and its links."""
    shown = re.sub(r"https://\S+?\"|[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}", "", body.decode())
    shown = re.sub(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", "", shown)
    return re.findall(r"\d+", shown)


def _check_signed(arrival, secret: str, fresh: bool = True) -> dict:
    """The arrival verifies with the secret by the README's verifier, and its headers name it.
    Not `fresh`: signed at a moment the test's clock chose, so checked without the time limit."""
    if fresh:
        assert readme_verify()(secret, arrival.headers, arrival.body)
    else:
        assert arrival.headers["Safespace-Signature"] == signature(secret, int(arrival.headers["Safespace-Timestamp"]), arrival.body)
    assert not readme_verify()("whsec_" + "x" * 43, arrival.headers, arrival.body)
    assert not readme_verify()(secret, arrival.headers, arrival.body + b" ")
    body = json.loads(arrival.body)
    assert arrival.headers["Content-Type"] == "application/json"
    assert arrival.headers["Safespace-Event"] == body["event"] and arrival.headers["Safespace-Delivery"] == body["id"]
    return body


async def test_each_event_arrives_once_signed_and_without_members_or_figures(client, db: AsyncSession, engine, settings, inbox, receiver) -> None:  # fmt: skip
    world, secret = await _world_with_webhook(client, db, receiver)
    survey, community = await _survey(db, world), world.community
    now = clock.now()

    assert (await _tick(settings, engine, now)).webhooks_delivered == 1
    round_ = await db.scalar(select(Round).where(Round.survey_id == survey.id))
    for email in MEMBERS[:5]:  # k answer, so the results are out
        assert (await post_as(client, await session_cookie(db, email), f"/c/{community.id}/rounds/{round_.id}", form(5))).status_code == 303
    for title in ("First", "Second", "Third"):  # three stories go out together at the next pass
        shared = await post_as(client, await session_cookie(db, MEMBERS[0]), f"/c/{community.id}/stories", STORY | {"title": f"{title} story"})
        assert shared.status_code == 200, shared.text
    assert (await _tick(settings, engine, now + timedelta(minutes=1))).stories_released == 3
    closed = await _tick(settings, engine, round_.closes_at + timedelta(seconds=1))
    assert closed.closed == 1 and closed.webhooks_delivered == 1
    await sign_in(client, db, world.facilitator)
    await client.get(f"/c/{community.id}/insights/rounds/{round_.id}")
    summary = "You told us raising problems feels risky.\n\nFacilitators will speak first."
    assert (await post_form(client, f"/c/{community.id}/insights/actions/summaries/{round_.id}", {"summary": summary})).status_code == 303
    assert (await _tick(settings, engine, round_.closes_at + timedelta(minutes=2))).webhooks_delivered == 1

    bodies = [_check_signed(arrival, secret) for arrival in receiver.arrivals]
    assert [b["event"] for b in bodies] == ["round.opened", "stories.released", "round.closed", "action.published"]
    assert len({b["id"] for b in bodies}) == 4 and all(a.answer == 200 and a.path == "/hooks/safespace" for a in receiver.arrivals)
    opened, released, closed_body, published = bodies
    base = f"{BASE_URL}/c/{community.id}"
    assert opened["url"] == f"{base}/rounds/{round_.id}" and opened["survey"] == {"id": str(survey.id), "title": "Pulse"}
    assert opened["community"] == {"id": str(community.id), "name": "Coastal Planners"}
    assert released == {"event": "stories.released", "id": released["id"], "occurred_at": released["occurred_at"],
                        "community": opened["community"], "url": f"{base}/stories"}  # fmt: skip
    assert closed_body["outcome"] == "results" and closed_body["url"] == f"{base}/rounds/{round_.id}/results"
    assert published["summary"] == {"text": summary, "actions": []} and published["url"] == f"{base}/summary"
    people = [*MEMBERS, world.facilitator, "Ada", "answered", "respondents", "rate", "mean"]
    for arrival in receiver.arrivals:
        assert _figures(arrival.body) == [], arrival.body
        assert not [word for word in people if word in arrival.body.decode()], arrival.body
    assert len(inbox.messages) >= 7  # the round's mail went out as without webhooks


async def test_a_round_closed_with_too_few_answers_says_so_and_no_count(client, db: AsyncSession, engine, settings, inbox, receiver) -> None:  # fmt: skip
    world, secret = await _world_with_webhook(client, db, receiver, events=["round.closed"])
    survey = await _survey(db, world)
    await _tick(settings, engine, clock.now())
    assert receiver.arrivals == []  # round.opened was not chosen
    round_ = await db.scalar(select(Round).where(Round.survey_id == survey.id))
    for email in MEMBERS[:2]:  # two of six answered: below k = 5
        await post_as(client, await session_cookie(db, email), f"/c/{world.community.id}/rounds/{round_.id}", form(2))
    assert (await _tick(settings, engine, round_.closes_at + timedelta(seconds=1))).webhooks_delivered == 1
    [arrival] = receiver.arrivals
    body = _check_signed(arrival, secret)
    assert body["event"] == "round.closed" and body["outcome"] == "too_few"
    assert _figures(arrival.body) == [] and set(body) == {"event", "id", "occurred_at", "community", "survey", "round", "outcome", "url"}


async def test_a_failing_receiver_is_tried_again_later_and_leaves_the_round_alone(client, db: AsyncSession, engine, settings, inbox, receiver) -> None:  # fmt: skip
    world, secret = await _world_with_webhook(client, db, receiver)
    survey, page = await _survey(db, world), f"/c/{world.community.id}/webhooks"
    receiver.answers = [500, "hang"]
    now = clock.now()

    first = await _tick(settings, engine, now, timeout=0.5)
    assert first.opened == 1 and first.webhooks_delivered == 0
    round_ = await db.scalar(select(Round).where(Round.survey_id == survey.id))
    assert not round_.closed and len(inbox.messages) == len(MEMBERS) + 1  # the round and its mail as without webhooks
    shown = (await client.get(page)).text
    assert "The last delivery failed" in shown and "HTTP 500" in shown and "waiting" in shown

    assert (await _tick(settings, engine, now + timedelta(minutes=1), timeout=0.5)).webhooks_delivered == 0
    assert len(receiver.arrivals) == 1  # not before its wait (2 minutes) is over
    assert (await _tick(settings, engine, now + timedelta(minutes=3), timeout=0.5)).webhooks_delivered == 0
    assert "no answer within 0.5 seconds" in (await client.get(page)).text  # the receiver hung
    assert (await _tick(settings, engine, now + timedelta(minutes=6), timeout=0.5)).webhooks_delivered == 0  # 4 minutes' wait
    assert (await _tick(settings, engine, now + timedelta(minutes=8), timeout=0.5)).webhooks_delivered == 1
    for minutes in (30, 300):
        await _tick(settings, engine, now + timedelta(minutes=minutes))
    assert [a.answer for a in receiver.arrivals] == [500, "hang", 200]
    assert len({a.headers["Safespace-Delivery"] for a in receiver.arrivals}) == 1  # one delivery, tried three times
    assert len({a.body for a in receiver.arrivals}) == 1 and _check_signed(receiver.arrivals[-1], secret)["event"] == "round.opened"
    shown = (await client.get(page)).text
    assert "The last delivery failed" not in shown and "Last delivered on" in shown and "HTTP 200" in shown
    assert len(inbox.messages) == len(MEMBERS) + 1


async def test_only_https_addresses_on_the_internet_are_registered(client, db: AsyncSession, settings, receiver) -> None:
    world = await make_community(db)
    await sign_in(client, db, world.facilitator)
    refused, secret = await _register(client, world.community.id, f"http://127.0.0.1:{receiver.port}/hooks")
    assert refused.status_code == 422 and secret is None
    assert "Only HTTPS addresses can receive webhooks" in refused.text
    refused, _ = await _register(client, world.community.id, receiver.url, events=[])
    assert refused.status_code == 422 and "Choose at least one event" in refused.text
    assert await db.scalar(select(WebhookEndpoint)) is None


async def test_private_addresses_are_refused_unless_the_operator_allows_them(db: AsyncSession, settings, receiver) -> None:
    from safespace.app import create_app
    from tests.conftest import browser_like

    world = await make_community(db)
    strict = msgspec.structs.replace(settings, webhook_allow_private=False)
    async with browser_like(create_app(strict)) as client:
        await sign_in(client, db, world.facilitator)
        for url in (receiver.url, "https://10.1.2.3/hook", "https://169.254.169.254/latest", "https://localhost/hook", "https://[64:ff9b::a00:1]/hook"):
            refused, secret = await _register(client, world.community.id, url)
            assert refused.status_code == 422 and secret is None, url
            assert "private or local network" in refused.text and "SAFESPACE_WEBHOOK_ALLOW_PRIVATE" in refused.text, url
            # The page does not say what the name resolved to: the form is no map of the inside network.
            if "localhost" in url:
                assert "127.0.0.1" not in refused.text and "::1" not in refused.text
        unusable, _secret = await _register(client, world.community.id, "https://hooks.example.org:99999/hook")
        assert unusable.status_code == 422 and "cannot be used as it is written" in unusable.text
    assert await db.scalar(select(WebhookEndpoint)) is None


async def test_a_member_cannot_see_or_change_webhooks(client, db: AsyncSession, settings, receiver) -> None:
    world = await make_community(db, teams={"Energy": MEMBERS})
    await sign_in(client, db, world.facilitator)
    _answer, _secret = await _register(client, world.community.id, receiver.url)
    endpoint = await db.scalar(select(WebhookEndpoint))
    await sign_in(client, db, MEMBERS[0])
    base = f"/c/{world.community.id}/webhooks"
    assert (await client.get(base)).status_code == 403
    assert (await post_form(client, base, {"url": "https://example.org/hook", "events": "round.opened"})).status_code == 403
    for action in ("rotate", "remove", "test"):
        assert (await post_form(client, f"{base}/{endpoint.id}/{action}", {})).status_code == 403
    db.expire_all()
    assert [e.url for e in await db.scalars(select(WebhookEndpoint))] == [receiver.url]


async def test_the_secret_is_shown_once_sealed_at_rest_and_rotated(client, db: AsyncSession, engine, settings, receiver) -> None:
    world, secret = await _world_with_webhook(client, db, receiver)
    page = f"/c/{world.community.id}/webhooks"
    shown = (await client.get(page)).text
    assert secret not in shown and "whsec_" not in shown and receiver.url in shown
    async with engine.connect() as connection:  # read raw: the secret's text is in no column
        [row] = (await connection.execute(text("SELECT * FROM webhook_endpoint"))).all()
    assert not [cell for cell in row if secret.encode() in (cell if isinstance(cell, bytes) else str(cell).encode())]

    endpoint = await db.scalar(select(WebhookEndpoint))
    await post_form(client, f"{page}/{endpoint.id}/test", {})  # sent after the response
    assert json.loads(receiver.arrivals[-1].body)["event"] == "ping" and readme_verify()(secret, receiver.arrivals[-1].headers, receiver.arrivals[-1].body)

    rotated = await post_form(client, f"{page}/{endpoint.id}/rotate", {})
    new_secret = re.search(r"whsec_[A-Za-z0-9_-]{43}", rotated.text).group(0)
    assert rotated.status_code == 200 and new_secret != secret and rotated.headers["cache-control"] == "no-store"
    await post_form(client, f"{page}/{endpoint.id}/test", {})
    ping = receiver.arrivals[-1]
    assert readme_verify()(new_secret, ping.headers, ping.body) and not readme_verify()(secret, ping.headers, ping.body)
    assert new_secret not in (await client.get(page)).text

    removed = await post_form(client, f"{page}/{endpoint.id}/remove", {})
    assert removed.status_code == 303 and "The endpoint is removed" in (await client.get(page)).text
    db.expire_all()
    assert await db.scalar(select(WebhookEndpoint)) is None and await db.scalar(select(WebhookDelivery)) is None
    kinds = [e.detail for e in await db.scalars(select(AuditEntry).where(AuditEntry.kind == "webhook").order_by(AuditEntry.at))]
    host = f"127.0.0.1:{receiver.port}"
    assert kinds == [f"endpoint on {host} registered", f"secret of the endpoint on {host} rotated", f"endpoint on {host} removed"]
    assert not [detail for detail in kinds if "whsec_" in detail]


async def test_a_community_without_webhooks_notes_no_delivery(db: AsyncSession, engine, settings, receiver) -> None:
    world = await make_community(db, teams={"Energy": MEMBERS})
    await _survey(db, world)
    report = await _tick(settings, engine, clock.now())
    assert report.opened == 1 and report.webhooks_delivered == 0 and receiver.arrivals == []
    assert await db.scalar(select(WebhookDelivery)) is None


async def test_a_round_opened_now_and_closed_early_over_http_reaches_the_endpoint(client, db: AsyncSession, engine, settings, receiver, monkeypatch) -> None:  # fmt: skip
    world, secret = await _world_with_webhook(client, db, receiver, events=["round.opened", "round.closed"])
    survey = await _survey(db, world)
    assert (await _tick(settings, engine, clock.now())).webhooks_delivered == 1
    first = await db.scalar(select(Round).where(Round.survey_id == survey.id))
    assert (await _tick(settings, engine, first.closes_at + timedelta(seconds=1))).webhooks_delivered == 1
    later = first.closes_at + timedelta(hours=1)  # the scheduled round is over: open one now
    monkeypatch.setattr(clock, "now", lambda: later)
    # Three days and more have passed: the session has gone idle (how long past 3 days depends on
    # the hour the test runs at, Madrid's 01:00 opening), so the facilitator signs in again.
    await sign_in(client, db, world.facilitator)
    url = f"/c/{world.community.id}/surveys/{survey.id}"
    await client.get(f"{url}/open-round")
    assert (await post_form(client, f"{url}/open-round", {})).status_code == 303
    assert len(receiver.arrivals) == 2  # the request only noted it: the schedule sends it
    assert (await _tick(settings, engine, later)).webhooks_delivered == 1
    await client.get(f"{url}/close-round")
    assert (await post_form(client, f"{url}/close-round", {})).status_code == 303
    assert (await _tick(settings, engine, later + timedelta(minutes=1))).webhooks_delivered == 1
    bodies = [_check_signed(arrival, secret, fresh=False) for arrival in receiver.arrivals]
    assert [(b["event"], b.get("outcome")) for b in bodies] == [
        ("round.opened", None), ("round.closed", "too_few"), ("round.opened", None), ("round.closed", "too_few")
    ]
    assert bodies[2]["round"]["id"] == bodies[3]["round"]["id"] != bodies[0]["round"]["id"]


async def test_the_page_keeps_the_last_twenty_finished_deliveries(client, db: AsyncSession, engine, settings, receiver) -> None:
    from safespace.webhooks import services

    world, _secret = await _world_with_webhook(client, db, receiver)
    endpoint, page = await db.scalar(select(WebhookEndpoint)), f"/c/{world.community.id}/webhooks"
    sender = WebhookSender(settings.base_url, settings.webhook_ca_file, settings.webhook_allow_private)
    keyring = Keyring.load(settings.encryption_key_path)
    for _ in range(23):
        services.ping(db, endpoint, clock.now())
        await db.commit()
        assert await sender.deliver_due(async_sessionmaker(engine, expire_on_commit=False), keyring) == 1
    db.expire_all()
    kept = list(await db.scalars(select(WebhookDelivery)))
    assert len(kept) == 20 and {d.status for d in kept} == {"delivered"} and len(receiver.arrivals) == 23
    shown = (await client.get(page)).text
    assert shown.count("<code>ping</code>") == 20 and "Last delivered on" in shown


async def test_a_host_that_turned_private_is_not_sent_to(client, db: AsyncSession, engine, settings, receiver) -> None:
    # Registered while private addresses were allowed; the operator has since turned that off:
    # the address is checked again before every request, and nothing leaves.
    world, _secret = await _world_with_webhook(client, db, receiver)
    await _survey(db, world)
    strict = msgspec.structs.replace(settings, webhook_allow_private=False)
    assert (await _tick(strict, engine, clock.now())).webhooks_delivered == 0
    assert receiver.arrivals == []
    shown = (await client.get(f"/c/{world.community.id}/webhooks")).text
    assert "The last delivery failed" in shown and "private or local network address" in shown and "(127.0.0.1)" not in shown


async def test_a_webhook_secret_is_resealed_by_key_rotation(client, db: AsyncSession, settings, receiver) -> None:
    from safespace.privacy import rotation
    from safespace.webhooks import services

    _world, secret = await _world_with_webhook(client, db, receiver)
    keyring = Keyring.load(settings.encryption_key_path)
    keyring.add_key()
    assert await rotation.count_not_current(db, keyring) == 1
    assert await rotation.reseal_all(db, keyring) == 1
    await db.commit()
    keyring.retire_older_keys()
    assert services.secret_of(await db.scalar(select(WebhookEndpoint)), keyring) == secret


async def test_one_delivery_that_cannot_be_sent_does_not_hold_back_the_others(client, db: AsyncSession, engine, settings, receiver) -> None:
    """A delivery whose endpoint breaks before the request (here: its sealed secret no longer opens,
    as after a botched restore) fails alone: the pass goes on to the next one."""
    world, secret = await _world_with_webhook(client, db, receiver)
    broken_answer, _broken_secret = await _register(client, world.community.id, receiver.url + "?second")
    assert broken_answer.status_code == 200
    first, second = list(await db.scalars(select(WebhookEndpoint).order_by(WebhookEndpoint.created_at)))
    second.secret_sealed = b"\0" * len(second.secret_sealed)
    moment = clock.now()
    webhooks_services.ping(db, second, moment)  # the broken one first in line
    webhooks_services.ping(db, first, moment + timedelta(seconds=1))
    await db.commit()
    sender = WebhookSender(settings.base_url, settings.webhook_ca_file, settings.webhook_allow_private, timeout=2.0)
    delivered = await sender.deliver_due(async_sessionmaker(engine, expire_on_commit=False), Keyring.load(settings.encryption_key_path), moment + timedelta(seconds=2))
    assert delivered == 1
    [arrival] = receiver.arrivals
    assert json.loads(arrival.body)["event"] == "ping" and readme_verify()(secret, arrival.headers, arrival.body)
