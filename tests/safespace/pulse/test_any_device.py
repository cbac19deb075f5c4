"""Private mode on any device: a token taken in one browser never locks a member out of a round.

A member may take one more token (another browser or phone), or answer once with the signed-in
form instead; that second chance is counted at close and shown beside the results. Reminders go
to everyone the server did not see answer, since a spent token names no one.
"""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession

from safespace.identity.models import Person
from safespace.pulse.models import Round
from tests.safespace.pulse.conftest import after_close, answers, open_pulse, post_as, session_cookie
from tests.safespace.pulse.test_tokens import api_url, counts, redeem, take_token


async def test_a_second_browser_answers_once_more_and_the_results_say_so(client, db: AsyncSession, engine: AsyncEngine, settings) -> None:
    pulse = await open_pulse(db, engine, settings, members=7)
    phone_and_laptop = await session_cookie(db, "m0@x.org")
    first = await take_token(client, phone_and_laptop, pulse)  # the laptop, from the home page
    home = await client.get(f"/c/{pulse.world.community.id}", headers={"cookie": f"safespace_session={phone_and_laptop}"})
    assert "You have answered this round" not in home.text  # never told they answered
    assert "another browser or device" in home.text

    second = await take_token(client, phone_and_laptop, pulse)  # the phone, from the round's mail
    page = await client.get(pulse.url, headers={"cookie": f"safespace_session={phone_and_laptop}"})
    assert "You have already answered this round" not in page.text
    # Both browsers answer: the server cannot tell a spent token from an unspent one.
    assert (await redeem(client, first, answers(6))).status_code == 201
    assert (await redeem(client, second, answers(2))).status_code == 201
    assert await counts(db, pulse) == (2, 2, 1)  # two answers, one member in the ledger

    # A third browser gets a clear refusal, not "already answered".
    with_csrf = await client.get("/signin")
    assert with_csrf.status_code == 200
    try:
        await take_token(client, phone_and_laptop, pulse)
        raise AssertionError("a third token was signed")
    except AssertionError as refused:
        assert "two other browsers" in str(refused)

    # The signed-in form after a token: the member's one re-issue, counted like a second token.
    form_after_token = await session_cookie(db, "m1@x.org")
    await take_token(client, form_after_token, pulse)
    assert (await post_as(client, form_after_token, pulse.url, answers(5))).status_code == 303
    assert (await post_as(client, form_after_token, pulse.url, answers(5))).status_code == 409
    # The form first: the server saw that answer, so no token follows it.
    form_first = await session_cookie(db, "m2@x.org")
    assert (await post_as(client, form_first, pulse.url, answers(4))).status_code == 303
    headers = {"cookie": f"safespace_session={form_first}"}
    key = (await client.get(f"{api_url(pulse)}/token-key", headers=headers)).json()
    assert key["key_id"]
    page = await client.get(pulse.url, headers=headers)
    assert "You have already answered this round" in page.text
    for other in ("m3@x.org", "m4@x.org"):  # enough answers for results to be shown (k = 5)
        assert (await post_as(client, await session_cookie(db, other), pulse.url, answers(4))).status_code == 303

    assert (await pulse.tick(after_close(pulse))).closed == 1
    closed = await db.scalar(select(Round).where(Round.id == pulse.round.id).execution_options(populate_existing=True))
    assert closed.reissued == 2  # m0's second token, m1's form after a token
    results = await client.get(f"/c/{pulse.world.community.id}/rounds/{pulse.round.id}/results", headers=headers)
    assert "Up to 2 of these answers may come from re-issued tokens" in results.text


async def test_reminders_reach_token_holders_but_not_members_seen_answering(client, db: AsyncSession, engine: AsyncEngine, settings) -> None:
    pulse = await open_pulse(db, engine, settings, members=6)
    people = {p.email: p.id for p in await db.scalars(select(Person).where(Person.email.like("m%@x.org")))}
    token_holder = await session_cookie(db, "m0@x.org")
    await take_token(client, token_holder, pulse)
    answered = await session_cookie(db, "m1@x.org")
    assert (await post_as(client, answered, pulse.url, answers(3))).status_code == 303
    report = await pulse.tick(pulse.round.closes_at - timedelta(hours=12))
    reminded = {person for kind, _round, person in report.mails if kind == "reminder"}
    assert people["m0@x.org"] in reminded  # took a token: may or may not have answered
    assert people["m1@x.org"] not in reminded  # answered with the form: the server saw it
    assert {person for email, person in people.items() if email != "m1@x.org"} <= reminded
