"""Answering a round: one answer set per member, folded into tallies, nothing stored per person."""

from __future__ import annotations

import asyncio
from datetime import datetime, timedelta

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from safespace import clock
from safespace.identity.models import Membership, Person
from safespace.pulse import answering
from safespace.pulse.models import Participation, PendingComment, Round, Tally
from tests.helpers import make_community, post_form, sign_in
from tests.safespace.pulse.conftest import answers, community_tally, open_pulse, post_as, session_cookie


async def _counts(db: AsyncSession, round_id) -> tuple[int, int, int]:
    participations = await db.scalar(select(func.count()).select_from(Participation).where(Participation.round_id == round_id))
    community = await db.scalar(select(Tally.respondents).where(Tally.round_id == round_id, Tally.group_key == "community"))
    comments = await db.scalar(select(func.count()).select_from(PendingComment).where(PendingComment.round_id == round_id))
    return participations, community, comments

async def test_member_answers_once_and_the_answers_are_folded(client, db: AsyncSession, pulse) -> None:
    await sign_in(client, db, "m0@x.org")
    home = await client.get(f"/c/{pulse.world.community.id}")
    assert "Answer now" in home.text and pulse.url in home.text
    form_page = await client.get(pulse.url)
    assert "cannot change your answers" in form_page.text
    assert form_page.text.count("Prefer not to answer") == 7
    response = await post_form(client, pulse.url, answers(6, comment="More time for questions."))
    assert response.status_code == 303
    assert await _counts(db, pulse.round.id) == (1, 1, 1)
    tally = await community_tally(db, pulse)
    assert all(tally.counts[key][5] == 1 for key in tally.items)  # everyone's "6" is in the 6th cell
    again = await client.get(pulse.url)
    assert "You have already answered this round" in again.text
    second = await post_form(client, pulse.url, answers(1))
    assert second.status_code == 409 and "already answered" in second.text
    assert await _counts(db, pulse.round.id) == (1, 1, 1)
    home = await client.get(f"/c/{pulse.world.community.id}")
    assert "You have answered this round" in home.text

async def test_prefer_not_to_answer_is_counted_as_skipped(client, db: AsyncSession, pulse) -> None:
    await sign_in(client, db, "m1@x.org")
    await client.get(pulse.url)
    skipped = answers(4, **{"psychological_safety.ps_help": "skip"})
    assert (await post_form(client, pulse.url, skipped)).status_code == 303
    tally = await community_tally(db, pulse)
    assert tally.skipped["ps_help"] == 1 and sum(tally.counts["ps_help"]) == 0

async def test_bad_input_gives_a_clear_error_and_writes_nothing(client, db: AsyncSession, pulse) -> None:
    await sign_in(client, db, "m2@x.org")
    await client.get(pulse.url)
    eight = await post_form(client, pulse.url, answers(4, **{"psychological_safety.ps_help": "8"}))
    assert eight.status_code == 422 and "not on the scale" in eight.text
    unknown = await post_form(client, pulse.url, answers(4, **{"psychological_safety.ps_salary": "3"}))
    assert unknown.status_code == 422 and "not part of the round" in unknown.text
    no_csrf = await client.post(pulse.url, data=answers(4))
    assert no_csrf.status_code == 403
    other = await make_community(db, name="Elsewhere", facilitator="else@x.org")
    foreign = await post_form(client, f"/c/{other.community.id}/rounds/{pulse.round.id}", answers(4))
    assert foreign.status_code == 404
    wrong_community = await post_form(
        client, f"/c/{pulse.world.community.id}/rounds/00000000-0000-4000-8000-000000000000", answers(4)
    )
    assert wrong_community.status_code == 404
    assert await _counts(db, pulse.round.id) == (0, 0, 0)

async def test_deactivated_member_cannot_answer(client, db: AsyncSession, pulse) -> None:
    await sign_in(client, db, "m3@x.org")
    await client.get(pulse.url)
    membership = await db.scalar(select(Membership).join(Person).where(Person.email == "m3@x.org"))
    membership.status = "deactivated"
    await db.commit()
    assert (await post_form(client, pulse.url, answers(4))).status_code == 404
    assert await _counts(db, pulse.round.id) == (0, 0, 0)

async def test_member_of_another_community_cannot_answer(client, db: AsyncSession, pulse) -> None:
    await make_community(db, name="Other place", facilitator="other@x.org")
    await sign_in(client, db, "other@x.org")
    await client.get(pulse.url)
    response = await post_form(client, pulse.url, answers(4))
    assert response.status_code == 404 and "no community at this address" in response.text
    assert await _counts(db, pulse.round.id) == (0, 0, 0)

async def test_closed_round_refuses_answers(client, db: AsyncSession, pulse) -> None:
    from tests.safespace.pulse.conftest import after_close

    await sign_in(client, db, "m4@x.org")
    await client.get(pulse.url)
    assert (await pulse.tick(after_close(pulse))).closed == 1
    response = await post_form(client, pulse.url, answers(4))
    assert response.status_code == 409 and "closed" in response.text
    # Nobody answered before the close: no ledger row, and (below k) no tally is kept at all.
    assert await _counts(db, pulse.round.id) == (0, None, 0)

async def test_twenty_parallel_submissions_by_one_member_count_once(client, db: AsyncSession, pulse) -> None:
    session = await session_cookie(db, "m5@x.org")
    results = await asyncio.gather(*[post_as(client, session, pulse.url, answers(3)) for _ in range(20)])
    statuses = sorted(r.status_code for r in results)
    assert statuses == [303] + [409] * 19
    assert await _counts(db, pulse.round.id) == (1, 1, 0)
    team = await db.scalar(select(Tally.respondents).where(Tally.round_id == pulse.round.id, Tally.group_key != "community"))
    assert team == 1

async def test_two_hundred_members_answering_at_once_are_all_counted(client, db: AsyncSession, engine, settings) -> None:
    pulse = await open_pulse(db, engine, settings, members=200)
    sessions = [await session_cookie(db, f"m{i}@x.org") for i in range(200)]
    results = await asyncio.gather(*[post_as(client, s, pulse.url, answers(1 + i % 7)) for i, s in enumerate(sessions)])
    assert [r.status_code for r in results] == [303] * 200
    participations, community, _comments = await _counts(db, pulse.round.id)
    assert participations == community == 200
    tally = await community_tally(db, pulse)
    assert tally.respondents == 200 and sum(tally.counts["ps_help"]) == 200

async def test_answers_sent_together_share_transactions_and_each_has_its_own_outcome(client, db: AsyncSession, engine, settings) -> None:
    """Group commit: concurrent answers are folded in shared transactions, yet judged one by one.
    A bad answer and a second answer in the same batches are refused; the rest are counted, and
    each member who was counted is thanked on their next page."""
    pulse = await open_pulse(db, engine, settings, members=30)
    sessions = [await session_cookie(db, f"m{i}@x.org") for i in range(30)]
    forms = [answers(1 + i % 7, comment=f"Idea {i}" if i % 5 == 0 else None) for i in range(30)]
    forms[3] = forms[17] = answers(4, **{"psychological_safety.ps_help": "8"})  # not on the scale
    queue = client.app.state.answers.batcher
    before = queue.batches, queue.items
    posts = [post_as(client, s, pulse.url, f) for s, f in zip(sessions, forms, strict=True)]
    results = await asyncio.gather(*posts, post_as(client, sessions[9], pulse.url, answers(2)))  # member 9 twice
    statuses = [r.status_code for r in results]
    assert statuses[3] == statuses[17] == 422 and "not on the scale" in results[3].text
    assert sorted([statuses[9], statuses[30]]) == [303, 409]
    assert statuses.count(303) == 28
    batches, items = queue.batches - before[0], queue.items - before[1]
    assert items == 31 and batches < items  # grouped: fewer transactions than answers
    assert await _counts(db, pulse.round.id) == (28, 28, 6)  # the comments of members 0, 5, 10, 15, 20, 25
    tally = await community_tally(db, pulse)
    assert sum(tally.counts["ps_help"]) == 28 and tally.respondents == 28
    thanked = await client.get(f"/c/{pulse.world.community.id}", headers={"cookie": f"safespace_session={sessions[0]}"})
    assert "Your answers were added to the totals" in thanked.text
    refused = await client.get(f"/c/{pulse.world.community.id}", headers={"cookie": f"safespace_session={sessions[3]}"})
    assert "Your answers were added to the totals" not in refused.text

async def test_k_is_locked_when_the_round_opens(db: AsyncSession, pulse) -> None:
    pulse.world.community.min_group_size = 9
    db.add(pulse.world.community)
    await db.commit()
    round_ = await db.get(Round, pulse.round.id)
    await db.refresh(round_)
    assert round_.min_group_size == 5

async def test_a_batch_judges_each_answer_alone(db: AsyncSession, pulse, monkeypatch) -> None:
    """answering.fold_answers on one batch: a member twice, bad input, a stranger, a good answer."""
    people = {email: await db.scalar(select(Person.id).where(Person.email == email)) for email in ("m0@x.org", "m1@x.org", "fac@x.org")}
    await make_community(db, name="Elsewhere", facilitator="else@x.org")
    stranger = await db.scalar(select(Person.id).where(Person.email == "else@x.org"))
    community = pulse.world.community.id

    def answer(person, form):
        return answering.Answer(community, person, pulse.round.id, form)

    batch = [
        answer(people["m0@x.org"], answers(4)),
        answer(people["m0@x.org"], answers(2)),
        answer(people["m1@x.org"], answers(4, **{"psychological_safety.ps_help": "8"})),
        answer(stranger, answers(4)),
        answer(people["fac@x.org"], answers(6, comment="Fewer meetings.")),
    ]
    async with pulse.sessionmaker() as session:
        outcomes = await session.run_sync(answering.fold_answers, pulse.keyring, batch)
        await session.commit()
    assert [type(o).__name__ for o in outcomes] == ["NoneType", "AlreadyAnswered", "InvalidInput", "LookupError", "NoneType"]
    assert await _counts(db, pulse.round.id) == (2, 2, 1)
    # The round closes between the checks and the writes: both answers of a member are refused
    # as "closed", and the ledger keeps no trace of them.
    real_now, calls = clock.now, []

    def later() -> datetime:
        calls.append(1)
        return real_now() if len(calls) == 1 else pulse.round.closes_at + timedelta(seconds=1)

    monkeypatch.setattr(clock, "now", later)
    async with pulse.sessionmaker() as session:
        outcomes = await session.run_sync(answering.fold_answers, pulse.keyring, [answer(people["m1@x.org"], answers(3))] * 2)
        await session.commit()
    assert [type(o).__name__ for o in outcomes] == ["RoundNotOpen", "RoundNotOpen"]
    assert await _counts(db, pulse.round.id) == (2, 2, 1)
