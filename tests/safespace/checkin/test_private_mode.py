"""Check-ins in private mode, over HTTP on SQLite and PostgreSQL: a member takes a token signed in,
the answer arrives with the token and no session, and each rule holds against a member or an
operator who tries to get around it."""

from __future__ import annotations

import asyncio
import os
import re
from dataclasses import dataclass

import httpx
from cryptography.hazmat.primitives.asymmetric import rsa
from sqlalchemy import func, select

from safespace.checkin.answering import read_tally
from safespace.checkin.models import CheckInKey, CheckInParticipation, CheckInSpentToken, CheckInTally
from safespace.privacy import blind
from safespace.privacy.crypto import Keyring
from safespace.privacy.token_keys import b64url, from_b64url
from tests.helpers import csrf
from tests.safespace.checkin.conftest import MEMBERS, EventStream, Meeting, outsider, shown_count

ANSWERS = "/api/v1/checkin-answers"


@dataclass
class Token:
    key_id: str
    msg: str
    sig: str

    def answer(self, value: int, **extra: object) -> dict:
        answers = {"a.s1": str(value), "a.s2": str(value)}
        return {"key_id": self.key_id, "msg": self.msg, "sig": self.sig, "answers": answers} | extra


def _public(jwk: dict[str, str]) -> rsa.RSAPublicKey:
    number = lambda field: int.from_bytes(from_b64url(jwk[field], field), "big")  # noqa: E731
    return rsa.RSAPublicNumbers(number("e"), number("n")).public_key()


async def _signed_in(meeting: Meeting, email: str) -> httpx.AsyncClient:
    client = await meeting.browser(email)
    if not client.cookies.get("safespace_csrf"):
        await client.get(meeting.join)
    return client


async def request_token(meeting: Meeting, email: str, blinded_with: bytes | None = None) -> tuple[httpx.Response, Token | None, bytes]:
    """What the join page's script does, signed in: fetch the key, blind, have it signed, unblind."""
    client = await _signed_in(meeting, email)
    key = (await client.get(f"/api/v1/checkins/{meeting.code}/token-key")).json()
    public = _public(key["jwk"])
    msg = blind.prepare(os.urandom(32))
    blinded, inv = blind.blind(public, msg)
    if blinded_with is not None:
        blinded, msg, inv = blinded_with  # type: ignore[misc]
    response = await client.post(
        f"/api/v1/checkins/{meeting.code}/token",
        json={"key_id": key["key_id"], "blinded_msg": b64url(blinded)},
        headers={"x-csrftoken": csrf(client)},
    )
    if response.status_code != 200:
        return response, None, (blinded, msg, inv)
    sig = blind.finalize(public, msg, from_b64url(response.json()["blind_sig"], "sig"), inv)
    return response, Token(key["key_id"], b64url(msg), b64url(sig)), (blinded, msg, inv)


async def take_token(meeting: Meeting, email: str) -> Token:
    response, token, _ = await request_token(meeting, email)
    assert response.status_code == 200, response.text
    return token


async def send(meeting: Meeting, body: dict) -> httpx.Response:
    """The anonymous answer: a client with no cookie at all."""
    async with meeting.new_browser() as anonymous:
        return await anonymous.post(ANSWERS, json=body)


async def _tally(meeting: Meeting, settings):
    meeting.db.expire_all()
    row = await meeting.db.get(CheckInTally, meeting.checkin_id)
    return row, read_tally(Keyring.load(settings.encryption_key_path), meeting.checkin_id, row.data)


async def _events_path(meeting: Meeting, email: str) -> str:
    page = (await (await meeting.browser(email)).get(meeting.join)).text
    found = re.search(r'data-anonymous-events="([^"]+)"', page)
    assert found, "the members' page names its anonymous event stream"
    return found.group(1).replace("&amp;", "&")


async def test_the_members_page_says_a_waiting_answer_goes_from_this_check_in(meeting: Meeting) -> None:
    """The outbox sends a check-in's answer from its own page only: the page says so, not the
    rounds' "the next time you open Safespace"."""
    await meeting.start()
    page = (await (await meeting.browser(MEMBERS[0])).get(meeting.join)).text
    form = page[page.index("data-checkin-private") :]  # the answer form (the live count has its own data-waiting)
    waiting = re.search(r'data-waiting="([^"]+)"', form).group(1)
    kept = re.search(r'data-kept="([^"]+)"', form).group(1)
    assert "when you open this check-in again" in waiting and "when you open this check-in again" in kept
    assert "the next time you open Safespace" not in page
    assert 'data-sending="Sending without your name…"' in form and 'data-failed="Not sent."' in form


async def test_answers_with_tokens_are_counted_and_the_live_count_needs_no_session(meeting: Meeting, settings) -> None:
    await meeting.start()
    stream = EventStream(meeting.app, await _events_path(meeting, MEMBERS[5]), httpx.Cookies())  # no cookie
    await asyncio.wait_for(stream.started.wait(), 10)
    assert stream.status == 200 and await stream.next() == {"state": "open", "count": None}
    for email in MEMBERS[:4]:
        token = await take_token(meeting, email)
        assert (await send(meeting, token.answer(2))).status_code == 201
    await asyncio.sleep(0.3)
    assert stream.pending() == []  # below k: nothing, as for answers sent signed in
    assert shown_count((await (await meeting.browser(meeting.world.facilitator)).get(meeting.page)).text) is None
    token = await take_token(meeting, MEMBERS[4])
    sent = await send(meeting, token.answer(4))
    assert sent.status_code == 201 and sent.json()["counted"] is True
    assert await stream.next() == {"state": "open", "count": 5}
    await stream.close()
    row, tally = await _tally(meeting, settings)
    assert row.respondents == 5 and tally.counts["s1"] == [0, 4, 0, 1, 0, 0, 0]  # the statements' 7-point scale
    # The ledger knows who took a token, not who answered, and no receipt of theirs.
    ledger = (await meeting.db.execute(select(CheckInParticipation.tokens, CheckInParticipation.receipt_hash))).all()
    assert sorted(ledger) == [(1, None)] * 5
    assert await meeting.db.scalar(select(func.count()).select_from(CheckInSpentToken)) == 5


async def test_a_token_answers_once_and_only_its_latest_receipt_changes_the_answer(meeting: Meeting, settings) -> None:
    await meeting.start()
    token = await take_token(meeting, MEMBERS[0])
    first = await send(meeting, token.answer(1))
    assert first.status_code == 201
    again = await send(meeting, token.answer(5))  # the same token, as if new: refused, counted once
    assert again.status_code == 409 and "answered already" in again.json()["detail"]
    receipt = first.json()["receipt"]
    changed = await send(meeting, token.answer(5, receipt=receipt))
    assert changed.status_code == 201
    row, tally = await _tally(meeting, settings)
    assert row.respondents == 1 and tally.counts["s1"] == [0, 0, 0, 0, 1, 0, 0]
    replayed = await send(meeting, token.answer(3, receipt=receipt))  # the older receipt: refused
    assert replayed.status_code == 409
    latest = await send(meeting, token.answer(3, receipt=changed.json()["receipt"]))
    assert latest.status_code == 201
    row, tally = await _tally(meeting, settings)
    assert row.respondents == 1 and tally.counts["s1"] == [0, 0, 1, 0, 0, 0, 0]
    # Another token's receipt does not open for this one.
    other = await take_token(meeting, MEMBERS[1])
    borrowed = await send(meeting, other.answer(2, receipt=latest.json()["receipt"]))
    assert borrowed.status_code == 201  # a first answer of its own token: the receipt is ignored, not used
    row, tally = await _tally(meeting, settings)
    assert row.respondents == 2 and tally.counts["s1"] == [0, 1, 1, 0, 0, 0, 0]


async def test_an_answer_sent_with_the_session_or_a_forged_token_is_refused(meeting: Meeting, settings) -> None:
    await meeting.start()
    token = await take_token(meeting, MEMBERS[0])
    signed_in = await (await meeting.browser(MEMBERS[0])).post(ANSWERS, json=token.answer(2), headers={"x-csrftoken": "x"})
    assert signed_in.status_code == 400 and "without cookies" in signed_in.json()["detail"]
    forged = Token(token.key_id, b64url(blind.prepare(os.urandom(32))), token.sig)
    assert (await send(meeting, forged.answer(2))).status_code == 400
    wrong = await send(meeting, token.answer(9))
    assert wrong.status_code == 422
    row, _tally_now = await _tally(meeting, settings)
    assert row.respondents == 0
    assert (await send(meeting, token.answer(2))).status_code == 201  # still unspent after those


async def test_a_second_browser_gets_one_more_token_counted_as_reissued_and_a_third_is_refused(meeting: Meeting, settings) -> None:
    await meeting.start()
    first, _token, sent = await request_token(meeting, MEMBERS[0])
    repeat, _again, _ = await request_token(meeting, MEMBERS[0], blinded_with=sent)  # the answer was lost: asked again
    assert first.status_code == repeat.status_code == 200
    assert first.json() == repeat.json()  # the same signature, and not a second token
    row, _t = await _tally(meeting, settings)
    assert row.reissued == 0
    second, _token2, _ = await request_token(meeting, MEMBERS[0])  # another browser
    assert second.status_code == 200
    third, _token3, _ = await request_token(meeting, MEMBERS[0])
    assert third.status_code == 409 and "two browsers" in third.json()["detail"]
    row, _t = await _tally(meeting, settings)
    assert row.reissued == 1
    for email in MEMBERS[1:5]:
        await send(meeting, (await take_token(meeting, email)).answer(3))
    await send(meeting, _token.answer(3))
    assert (await meeting.post(meeting.world.facilitator, f"{meeting.page}/reveal", {})).status_code == 303
    for viewer, path in ((meeting.world.facilitator, meeting.page), (MEMBERS[1], meeting.join)):
        text = re.sub(r"\s+", " ", (await (await meeting.browser(viewer)).get(path)).text)
        assert "Up to 1 of these answers may come from re-issued tokens" in text, viewer


async def test_a_token_after_the_signed_in_form_and_the_form_after_a_token_are_refused(meeting: Meeting) -> None:
    await meeting.start()
    assert (await meeting.answer(MEMBERS[0], 2)).status_code == 303
    refused, _, _ = await request_token(meeting, MEMBERS[0])
    assert refused.status_code == 409 and "already answered" in refused.json()["detail"]
    await take_token(meeting, MEMBERS[1])
    form = await meeting.answer(MEMBERS[1], 2)
    assert form.status_code == 409 and "private-mode token" in form.text


async def test_strangers_get_no_token_and_a_wrong_stream_key_opens_nothing(meeting: Meeting) -> None:
    await meeting.start()
    stranger = await outsider(meeting)
    client = await _signed_in(meeting, stranger)
    assert (await client.get(f"/api/v1/checkins/{meeting.code}/token-key")).status_code == 404
    refused = await client.post(f"/api/v1/checkins/{meeting.code}/token", json={"key_id": str(meeting.checkin_id), "blinded_msg": "AA"},
                                headers={"x-csrftoken": csrf(client)})  # fmt: skip
    assert refused.status_code == 404
    path = await _events_path(meeting, MEMBERS[0])
    wrong = EventStream(meeting.app, re.sub(r"key=\w+", "key=" + "0" * 32, path), httpx.Cookies())
    await asyncio.wait_for(wrong.started.wait(), 10)
    assert wrong.status == 404
    await wrong.close()


async def test_the_published_key_is_the_one_given_signed_in(meeting: Meeting) -> None:
    await meeting.start()
    async with meeting.new_browser() as anonymous:
        assert (await anonymous.get(f"/api/v1/token-keys/checkins/{meeting.code}")).json() == []  # none made yet
        signed = (await (await _signed_in(meeting, MEMBERS[0])).get(f"/api/v1/checkins/{meeting.code}/token-key")).json()
        published = (await anonymous.get(f"/api/v1/token-keys/checkins/{meeting.code}")).json()
    assert published == [signed] and len(signed["fingerprint"]) >= 16


async def test_close_forgets_the_spent_tokens_and_the_key_and_a_kept_token_answers_no_more(meeting: Meeting) -> None:
    await meeting.start()
    tokens = [await take_token(meeting, email) for email in MEMBERS[:6]]
    for token in tokens[:5]:
        assert (await send(meeting, token.answer(4))).status_code == 201
    assert (await meeting.post(meeting.world.facilitator, f"{meeting.page}/reveal", {})).status_code == 303
    meeting.db.expire_all()
    for model in (CheckInSpentToken, CheckInKey, CheckInParticipation):
        assert await meeting.db.scalar(select(func.count()).select_from(model)) == 0, model.__tablename__
    late = await send(meeting, tokens[5].answer(4))
    assert late.status_code == 409 and "closed" in late.json()["detail"]
