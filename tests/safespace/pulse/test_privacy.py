"""The promises of a round, tested by attack: read the database, watch the results while open."""

from __future__ import annotations

import re
import uuid
from datetime import date, datetime

from sqlalchemy import inspect, select, text
from sqlalchemy.ext.asyncio import AsyncSession

from safespace.db.models import metadata
from safespace.identity.models import Person
from safespace.privacy.crypto import associated_data
from safespace.pulse import lifecycle
from safespace.pulse.models import ReleasedComment
from tests.helpers import sign_in
from tests.safespace.pulse.conftest import after_close, answers, open_pulse, post_as, session_cookie

# The tables that hold what was answered. None of them may hold anything about who.
ANSWER_TABLES = {"tally", "pending_comment", "released_comment"}


async def _answer_round(client, db: AsyncSession, pulse, comments: list[str]) -> None:
    for i, comment in enumerate(comments):
        session = await session_cookie(db, f"m{i}@x.org")
        response = await post_as(client, session, pulse.url, answers(3 + i % 4, comment=comment))
        assert response.status_code == 303


async def test_dump_has_no_member_to_answer_link(client, db: AsyncSession, engine, settings) -> None:
    pulse = await open_pulse(db, engine, settings, members=6)
    await _answer_round(client, db, pulse, [f"comment number {i}" for i in range(6)])
    people = (await db.execute(select(Person.id, Person.email, Person.display_name))).all()
    assert (await pulse.tick(after_close(pulse))).closed == 1

    # No column of an answer table is a time, a member reference, or an auto-numbered id.
    for table in metadata.sorted_tables:
        if table.name not in ANSWER_TABLES:
            continue
        for column in table.columns:
            assert "person" not in column.name and "member" not in column.name, f"{table.name}.{column.name}"
            assert column.type.python_type not in (datetime, date), f"{table.name}.{column.name} is a time"
            assert not (column.primary_key and column.autoincrement is True and column.type.python_type is int)
        for fk in table.foreign_keys:
            assert fk.column.table.name in {"round"}, f"{table.name} points to {fk.column.table.name}"

    # Every value of every row, as text and bytes: no person's id, email or name appears.
    needles = []
    for person_id, email, name in people:
        needles += [str(person_id), person_id.hex, email] + ([name] if name else [])
    async with engine.connect() as connection:
        for table_name in ANSWER_TABLES:
            rows = (await connection.execute(text(f"SELECT * FROM {table_name}"))).all()
            if table_name == "tally":
                assert rows, "no tally: the attack proves nothing"
            else:
                # Six answers miss the comment threshold (10): their comments are deleted at close,
                # not kept where nobody may read them.
                assert rows == [], f"{table_name} keeps comments that can never be shown"
            dump = repr(rows)
            for needle in needles:
                assert needle not in dump, f"{table_name} mentions {needle}"
            for row in rows:
                for value in row:
                    if isinstance(value, (bytes, memoryview)):
                        raw = bytes(value)
                        assert not any(uuid.UUID(str(p)).bytes in raw for p, _e, _n in people)
    # Nothing else pairs people with the round either: the mail ledger is gone after close.
    async with engine.connect() as connection:
        assert (await connection.execute(text("SELECT * FROM round_mail"))).all() == []
        ledger_columns = [c["name"] for c in await connection.run_sync(lambda c: inspect(c).get_columns("participation"))]
        requests = (await connection.execute(text(
            "SELECT count(*) FROM participation WHERE token_request IS NOT NULL OR second_request IS NOT NULL OR reissued"
        ))).scalar()  # fmt: skip
    # No time, no order; the private-mode request hashes (random to the server) go with the close.
    assert sorted(ledger_columns) == ["person_id", "reissued", "round_id", "second_request", "token_request"] and requests == 0


async def test_released_comments_are_not_in_answer_order(client, db: AsyncSession, engine, settings) -> None:
    """Over several rounds the released order is a shuffle, in positions and in the table itself."""
    orders, physical = [], []
    pulse = await open_pulse(db, engine, settings, members=10)
    for attempt in range(4):
        if attempt:
            pulse = await _next_round(db, pulse)
        await _answer_round(client, db, pulse, [f"c{i}" for i in range(10)])
        await pulse.tick(after_close(pulse))
        released = list(
            await db.scalars(
                select(ReleasedComment).where(ReleasedComment.round_id == pulse.round.id).order_by(ReleasedComment.position)
            )
        )
        texts = [
            pulse.keyring.open(c.body, associated_data("released_comment", "body", f"{pulse.round.id}/{c.id}"))
            for c in released
        ]
        assert sorted(texts) == sorted(f"c{i}" for i in range(10))
        orders.append(texts)
        async with engine.connect() as connection:
            ids = [str(r[0]).replace("-", "") for r in (await connection.execute(
                text("SELECT id FROM released_comment WHERE round_id = :r"),
                {"r": str(pulse.round.id) if engine.dialect.name == "postgresql" else pulse.round.id.hex},
            )).all()]
        by_id = {c.id.hex: t for c, t in zip(released, texts, strict=True)}
        physical.append([by_id[i] for i in ids])
    answered = [f"c{i}" for i in range(10)]
    assert any(order != answered for order in orders), "positions follow the answer order"
    assert any(order != answered for order in physical), "the table's row order follows the answer order"


async def _next_round(db: AsyncSession, pulse):
    """Open the survey's next round (the cadence's next window) and return a Pulse for it."""
    from dataclasses import replace

    from safespace.pulse import services
    from safespace.pulse.models import Round, Survey
    from surveys import cadence as cadence_rules

    survey = await db.get(Survey, pulse.survey_id)
    await db.refresh(survey)
    window = cadence_rules.window(services.survey_cadence(survey), pulse.round.number + 1)
    round_ = await lifecycle.open_round(db, survey, window, pulse.keyring)
    round_.opens_at = pulse.round.opens_at  # keep it open now, for the test
    round_.closes_at = pulse.round.closes_at
    await db.commit()
    # Members answered the previous round; the ledger is per round, so they may answer again.
    return replace(pulse, round=await db.get(Round, round_.id))


async def test_open_round_shows_only_a_response_rate_and_only_from_k(client, db: AsyncSession, pulse) -> None:
    await sign_in(client, db, pulse.world.facilitator)
    results_url = f"{pulse.url}/results"
    api_url = f"/api/v1/communities/{pulse.world.community.id}/rounds/{pulse.round.id}/results"
    for i in range(6):
        body = (await client.get(api_url)).json()
        page = (await client.get(results_url)).text
        assert body["instruments"] == [] and body["respondents"] is None
        assert "Scale score" not in page
        if i < 5:  # fewer than k = 5 answered: not even the rate
            assert body["response_rate"] is None and "appears once at least 5" in page
        else:
            assert body["response_rate"] == round(5 / 7, 6) or abs(body["response_rate"] - 5 / 7) < 1e-9
        session = await session_cookie(db, f"m{i}@x.org")
        assert (await post_as(client, session, pulse.url, answers(4))).status_code == 303
    await pulse.tick(after_close(pulse))
    closed = (await client.get(api_url)).json()
    assert closed["status"] == "closed" and closed["respondents"] == 6
    assert closed["instruments"][0]["score"]["mean"] == 4.0
    assert "Scale score" in (await client.get(results_url)).text


async def test_round_with_fewer_than_k_answers_shows_nothing_after_close(client, db: AsyncSession, pulse) -> None:
    for i in range(4):
        session = await session_cookie(db, f"m{i}@x.org")
        await post_as(client, session, pulse.url, answers(7, comment="only four of us"))
    await pulse.tick(after_close(pulse))
    await sign_in(client, db, pulse.world.facilitator)
    body = (await client.get(f"/api/v1/communities/{pulse.world.community.id}/rounds/{pulse.round.id}/results")).json()
    assert body["instruments"] == [] and body["respondents"] is None and body["response_rate"] is None
    page = (await client.get(f"{pulse.url}/results")).text
    assert "Fewer than 5 people answered" in page and "only four of us" not in page
    assert not re.search(r"\b7\.00\b", page)


async def test_closed_round_keeps_no_tally_about_a_small_team(client, db: AsyncSession, engine, settings) -> None:
    """Two teams, one answers with 3 people: its tally, and the one that would reveal it, are gone."""
    from safespace.identity import services as identity
    from safespace.identity.models import Membership
    from safespace.pulse.models import Tally

    pulse = await open_pulse(db, engine, settings, members=12)
    await db.refresh(pulse.round)
    assert len(pulse.round.population) == 2  # the community and "Energy" (12 members)
    # Move half the members into a second team before the next round opens, so both teams qualify.
    second = await identity.create_team(db, pulse.world.community.id, "Water")
    for membership in await db.scalars(select(Membership).join(Person).where(Person.email.in_([f"m{i}@x.org" for i in range(6)]))):
        membership.team_id = second.id
    await db.commit()
    pulse = await _next_round(db, pulse)
    await db.refresh(pulse.round)
    assert len(pulse.round.population) == 3
    for i in range(3):  # three from Water (m0..m2)
        assert (await post_as(client, await session_cookie(db, f"m{i}@x.org"), pulse.url, answers(2))).status_code == 303
    for i in range(6, 12):  # six from Energy
        assert (await post_as(client, await session_cookie(db, f"m{i}@x.org"), pulse.url, answers(6))).status_code == 303
    await pulse.tick(after_close(pulse))
    kept = sorted((await db.execute(select(Tally.group_key, Tally.respondents).where(Tally.round_id == pulse.round.id))).all())
    # Water (3) is below k; keeping Energy (6) would reveal Water as community (9) minus Energy.
    assert kept == [("community", 9)]

    # Each hidden team says why: Water had too few answers, Energy had enough and hides to protect Water.
    await sign_in(client, db, pulse.world.facilitator)
    insights = f"/c/{pulse.world.community.id}/insights/rounds/{pulse.round.id}"
    grid = (await client.get(f"{insights}/teams.json")).json()[0]
    why = {row["name"]: set(row["empty_because"]) for row in grid["rows"]}
    assert why == {"Energy": {"protects_a_smaller_group"}, "Water": {"fewer_than_k"}}
    page = (await client.get(insights)).text
    assert re.search(r"<title>Energy, [^<]*: hidden: hidden to protect a smaller group</title>", page)
    assert re.search(r"<title>Water, [^<]*: hidden: fewer than 5 people</title>", page)
    assert not re.search(r"<title>Energy, [^<]*fewer than", page), "Energy had 6 answers: not 'fewer than 5'"


async def test_a_statement_answered_by_fewer_than_k_is_hidden(client, db: AsyncSession, pulse) -> None:
    """Five answered the round, but four chose "prefer not to answer" on one statement."""
    for i in range(5):
        form = answers(4, **({"psychological_safety.ps_help": "1"} if i == 0 else {"psychological_safety.ps_help": "skip"}))
        await post_as(client, await session_cookie(db, f"m{i}@x.org"), pulse.url, form)
    await pulse.tick(after_close(pulse))
    await sign_in(client, db, pulse.world.facilitator)
    body = (await client.get(f"/api/v1/communities/{pulse.world.community.id}/rounds/{pulse.round.id}/results")).json()
    items = {item["key"]: item for item in body["instruments"][0]["items"]}
    assert items["ps_help"]["mean"] is None and items["ps_help"]["distribution"] == []
    assert items["ps_mistakes"]["mean"] == 4.0
    assert (await client.get(f"{pulse.url}/results")).status_code == 200


async def test_open_round_tallies_open_only_with_the_round_key_which_close_destroys(client, db: AsyncSession, pulse) -> None:
    """A dump taken while the round is open holds no tally state in the clear; after close the key
    file is gone and the kept aggregate is plain JSON (tests/faults/test_files_at_rest.py reads the
    database's raw files)."""
    from safespace.pulse.models import PendingComment, Tally

    for i in range(5):
        response = await post_as(client, await session_cookie(db, f"m{i}@x.org"), pulse.url, answers(2 + i, comment=f"open secret {i}"))
        assert response.status_code == 303
    key_file = pulse.keyring.rounds.folder / f"{pulse.round.id}.key"
    assert key_file.exists() and pulse.round.id in pulse.keyring.rounds.held()
    states = [data for (data,) in (await db.execute(select(Tally.data).where(Tally.round_id == pulse.round.id))).all()]
    assert states and all(data[:1] == b"\x02" and b"counts" not in data for data in states), "a tally is readable in a dump"
    bodies = [b for (b,) in (await db.execute(select(PendingComment.body))).all()]
    assert len(bodies) == 5 and all(body[:1] == b"\x02" for body in bodies)

    assert (await pulse.tick(after_close(pulse))).closed == 1
    assert not key_file.exists(), "close must destroy the round's key"
    kept = (await db.execute(select(Tally.data).where(Tally.round_id == pulse.round.id))).scalars().all()
    assert kept and all(data[:1] == b"{" for data in kept)
    assert (await db.execute(select(PendingComment))).all() == []  # below the comment threshold (10): deleted


async def test_sealed_states_are_as_long_whatever_was_answered_or_written(client, db: AsyncSession, pulse) -> None:
    """Sealing hides content, not length, and each tally state and pending comment sits beside the
    ledger row of the member who wrote it: read raw, their lengths must not tell what that member
    answered (a sum gaining a digit) or which released comment is theirs."""
    from safespace.pulse.models import PendingComment, Tally

    lengths = set()
    for i, (value, comment) in enumerate([(1, "ok"), (5, "A much longer comment about the meetings " * 20), (5, None)]):
        response = await post_as(client, await session_cookie(db, f"m{i}@x.org"), pulse.url, answers(value, comment=comment))
        assert response.status_code == 303
        lengths |= {len(data) for (data,) in (await db.execute(select(Tally.data).where(Tally.round_id == pulse.round.id))).all()}
    assert len(lengths) == 1, f"tally states of different lengths: {sorted(lengths)}"
    bodies = [b for (b,) in (await db.execute(select(PendingComment.body).where(PendingComment.round_id == pulse.round.id))).all()]
    assert len(bodies) == 2 and len({len(b) for b in bodies}) == 1, "a pending comment's length tells which one it is"


async def test_a_round_whose_key_was_lost_closes_without_results(client, db: AsyncSession, pulse, caplog) -> None:
    """A database restored from a backup taken while the round was open, after its key was
    destroyed: the answers cannot be opened, and the round still closes (no tick fails)."""
    from safespace.pulse.models import Tally

    for i in range(5):
        await post_as(client, await session_cookie(db, f"m{i}@x.org"), pulse.url, answers(4, comment="lost with the key"))
    pulse.keyring.rounds.destroy(pulse.round.id)
    assert (await pulse.tick(after_close(pulse))).closed == 1
    assert "closes without results: its key is missing" in caplog.text
    assert (await db.execute(select(Tally).where(Tally.round_id == pulse.round.id))).all() == []
    assert (await db.execute(select(ReleasedComment).where(ReleasedComment.round_id == pulse.round.id))).all() == []
    await sign_in(client, db, pulse.world.facilitator)
    assert (await client.get(f"{pulse.url}/results")).status_code == 200


async def test_each_figure_shows_the_number_of_people_it_rests_on(client, db: AsyncSession, pulse) -> None:
    """Six answered the round, one skipped every statement: the scale score and each statement rest
    on five, and the page says so beside them, not "6" alone."""
    from surveys.instrument import builtin_instruments

    keys = builtin_instruments()["psychological_safety"].item_keys
    for i in range(5):
        assert (await post_as(client, await session_cookie(db, f"m{i}@x.org"), pulse.url, answers(3 + i % 3))).status_code == 303
    skipped_all = {f"psychological_safety.{key}": "skip" for key in keys}
    assert (await post_as(client, await session_cookie(db, "m5@x.org"), pulse.url, skipped_all)).status_code == 303
    await pulse.tick(after_close(pulse))
    await sign_in(client, db, pulse.world.facilitator)
    body = (await client.get(f"/api/v1/communities/{pulse.world.community.id}/rounds/{pulse.round.id}/results")).json()
    instrument = body["instruments"][0]
    assert body["respondents"] == 6 and instrument["score"]["n"] == 5
    assert [item["n"] for item in instrument["items"]] == [5] * len(keys)
    assert instrument["favourable_n"] == 5 * len(keys)
    page = (await client.get(f"{pulse.url}/results")).text
    assert re.search(r'data-n="5">from 5 people<', page), "the scale score must say it rests on 5"
    assert "6 <span class=\"muted\">people</span>" in page
    assert len(re.findall(r'<td class="n">5</td>', page)) == len(keys)
    rows = (await client.get(f"/c/{pulse.world.community.id}/insights/rounds/{pulse.round.id}/results.csv")).text.splitlines()
    header = rows[0].split(",")
    score = next(r.split(",") for r in rows[1:] if ",score," in r)
    assert score[header.index("n")] == "5"
