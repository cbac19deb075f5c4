"""Unlinkable answers with RFC 9474 blind-signature tokens, attacked the ways the issue lists.

The member side is played by safespace.privacy.blind's client functions (the JavaScript module
does the same in the browser tests); the server is the app over HTTP.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import httpx
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa
from sqlalchemy import event, func, select, text
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession

from safespace.db.models import metadata
from safespace.identity.models import Person
from safespace.privacy import blind
from safespace.privacy.token_keys import b64url, from_b64url
from safespace.pulse import token_queue
from safespace.pulse.models import Participation, SpentToken, Tally
from safespace.web.guards import READS_STATE_KEY
from tests.conftest import BASE_URL
from tests.helpers import session_csrf
from tests.safespace.pulse.conftest import Pulse, after_close, answers, open_pulse, post_as, session_cookie


@asynccontextmanager
async def anonymous(client: httpx.AsyncClient) -> AsyncIterator[httpx.AsyncClient]:
    """A second client on the same running app with an empty cookie jar, as `credentials: "omit"`."""
    transport = httpx.ASGITransport(app=client.app, client=("198.51.100.9", 40000))
    async with httpx.AsyncClient(transport=transport, base_url=BASE_URL) as bare:
        yield bare


def api_url(pulse: Pulse) -> str:
    return f"/api/v1/communities/{pulse.world.community.id}/rounds/{pulse.round.id}"


def jwk_key(jwk: dict[str, str]) -> rsa.RSAPublicKey:
    n, e = (int.from_bytes(from_b64url(jwk[part], part), "big") for part in ("n", "e"))
    return rsa.RSAPublicNumbers(e, n).public_key()


async def take_token(client: httpx.AsyncClient, session: str, pulse: Pulse) -> dict:
    """What the home page's script does: fetch the key, blind, have it signed, finalize."""
    headers = {"cookie": f"safespace_session={session}"}
    key = (await client.get(f"{api_url(pulse)}/token-key", headers=headers)).json()
    public = jwk_key(key["jwk"])
    msg = blind.prepare(b"answer token")
    blinded, inv = blind.blind(public, msg)
    if not client.cookies.get("safespace_csrf"):
        await client.get("/signin")
    signed = await client.post(
        f"{api_url(pulse)}/token",
        json={"key_id": key["key_id"], "blinded_msg": b64url(blinded)},
        headers={"cookie": f"safespace_session={session}; safespace_csrf={session_csrf(client, session)}", "x-csrftoken": session_csrf(client, session)},
    )
    assert signed.status_code == 200, signed.text
    sig = blind.finalize(public, msg, from_b64url(signed.json()["blind_sig"], "sig"), inv)
    return {"round_id": str(pulse.round.id), "key_id": key["key_id"], "msg": b64url(msg), "sig": b64url(sig), "fingerprint": key["fingerprint"]}


async def redeem(client: httpx.AsyncClient, token: dict, form: dict[str, str], **changes: str) -> httpx.Response:
    body = {k: v for k, v in token.items() if k != "fingerprint"} | changes | {"answers": form}
    async with anonymous(client) as bare:
        return await bare.post("/api/v1/answers", json=body)


async def counts(db: AsyncSession, pulse: Pulse) -> tuple[int, int, int]:
    """(community tally respondents, spent tokens, ledger rows) of the round."""
    tallied = await db.scalar(select(func.max(Tally.respondents)).where(Tally.round_id == pulse.round.id, Tally.group_key == "community"))
    spent = await db.scalar(select(func.count()).select_from(SpentToken).where(SpentToken.round_id == pulse.round.id))
    ledger = await db.scalar(select(func.count()).select_from(Participation).where(Participation.round_id == pulse.round.id))
    return tallied or 0, spent, ledger


async def test_a_token_counts_the_answers_once_and_names_no_one(client, db: AsyncSession, engine: AsyncEngine, settings, caplog) -> None:
    pulse = await open_pulse(db, engine, settings, members=6)
    session = await session_cookie(db, "m0@x.org")
    token = await take_token(client, session, pulse)
    assert await counts(db, pulse) == (0, 0, 1)  # in the ledger ("has a token"), nothing counted yet
    again = await client.get(f"{api_url(pulse)}/token-key", headers={"cookie": f"safespace_session={session}"})
    assert again.status_code == 200  # the key itself is public

    caplog.set_level(logging.DEBUG)
    response = await redeem(client, token, answers(6, comment="said with a token"))
    assert response.status_code == 201, response.text
    assert await counts(db, pulse) == (1, 1, 1)
    reused = await redeem(client, token, answers(1))
    assert reused.status_code == 409 and "used already" in reused.json()["detail"]
    assert await counts(db, pulse) == (1, 1, 1)

    person = await db.scalar(select(Person).where(Person.email == "m0@x.org"))
    logged = "\n".join(record.getMessage() for record in caplog.records)
    for secret in (str(person.id), person.id.hex, "m0@x.org", token["msg"], token["sig"], "198.51.100.9", "said with a token"):
        assert secret not in logged

    # After the round: no table holds the token's hash, and none pairs the member with anything.
    token_hash = hashlib.sha256(from_b64url(token["msg"], "msg")).digest()
    for email in ("m1@x.org", "m2@x.org", "m3@x.org", "m4@x.org"):
        assert (await post_as(client, await session_cookie(db, email), pulse.url, answers(5))).status_code == 303
    assert (await pulse.tick(after_close(pulse))).closed == 1
    async with engine.connect() as connection:
        for table in metadata.sorted_tables:
            dump = repr((await connection.execute(text(f"SELECT * FROM {table.name}"))).all())
            assert token_hash.hex() not in dump and repr(token_hash)[2:-1] not in dump, table.name
        assert (await connection.execute(text("SELECT count(*) FROM round_key"))).scalar() == 0


async def test_forged_and_misdirected_tokens_are_refused_and_write_nothing(client, db: AsyncSession, engine, settings) -> None:
    pulse = await open_pulse(db, engine, settings, members=6)
    token = await take_token(client, await session_cookie(db, "m0@x.org"), pulse)
    before = await counts(db, pulse)

    tampered = bytearray(from_b64url(token["msg"], "msg"))
    tampered[-1] ^= 1
    refused = await redeem(client, token, answers(5), msg=b64url(bytes(tampered)))
    assert refused.status_code == 400 and "does not verify" in refused.json()["detail"]

    # A signature made with another key (a token of another round would be one).
    other = blind.generate_key(2048)
    msg = blind.prepare(b"other round")
    blinded, inv = blind.blind(other.public_key(), msg)
    foreign = blind.finalize(other.public_key(), msg, blind.blind_sign(other, blinded), inv)
    refused = await redeem(client, token, answers(5), msg=b64url(msg), sig=b64url(foreign))
    assert refused.status_code == 400

    # A key that is not this round's.
    refused = await redeem(client, token, answers(5), key_id="00000000-0000-4000-8000-000000000000")
    assert refused.status_code == 404 and "not for this round" in refused.json()["detail"]

    # Answers off the scale: nothing spent, the token still works afterwards.
    refused = await redeem(client, token, answers(9))
    assert refused.status_code == 422
    assert await counts(db, pulse) == before

    # With a member's session cookie: refused, nothing written.
    body = {k: v for k, v in token.items() if k != "fingerprint"} | {"answers": answers(5)}
    session = await session_cookie(db, "m1@x.org")
    with_cookie = await client.post("/api/v1/answers", json=body, headers={"cookie": f"safespace_session={session}"})
    assert with_cookie.status_code == 400 and "without cookies" in with_cookie.json()["detail"]
    assert await counts(db, pulse) == before
    assert (await redeem(client, token, answers(5))).status_code == 201


async def test_a_blinded_message_out_of_range_is_refused_before_the_ledger(client, db: AsyncSession, engine, settings) -> None:
    pulse = await open_pulse(db, engine, settings, members=6)
    session = await session_cookie(db, "m0@x.org")
    key = (await client.get(f"{api_url(pulse)}/token-key", headers={"cookie": f"safespace_session={session}"})).json()
    n = from_b64url(key["jwk"]["n"], "n")
    await client.get("/signin")
    for blinded in (n, b"\xff" * len(n), b"\x00" * len(n)):
        response = await client.post(
            f"{api_url(pulse)}/token",
            json={"key_id": key["key_id"], "blinded_msg": b64url(blinded)},
            headers={"cookie": f"safespace_session={session}; safespace_csrf={session_csrf(client, session)}", "x-csrftoken": session_csrf(client, session)},
        )
        assert response.status_code == 400 and "refused" in response.json()["detail"], (blinded[:4], response.text)
    assert await counts(db, pulse) == (0, 0, 0)  # the member can still take a good token
    await take_token(client, session, pulse)


async def test_a_community_can_require_private_mode(client, db: AsyncSession, engine, settings) -> None:
    pulse = await open_pulse(db, engine, settings, members=6)
    community_id = pulse.world.community.id
    toggled = await post_as(client, await session_cookie(db, "fac@x.org"), f"/c/{community_id}/surveys/private-mode", {"require": "yes"})
    assert toggled.status_code == 303
    member_session = await session_cookie(db, "m1@x.org")
    refused = await post_as(client, member_session, f"/c/{community_id}/surveys/private-mode", {"require": "no"})
    assert refused.status_code == 403  # only facilitators choose
    session = await session_cookie(db, "m0@x.org")
    page = await client.get(pulse.url, headers={"cookie": f"safespace_session={session}"})
    assert "accepts answers only in private mode" in page.text
    refused = await post_as(client, session, pulse.url, answers(5))
    assert refused.status_code == 409 and "private mode" in refused.text
    assert await counts(db, pulse) == (0, 0, 0)
    token = await take_token(client, session, pulse)
    assert (await redeem(client, token, answers(5))).status_code == 201


async def test_key_rotation_reseals_the_round_keys(client, db: AsyncSession, engine, settings) -> None:
    """`safespace keys rotate` re-encrypts the sealed private keys too; tokens keep working."""
    import os
    import subprocess
    import sys

    pulse = await open_pulse(db, engine, settings, members=6)
    first = await take_token(client, await session_cookie(db, "m0@x.org"), pulse)
    env = {**os.environ, "SAFESPACE_DATA_DIR": settings.data_dir, "SAFESPACE_DATABASE_URL": settings.database_url}
    result = subprocess.run([sys.executable, "-m", "safespace", "keys", "rotate"], env=env, capture_output=True, text=True)
    # Two keys: the community's and Energy's, both made when the round opened.
    assert result.returncode == 0 and "re-encrypted 2" in result.stdout, result.stdout + result.stderr
    second = await take_token(client, await session_cookie(db, "m1@x.org"), pulse)
    assert second["key_id"] == first["key_id"]  # the same key, now under the new keyring key
    assert (await redeem(client, first, answers(5))).status_code == 201
    assert (await redeem(client, second, answers(3))).status_code == 201


async def test_the_same_blinded_request_gets_the_same_signature_and_no_second_token(client, db: AsyncSession, engine, settings) -> None:
    """A browser that left before the signature arrived asks again with the same blinded message:
    it gets the same signature (one token still). Any other blinded message is refused."""
    pulse = await open_pulse(db, engine, settings, members=6)
    session = await session_cookie(db, "m0@x.org")
    key = (await client.get(f"{api_url(pulse)}/token-key", headers={"cookie": f"safespace_session={session}"})).json()
    public = jwk_key(key["jwk"])
    await client.get("/signin")
    headers = {"cookie": f"safespace_session={session}; safespace_csrf={session_csrf(client, session)}", "x-csrftoken": session_csrf(client, session)}
    msg = blind.prepare(b"kept while the page changed")
    blinded, inv = blind.blind(public, msg)

    async def ask(blinded_msg: bytes) -> httpx.Response:
        body = {"key_id": key["key_id"], "blinded_msg": b64url(blinded_msg)}
        return await client.post(f"{api_url(pulse)}/token", json=body, headers=headers)

    first, again = await ask(blinded), await ask(blinded)
    assert first.status_code == again.status_code == 200 and first.json() == again.json()
    # Another blinded message is a second token (another browser): allowed once, and then no more.
    other, _ = blind.blind(public, blind.prepare(b"a second token"))
    assert (await ask(other)).status_code == 200
    third, _ = blind.blind(public, blind.prepare(b"a third token"))
    refused = await ask(third)
    assert refused.status_code == 409 and "two other browsers" in refused.json()["detail"]
    sig = blind.finalize(public, msg, from_b64url(again.json()["blind_sig"], "sig"), inv)
    token = {"round_id": str(pulse.round.id), "key_id": key["key_id"], "msg": b64url(msg), "sig": b64url(sig)}
    assert (await redeem(client, token, answers(5))).status_code == 201
    assert await counts(db, pulse) == (1, 1, 1)
    # The requests' traces go with the close: the ledger is re-inserted without them.
    assert (await pulse.tick(after_close(pulse))).closed == 1
    assert await db.scalar(select(func.count()).select_from(Participation).where(Participation.token_request.is_not(None))) == 0


async def test_answers_of_the_wrong_shape_get_a_clear_400_not_a_500(client, db: AsyncSession, engine, settings) -> None:
    """Schemathesis found `answers: []` answered with a 500 (the field's name is also a dependency's)."""
    pulse = await open_pulse(db, engine, settings, members=5)
    session = await session_cookie(db, "m0@x.org")
    token = await take_token(client, session, pulse)
    body = {k: v for k, v in token.items() if k != "fingerprint"}
    async with anonymous(client) as bare:
        for answers_value in ([], "x", 3, None):
            response = await bare.post("/api/v1/answers", json=body | {"answers": answers_value})
            assert response.status_code == 400, (answers_value, response.status_code, response.text)
            assert "answers" in response.text
    assert await counts(db, pulse) == (0, 0, 1)  # nothing counted, the token still unspent


async def test_every_key_of_a_round_is_published_when_it_opens(client, db: AsyncSession, engine, settings) -> None:
    """A key that appeared when a team's first member opened the home page would tell a watching
    facilitator that someone of that team is active right now: the list is whole from the open."""
    pulse = await open_pulse(db, engine, settings, members=6)
    await db.refresh(pulse.round)
    published = f"/api/v1/token-keys/rounds/{pulse.round.id}"
    async with anonymous(client) as bare:
        before = (await bare.get(published)).json()
        assert sorted(key["group_key"] for key in before) == sorted(pulse.round.population)
        await take_token(client, await session_cookie(db, "m0@x.org"), pulse)
        await take_token(client, await session_cookie(db, "m1@x.org"), pulse)
        assert (await bare.get(published)).json() == before, "the published list changed while members took tokens"


async def test_a_batch_of_issuances_is_checked_off_the_event_loop(client, db: AsyncSession, engine: AsyncEngine, settings) -> None:
    # SQLite: a request's own lookups (its session) run on the loop's thread, but a batch's checks
    # (rounds, keys and memberships of up to 64 issuances) are sent to aiosqlite's thread.
    if not settings.is_sqlite:
        pytest.skip("PostgreSQL reads never run on the event loop's thread")
    pulse = await open_pulse(db, engine, settings, members=3)
    inline = client.app.state[READS_STATE_KEY]._inline
    on_the_loop: list[object] = []

    def record(_conn, _cursor, _statement, _parameters, context, _many) -> None:
        on_the_loop.append(context.compiled.statement if context.compiled is not None else None)

    event.listen(inline, "before_cursor_execute", record)
    try:
        await take_token(client, await session_cookie(db, "m0@x.org"), pulse)
    finally:
        event.remove(inline, "before_cursor_execute", record)
    assert on_the_loop, "the session is read on the loop's thread"
    batch_reads = [token_queue._ROUNDS, token_queue._KEYS, token_queue._MEMBERS]
    assert not [statement for statement in on_the_loop if any(statement is read for read in batch_reads)]
