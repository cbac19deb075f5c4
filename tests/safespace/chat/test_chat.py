"""A community's chat gets round invitations, reminders and "results are out" through Apprise,
from the schedule after its commit; a failing or silent receiver leaves the round and its mail
alone, is tried again later, and the facilitators see that the last delivery failed.

The receiver is a real HTTP server on 127.0.0.1 taking Apprise's `json://` posts."""

from __future__ import annotations

import json
import re
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from safespace import clock, schedule
from safespace.chat import delivery
from safespace.chat import services as chat
from safespace.chat.delivery import ChatDelivery, reason
from safespace.chat.models import ChatChannel, ChatPost
from safespace.identity.models import Person
from safespace.mail import make_mailer
from safespace.privacy import rotation
from safespace.privacy.crypto import Keyring
from safespace.pulse import services as pulse
from safespace.pulse.mail import RoundMailer
from safespace.pulse.models import Participation, Round
from safespace.web.templates import template_environment
from tests.conftest import BASE_URL
from tests.helpers import make_community, post_form, sign_in
from tests.safespace.insights.conftest import answered_round, form

MADRID = ZoneInfo("Europe/Madrid")
MONDAY = datetime(2026, 3, 23, 9, tzinfo=MADRID)
SECRET = "s3cr3t-hook-token"


@dataclass
class Receiver:
    """What arrived, and how to answer the next posts: a status code, or "silent" (never answers in time)."""

    port: int = 0
    posts: list[dict] = field(default_factory=list)
    answers: list[int | str] = field(default_factory=list)
    delivered: int = 0

    def url(self, path: str = f"hooks/{SECRET}") -> str:
        return f"json://bot:pa55word@127.0.0.1:{self.port}/{path}"


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    state = Receiver()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers["Content-Length"]))
            answer = state.answers.pop(0) if state.answers else 200
            state.posts.append({"path": self.path, "answer": answer} | json.loads(body))
            if answer == "silent":
                time.sleep(2)
                answer = 200
            elif answer == 200:
                state.delivered += 1
            self.send_response(int(answer))
            self.end_headers()

        def log_message(self, *_args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    state.port = server.server_port
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield state
    server.shutdown()
    server.server_close()


async def _community_with_chat(db: AsyncSession, settings, receiver: Receiver):
    members = [f"m{i}@x.org" for i in range(6)]
    world = await make_community(db, teams={"Energy": members, "Tiny": ["t0@x.org", "t1@x.org"]})
    for email in [*members, "t0@x.org", "t1@x.org"]:
        person = await db.scalar(select(Person).where(Person.email == email))
        person.display_name = "Ada " + email.split("@")[0].upper()
    start = MONDAY.date()
    form = pulse.CadenceForm("weekly", start.weekday(), start.day, 3, start.isoformat())
    survey = await pulse.create_survey(db, world.community.id, "Europe/Madrid", "Pulse", ["psychological_safety"], form)
    keyring = Keyring.load(settings.encryption_key_path)
    await chat.set_channel(db, keyring, world.community.id, receiver.url(), "en", MONDAY)
    await db.commit()
    return world, survey, keyring


def _tick(settings, engine, keyring: Keyring, moment: datetime, timeout: float = 2.0):
    mailer = RoundMailer(make_mailer(settings), template_environment(), settings.base_url)
    return schedule.tick(async_sessionmaker(engine, expire_on_commit=False), keyring, mailer, moment=moment,
                         chat_delivery=ChatDelivery(settings.base_url, timeout=timeout))  # fmt: skip


def _figures(text: str, *allowed: str) -> list[str]:
    """The numbers a post carries besides its links and the allowed strings (a date, a title)."""
    text = re.sub(r"https?://\S+", "", text)
    for value in allowed:
        text = text.replace(value, "")
    return re.findall(r"\d+", text)


async def test_invitation_reminder_and_results_arrive_with_a_link_and_no_names_or_figures(db: AsyncSession, engine, settings, inbox, receiver) -> None:  # fmt: skip
    world, survey, keyring = await _community_with_chat(db, settings, receiver)
    people = list(await db.scalars(select(Person)))
    names = [p.email for p in people] + [p.display_name for p in people if p.display_name]

    opened = await _tick(settings, engine, keyring, MONDAY)
    assert (opened.opened, opened.chat_delivered) == (1, 1)
    round_ = await db.scalar(select(Round).where(Round.survey_id == survey.id))
    invitation = receiver.posts[-1]
    assert invitation["path"] == f"/hooks/{SECRET}"
    assert invitation["title"] == "Pulse is open in Coastal Planners"
    assert f"{BASE_URL}/c/{world.community.id}/rounds/{round_.id}" in invitation["message"]
    assert "2026-03-26 00:00 CET" in invitation["message"]  # open until, in the community's zone
    assert len(inbox.messages) == 9  # the mail went out as before

    # Three of Energy and one of a team below k answered: nothing of it may reach the chat.
    for email in ("m0@x.org", "m1@x.org", "m2@x.org", "t0@x.org"):
        person = await db.scalar(select(Person).where(Person.email == email))
        db.add(Participation(round_id=round_.id, person_id=person.id))
    await db.commit()
    reminded = await _tick(settings, engine, keyring, datetime(2026, 3, 25, 1, tzinfo=MADRID))
    assert (reminded.reminded, reminded.chat_delivered) == (1, 1)
    reminder = receiver.posts[-1]
    assert reminder["title"] == "Reminder: Pulse closes soon"
    assert "If you have not answered yet" in reminder["message"] and f"/rounds/{round_.id}" in reminder["message"]

    closed = await _tick(settings, engine, keyring, datetime(2026, 3, 26, 0, 0, 1, tzinfo=MADRID))
    assert (closed.closed, closed.chat_delivered) == (1, 1)
    results = receiver.posts[-1]
    assert results["title"] == "Pulse: the results are out"
    assert f"{BASE_URL}/c/{world.community.id}/rounds/{round_.id}/results" in results["message"]

    assert len(receiver.posts) == receiver.delivered == 3  # each once
    for post in receiver.posts:
        text = f"{post['title']}\n{post['message']}"
        assert not [name for name in names if name in text], text
        # No count, rate or score: the only numbers are the closing date's (P1-P3: no figure of a
        # group below k, or of any group, travels to a chat).
        assert _figures(text, "2026-03-26 00:00") == [], text


async def test_a_failing_receiver_leaves_the_round_and_its_mail_alone_and_is_tried_again(client, db: AsyncSession, engine, settings, inbox, receiver) -> None:  # fmt: skip
    world, survey, keyring = await _community_with_chat(db, settings, receiver)
    receiver.answers = [500]

    opened = await _tick(settings, engine, keyring, MONDAY)
    assert (opened.opened, opened.chat_delivered) == (1, 0)
    round_ = await db.scalar(select(Round).where(Round.survey_id == survey.id))
    assert not round_.closed and len(inbox.messages) == 9  # the round and its mail as if no chat existed
    post = await db.scalar(select(ChatPost))
    assert post.attempts == 1 and post.next_attempt_at > MONDAY

    # The facilitator sees it on the settings page, with the receiver's words and no secret.
    await sign_in(client, db, world.facilitator)
    page = (await client.get(f"/c/{world.community.id}/settings")).text
    assert "The last delivery failed" in page and "500" in page
    assert SECRET not in page and "pa55word" not in page and "JSON" in page and "127.0.0.1" in page

    # Not again until its wait is over; then once, and never twice.
    soon = await _tick(settings, engine, keyring, MONDAY + timedelta(minutes=1))
    assert soon.chat_delivered == 0 and len(receiver.posts) == 1
    later = await _tick(settings, engine, keyring, MONDAY + timedelta(minutes=3))
    assert later.chat_delivered == 1
    for minutes in (10, 60, 600):
        await _tick(settings, engine, keyring, MONDAY + timedelta(minutes=minutes))
    assert [p["answer"] for p in receiver.posts] == [500, 200] and receiver.delivered == 1
    assert f"/rounds/{round_.id}" in receiver.posts[-1]["message"]
    assert len(inbox.messages) == 9
    page = (await client.get(f"/c/{world.community.id}/settings")).text
    assert "The last delivery failed" not in page and "Last delivered on" in page


async def test_a_receiver_that_never_answers_is_given_up_on_in_time(db: AsyncSession, engine, settings, inbox, receiver) -> None:
    _world, survey, keyring = await _community_with_chat(db, settings, receiver)
    receiver.answers = ["silent"]
    mailer = RoundMailer(make_mailer(settings), template_environment(), settings.base_url)
    sessionmaker = async_sessionmaker(engine, expire_on_commit=False)
    opened = await schedule.tick(sessionmaker, keyring, mailer, moment=MONDAY)  # noted, not sent
    assert opened.opened == 1 and len(inbox.messages) == 9
    started = time.monotonic()
    assert await ChatDelivery(settings.base_url, timeout=0.5).deliver_due(sessionmaker, keyring, MONDAY) == 0
    assert time.monotonic() - started < 1.5  # the silent receiver keeps its request for 2 s
    assert not (await db.scalar(select(Round).where(Round.survey_id == survey.id))).closed
    channel = await db.scalar(select(ChatChannel))
    assert channel.last_failed_at is not None and SECRET not in channel.last_failure and "pa55word" not in channel.last_failure
    assert (await db.scalar(select(ChatPost))).attempts == 1


async def test_invitations_for_a_round_that_closed_meanwhile_are_dropped(db: AsyncSession, engine, settings, receiver) -> None:
    _world, survey, keyring = await _community_with_chat(db, settings, receiver)
    receiver.answers = [500]
    await _tick(settings, engine, keyring, MONDAY)
    await db.execute(update(ChatPost).values(next_attempt_at=MONDAY))  # due again at close
    await db.commit()
    closed = await _tick(settings, engine, keyring, datetime(2026, 3, 26, 0, 0, 1, tzinfo=MADRID))
    assert closed.closed == 1 and closed.chat_delivered == 1
    assert [p["title"] for p in receiver.posts] == ["Pulse is open in Coastal Planners", "Pulse: the results are out"]
    assert await db.scalar(select(ChatPost)) is None


async def test_facilitator_sets_tests_replaces_and_removes_the_chat(client, db: AsyncSession, engine, settings, receiver) -> None:
    world = await make_community(db, teams={"Energy": [f"m{i}@x.org" for i in range(5)]})
    settings_url = f"/c/{world.community.id}/settings"
    await sign_in(client, db, world.facilitator)
    page = (await client.get(settings_url)).text
    assert 'id="chat"' in page and "Send a test message" not in page

    refused = await post_form(client, f"{settings_url}/chat", {"chat_url": "nothing://at/all", "chat_language": "en"})
    assert refused.status_code == 303
    assert "Apprise does not know this URL" in (await client.get(settings_url)).text

    saved = await post_form(client, f"{settings_url}/chat", {"chat_url": receiver.url(), "chat_language": "es"})
    assert saved.status_code == 303 and saved.headers["location"].endswith("/settings#chat")
    page = (await client.get(settings_url)).text
    assert "json://127.0.0.1/…" in page and SECRET not in page and "pa55word" not in page
    # Sealed at rest: the stored bytes do not hold the URL or its token.
    channel = await db.scalar(select(ChatChannel))
    assert SECRET.encode() not in channel.url_sealed and b"127.0.0.1" not in channel.url_sealed

    tested = await post_form(client, f"{settings_url}/chat/test", {})
    assert tested.status_code == 303  # sent after the response, by a background task
    assert [p["title"] for p in receiver.posts] == ["Safespace: mensaje de prueba"]
    assert f"{BASE_URL}/c/{world.community.id}" in receiver.posts[0]["message"]
    assert "Last delivered on" in (await client.get(settings_url)).text

    receiver.answers = [503]
    await post_form(client, f"{settings_url}/chat/test", {})
    page = (await client.get(settings_url)).text
    assert "The last delivery failed" in page and "503" in page
    db.expire_all()
    assert await db.scalar(select(ChatPost)) is None  # a test message is tried once

    await post_form(client, f"{settings_url}/chat", {"chat_url": receiver.url("other/hook-two"), "chat_language": "en"})
    await post_form(client, f"{settings_url}/chat/test", {})
    assert receiver.posts[-1]["path"] == "/other/hook-two" and receiver.posts[-1]["title"] == "Safespace: test message"

    removed = await post_form(client, f"{settings_url}/chat/remove", {})
    assert removed.status_code == 303
    page = (await client.get(settings_url)).text
    assert "Send a test message" not in page and "The chat is removed" in page
    db.expire_all()
    assert await db.scalar(select(ChatChannel)) is None


async def test_a_community_without_a_chat_notes_no_posts(db: AsyncSession, engine, settings, receiver) -> None:
    start = MONDAY.date()
    world = await make_community(db, teams={"Energy": [f"m{i}@x.org" for i in range(5)]})
    form = pulse.CadenceForm("weekly", start.weekday(), start.day, 3, start.isoformat())
    await pulse.create_survey(db, world.community.id, "Europe/Madrid", "Pulse", ["psychological_safety"], form)
    await db.commit()
    report = await _tick(settings, engine, Keyring.load(settings.encryption_key_path), MONDAY)
    assert report.opened == 1 and report.chat_delivered == 0 and receiver.posts == []
    assert await db.scalar(select(ChatPost)) is None


async def test_a_chat_url_is_resealed_by_key_rotation(db: AsyncSession, settings, receiver) -> None:
    world = await make_community(db)
    keyring = Keyring.load(settings.encryption_key_path)
    await chat.set_channel(db, keyring, world.community.id, receiver.url(), "en", MONDAY)
    await db.commit()
    keyring.add_key()
    assert await rotation.count_not_current(db, keyring) == 1
    assert await rotation.reseal_all(db, keyring) == 1
    await db.commit()
    keyring.retire_older_keys()
    channel = await db.scalar(select(ChatChannel))
    assert keyring.open(channel.url_sealed, chat.url_aad(world.community.id)) == receiver.url()
    assert (await chat.channel_view(db, world.community)).receiver == chat.Receiver("JSON", "json", "127.0.0.1")


async def test_results_post_of_a_round_with_a_hidden_team_of_four_carries_no_figure(client, db: AsyncSession, engine, settings, receiver) -> None:  # fmt: skip
    # The attack of insights/test_attacks.py: a team of four (below k) and one of eight whose
    # figures would give the four away by subtraction. The chat gets the link and nothing else.
    small, big = [f"small{i}@x.org" for i in range(4)], [f"big{i}@x.org" for i in range(8)]
    answers = {e: form(1, comment=f"the small team's secret {i}") for i, e in enumerate(small)} | {e: form(6) for e in big}
    opened = await answered_round(client, db, engine, settings, {"Small": small, "Big": big}, answers, close=False)
    await chat.set_channel(db, opened.keyring, opened.world.community.id, receiver.url(), "en", MONDAY)
    await db.commit()
    closed = await _tick(settings, engine, opened.keyring, opened.round.closes_at + timedelta(seconds=1))
    assert (closed.closed, closed.chat_delivered) == (1, 1)
    [post] = receiver.posts
    text = f"{post['title']}\n{post['message']}"
    assert f"/rounds/{opened.round.id}/results" in text
    assert _figures(text) == [] and "Small" not in text and "Big" not in text and "secret" not in text, text


async def test_a_round_opened_now_and_closed_early_over_http_reaches_the_chat(client, db: AsyncSession, engine, settings, receiver, monkeypatch) -> None:  # fmt: skip
    # Weekly on Mondays for three days; on Friday the facilitator opens a round now, then closes it early.
    world, survey, keyring = await _community_with_chat(db, settings, receiver)
    friday = MONDAY + timedelta(days=4)
    monkeypatch.setattr(clock, "now", lambda: friday)
    await sign_in(client, db, world.facilitator)
    url = f"/c/{world.community.id}/surveys/{survey.id}"
    await client.get(f"{url}/open-round")
    assert (await post_form(client, f"{url}/open-round", {})).status_code == 303
    assert receiver.posts == []  # the request only noted it: the schedule sends it
    assert (await _tick(settings, engine, keyring, friday)).chat_delivered == 1
    round_ = await db.scalar(select(Round).where(Round.survey_id == survey.id))
    assert receiver.posts[-1]["title"] == "Pulse is open in Coastal Planners" and f"/rounds/{round_.id}" in receiver.posts[-1]["message"]

    await client.get(f"{url}/close-round")
    assert (await post_form(client, f"{url}/close-round", {})).status_code == 303
    assert len(receiver.posts) == 1
    assert (await _tick(settings, engine, keyring, friday + timedelta(minutes=1))).chat_delivered == 1
    assert receiver.posts[-1]["title"] == "Pulse: the results are out"
    assert receiver.posts[-1]["message"].endswith(f"/c/{world.community.id}/rounds/{round_.id}/results")


def test_a_token_where_the_host_goes_is_never_shown_nor_kept_in_a_failure_reason() -> None:
    slack = "slack://T1234ABCD/B1234ABCD/abcdefghijklmnopqrstuvwx/#general"
    shown = chat.receiver(slack)
    assert shown == chat.Receiver("Slack", "slack", None)  # T1234ABCD is a token, not a host
    mattermost = chat.receiver("mmosts://chat.example.org/abcdefghijklmnopqrstuvwxyz")
    assert mattermost == chat.Receiver("Mattermost", "mmosts", "chat.example.org")
    assert chat.receiver("nothing://at/all") is None and chat.receiver("https://example.org/hook") is None

    class Failed:  # what an apprise.AppriseResult offers reason()
        status = type("Status", (), {"name": "FAILURE"})()

        def logs(self):
            yield type(
                "Entry", (), {"level": "WARNING", "message": f"Failed to send to {slack} with T1234ABCD (abcdefghijklmnopqrstuvwx)."}
            )()

    why = reason(Failed(), slack, shown)
    assert "T1234ABCD" not in why and "abcdefghijklmnopqrstuvwx" not in why and why.startswith("Failed to send to …")


async def test_a_chat_removed_while_a_post_is_out_is_left_removed(db: AsyncSession, engine, settings, receiver, monkeypatch) -> None:
    world, _survey, keyring = await _community_with_chat(db, settings, receiver)
    await chat.note_post(db, world.community.id, "test", None, MONDAY)
    await db.commit()
    sessionmaker = async_sessionmaker(engine, expire_on_commit=False)
    sent = delivery.send

    async def send_while_removed(*args, **kwargs):
        async with sessionmaker() as other:
            await chat.remove_channel(other, world.community.id)
            await other.commit()
        return await sent(*args, **kwargs)

    monkeypatch.setattr(delivery, "send", send_while_removed)
    assert await ChatDelivery(settings.base_url).deliver_due(sessionmaker, keyring, MONDAY) == 1
    db.expire_all()
    assert await db.scalar(select(ChatChannel)) is None and await db.scalar(select(ChatPost)) is None


async def test_one_post_that_cannot_be_sent_does_not_hold_back_another_communitys(db: AsyncSession, engine, settings, receiver) -> None:
    """A post whose chat breaks before sending (its sealed URL no longer opens, as after a botched
    restore) fails alone: the pass goes on to the next community's post."""
    world, _survey, keyring = await _community_with_chat(db, settings, receiver)
    other = await make_community(db, name="Second Planners", facilitator="fac2@x.org")
    await chat.set_channel(db, keyring, other.community.id, receiver.url("hooks/second"), "en", MONDAY)
    broken = await db.get(ChatChannel, world.community.id)
    broken.url_sealed = b"\0" * len(broken.url_sealed)
    await chat.note_post(db, world.community.id, "test", None, MONDAY)  # the broken one first in line
    await chat.note_post(db, other.community.id, "test", None, MONDAY + timedelta(seconds=1))
    await db.commit()
    sent = await ChatDelivery(settings.base_url, timeout=2.0).deliver_due(async_sessionmaker(engine, expire_on_commit=False), keyring, MONDAY + timedelta(seconds=2))
    assert sent == 1
    assert [post["path"] for post in receiver.posts] == ["/hooks/second"]
