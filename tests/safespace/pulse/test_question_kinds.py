"""0..10 (eNPS) and single-choice questions, over HTTP: the builder makes them, members answer
them, and their figures appear after close only where the k rules allow (issue 18 item 7)."""

from __future__ import annotations

import json
import re
from datetime import timedelta
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from safespace import clock, schedule
from safespace.privacy.crypto import Keyring
from safespace.pulse import services
from safespace.pulse.models import CustomInstrument, Round
from surveys.instrument import custom_instrument
from tests.helpers import make_community, post_form, sign_in
from tests.safespace.insights.conftest import (
    Closed,
    assert_teams_hidden,
    csv_rows,
    json_objects,
    read_every_page,
    route_values,
    team_rows,
)
from tests.safespace.insights.test_attacks import everything_a_facilitator_can_read
from tests.safespace.pulse.conftest import post_as, session_cookie

RC = "recommend.rc_recommend"
OPTIONS = ["Online", "In person", "Both"]


def enps(values: list[int]) -> tuple[float, float, float, float]:
    """Promoters, passives, detractors (shares) and the score, counted from the answers themselves."""
    n = len(values)
    promoters = sum(1 for v in values if v >= 9) / n
    passives = sum(1 for v in values if v in (7, 8)) / n
    detractors = sum(1 for v in values if v <= 6) / n
    return promoters, passives, detractors, (promoters - detractors) * 100


def choice_field(round_: Round) -> str:
    """The single choice's form field: its key is made when the instrument is saved."""
    return next(i["key"] for i in round_.instruments if i["key"] != "recommend") + ".q1"


# --- the builder ------------------------------------------------------------------------------------


async def test_the_builder_makes_each_kind_and_refuses_impossible_ones(client, db: AsyncSession) -> None:
    world = await make_community(db)
    await sign_in(client, db, world.facilitator)
    url = f"/c/{world.community.id}/instruments"
    form = (await client.get(f"{url}/new")).text
    for kind in ("agreement", "zero_to_ten", "choice"):
        assert f'name="kind" value="{kind}"' in form
    refusals = {
        "Give a single choice at least two options.": {"kind": "choice", "item1": "Where?", "option1": "Online"},
        "Only agree-or-disagree statements can be reversed": {"kind": "zero_to_ten", "item1": "Recommend us?", "reverse1": "1"},
        "Name both ends of the 0 to 10 scale, or neither.": {"kind": "zero_to_ten", "item1": "Recommend us?", "low_label": "Never"},
        "two options have the same text": {"kind": "choice", "item1": "Where?", "option1": "Online", "option2": "online"},
    }
    for message, fields in refusals.items():
        refused = await post_form(client, url, {"name": "Bad", "points": "5"} | fields)
        assert refused.status_code == 422 and message in refused.text, (message, refused.text[-2000:])
        assert 'value="Bad"' in refused.text  # what was typed is kept
    made = {
        "Recommend": {"kind": "zero_to_ten", "item1": "Would you recommend the meetups?"},
        "Place": {"kind": "choice", "item1": "Where should we meet?", "option1": "Online", "option3": "On site"},
        "Meetings": {"kind": "agreement", "points": "7", "item1": "Our meetings end with next steps."},
    }
    for name, fields in made.items():
        assert (await post_form(client, url, {"name": name} | fields)).status_code == 303
    rows = list(await db.scalars(select(CustomInstrument).where(CustomInstrument.community_id == world.community.id)))
    scales = {row.definition["name"]["en"]: row.definition["scale"] for row in rows}
    assert scales["Recommend"]["kind"] == "zero_to_ten" and [x["en"] for x in scales["Recommend"]["labels"]] == [
        "Not at all likely", "Extremely likely"]  # fmt: skip
    assert scales["Place"] == {"points": 2, "labels": [{"en": "Online", "es": "Online"}, {"en": "On site", "es": "On site"}], "kind": "choice"}
    assert scales["Meetings"]["points"] == 7 and "kind" not in scales["Meetings"]  # stored as before kinds existed
    survey_form = (await client.get(f"/c/{world.community.id}/surveys")).text
    assert "Recommend" in survey_form and "Place" in survey_form


# --- a full round ---------------------------------------------------------------------------------


async def test_a_round_shows_promoters_detractors_score_and_option_shares(client, db: AsyncSession, engine, settings) -> None:
    a = [f"a{i}@x.org" for i in range(5)]
    b = [f"b{i}@x.org" for i in range(5)]
    scores = {**dict(zip(a, [10, 9, 9, 8, 3])), **dict(zip(b, [0, 6, 7, 10, 9]))}
    picks = {**dict(zip(a, [1, 1, 2, 3, 1])), **dict(zip(b, [2, 2, 1, 3, 1]))}
    closed = await round_with_kinds(client, db, engine, settings, {"A": a, "B": b}, scores, picks)
    await sign_in(client, db, "fac@x.org")
    base = f"/c/{closed.world.community.id}"
    result = (await client.get(f"{base}/insights/rounds/{closed.round.id}/results.json")).json()
    rc, meet = result["instruments"]
    everyone = list(scores.values())
    promoters, passives, detractors, score = enps(everyone)
    item = rc["items"][0]
    assert (item["n"], item["promoters"], item["passives"], item["detractors"]) == (10, promoters, passives, detractors)
    assert abs(item["recommend_score"] - score) < 1e-9 and round(score, 9) == 20  # 5 promoters, 2 passives, 3 detractors
    assert item["distribution"] == [everyone.count(v) for v in range(11)]
    assert rc["kind"] == "zero_to_ten" and rc["score"] is None and rc["favourable"] is None and rc["reliability"] is None
    assert item["mean"] is None and item["favourable"] is None  # no mean or favourable for a 0..10 question
    chosen = list(picks.values())
    assert meet["kind"] == "choice" and meet["labels"] == OPTIONS
    assert meet["items"][0]["option_shares"] == [chosen.count(o) / 10 for o in (1, 2, 3)]
    assert meet["items"][0]["distribution"] == [chosen.count(o) for o in (1, 2, 3)]
    # The pages: facilitators' round page, the members' results page, the API and the CSV say the same.
    page = (await client.get(f"{base}/insights/rounds/{closed.round.id}")).text
    assert "Promoters" in page and "Favourable" not in page.split("recommend-note")[1].split("</table>")[0]
    assert re.search(r'data-share="promoters">50%', page) and re.search(r'data-share="score">20<', page)
    assert re.search(r'data-share="option1">50% <span class="muted">\(5\)', page)
    client.cookies.clear()
    await sign_in(client, db, a[0])
    mine = (await client.get(f"{base}/rounds/{closed.round.id}/results")).text
    assert re.search(r'data-share="detractors">30%', mine) and "In person" in mine
    summary = await client.get(f"{base}/summary")
    assert summary.status_code == 200 and "Recommend" in summary.text
    client.cookies.clear()
    await sign_in(client, db, "fac@x.org")
    api = (await client.get(f"/api/v1/communities/{closed.world.community.id}/rounds/{closed.round.id}/results")).json()
    assert api["instruments"][0]["items"][0]["promoters"] == promoters
    rows = csv_rows("x.csv", (await client.get(f"{base}/insights/rounds/{closed.round.id}/results.csv")).text)
    (rc_row,) = [r for r in rows if r["item"] == "rc_recommend"]
    assert (rc_row["kind"], rc_row["promoters"], rc_row["detractors"], rc_row["recommend_score"], rc_row["empty_because"]) == (
        "zero_to_ten", "0.5", "0.3", "20", "")  # fmt: skip
    (meet_row,) = [r for r in rows if r["item"] == "q1"]
    assert meet_row["option_shares"] == "Online=0.5000 | In person=0.3000 | Both=0.2000"
    # Teams of 5 and 5: both shown, each with its own score (A: 3 promoters, 1 detractor; B: 2 and 2).
    grids = (await client.get(f"{base}/insights/rounds/{closed.round.id}/teams.json")).json()
    (a_row,) = team_rows(json.dumps(grids[0]), "A")
    (b_row,) = team_rows(json.dumps(grids[0]), "B")
    assert grids[0]["kind"] == "zero_to_ten" and grids[0]["column_keys"] == ["rc_recommend"]
    assert a_row["values"] == [pytest.approx(enps([10, 9, 9, 8, 3])[3])] and b_row["values"] == [pytest.approx(enps([0, 6, 7, 10, 9])[3])]
    assert grids[1]["rows"] == []  # a single choice has no team grid
    # The trend follows the score by round; the choice has no trend.
    trend = (await client.get(f"/api/v1/communities/{closed.world.community.id}/insights/trend?survey={closed.survey_id}")).json()
    assert [i["key"] for i in trend["instruments"]] == ["recommend"]
    assert trend["instruments"][0]["rounds"][0]["recommend_scores"] == [score]
    trend_page = await client.get(f"{base}/insights?survey={closed.survey_id}")
    assert trend_page.status_code == 200 and "score by round" in trend_page.text


async def round_with_kinds(client, db, engine, settings, teams, scores, picks) -> Closed:
    """A survey of the built-in 0..10 question and a single choice (Online, In person, Both); each
    member in `scores` answers both over HTTP (out-of-range values are refused first), then it closes."""
    world = await make_community(db, teams=teams)
    choice = custom_instrument("meet", "Meeting place", 0, [("q1", "Where should we meet?", False)], None, "en", "choice", OPTIONS)
    row = await services.save_custom_instrument(db, world.community.id, choice)
    today = clock.now().astimezone(ZoneInfo("Europe/Madrid")).date()
    cadence = services.CadenceForm("weekly", today.weekday(), 1, 3, today.isoformat())
    survey = await services.create_survey(db, world.community.id, "Europe/Madrid", "Pulse", ["recommend", f"custom:{row.id}"], cadence)
    await db.commit()
    keyring = Keyring.load(settings.encryption_key_path)
    sessionmaker = async_sessionmaker(engine, expire_on_commit=False)
    assert (await schedule.tick(sessionmaker, keyring, None, moment=clock.now())).opened == 1
    round_ = await db.scalar(select(Round).where(Round.survey_id == survey.id))
    url = f"/c/{world.community.id}/rounds/{round_.id}"
    field = choice_field(round_)
    first = next(iter(scores))
    cookie = await session_cookie(db, first)
    for bad, message in ((RC, "choose 0 to 10"), (field, "not one of the 3 options")):
        refused = await post_as(client, cookie, url, {RC: "11" if bad == RC else "5", field: "4" if bad == field else "1"})
        assert refused.status_code == 422 and message in refused.text, refused.text[-1500:]
    for email in scores:
        values = {RC: scores[email], field: picks[email]}  # None: prefer not to answer
        form = {name: "skip" if value is None else str(value) for name, value in values.items()}
        response = await post_as(client, await session_cookie(db, email), url, form)
        assert response.status_code == 303, response.text
    assert (await schedule.tick(sessionmaker, keyring, None, moment=round_.closes_at + timedelta(seconds=1))).closed == 1
    await db.refresh(round_)
    return Closed(world, survey.id, round_, keyring, sessionmaker)


# --- below k: nothing of it anywhere ----------------------------------------------------------------


def assert_no_kind_figures(bodies: dict[str, str]) -> None:
    """No body shows a 0..10 or choice figure: no share or score cell with a number, no JSON item
    with promoters, a score or option shares, no CSV row with them."""
    for url, body in bodies.items():
        assert not re.search(r'data-share="(promoters|passives|detractors|score|option\d+)">[-\d]', body), url
        for item in json_objects(body) if not url.startswith("/schema") else []:  # the schema names fields, holds no figure
            assert item.get("promoters") is None and item.get("recommend_score") is None, (url, item)
            assert not item.get("option_shares"), (url, item)
            assert all(v is None for v in item.get("recommend_scores", [])), (url, item)
        for row in csv_rows(url, body):
            assert not (row.get("promoters") or row.get("option_shares") or row.get("recommend_scores")), (url, row)


async def test_a_question_fewer_than_k_answered_shows_nothing_anywhere(client, db: AsyncSession, engine, settings) -> None:
    """Six answer the round (k = 5), but two prefer not to answer each question: four people's
    0..10 answers and four people's choices are hidden on every page, export and API route."""
    members = [f"m{i}@x.org" for i in range(6)]
    scores = dict(zip(members, [9, 7, 2, 10, None, None]))
    picks = dict(zip(members, [None, 1, 2, 2, 3, None]))
    closed = await round_with_kinds(client, db, engine, settings, {"Team": members}, scores, picks)
    await sign_in(client, db, "fac@x.org")
    bodies = await everything_a_facilitator_can_read(client, closed)
    result = json.loads(bodies[f"/c/{closed.world.community.id}/insights/rounds/{closed.round.id}/results.json"])
    assert result["respondents"] == 6  # the round itself is shown: the attack is not defeated by emptiness
    (rc,), (meet,) = (i["items"] for i in result["instruments"])
    assert (rc["n"], rc["distribution"], meet["n"], meet["option_shares"]) == (None, [], None, [])
    page = bodies[f"/c/{closed.world.community.id}/insights/rounds/{closed.round.id}"]
    assert page.count("hidden: fewer than 5 answered") == 2
    assert_no_kind_figures(bodies)
    client.cookies.clear()
    await sign_in(client, db, members[0])
    member_bodies = await read_every_page(client, route_values(closed))
    assert_no_kind_figures({url: r.text for url, r in member_bodies.items()})


async def test_a_trend_of_zero_to_ten_and_choice_questions_does_not_define_favourable(client, db: AsyncSession, engine, settings) -> None:
    members = [f"m{i}@x.org" for i in range(6)]
    closed = await round_with_kinds(client, db, engine, settings, {"Team": members}, dict.fromkeys(members, 9), dict.fromkeys(members, 1))
    await sign_in(client, db, closed.world.facilitator)
    trend = (await client.get(f"/c/{closed.world.community.id}/insights/?survey={closed.survey_id}")).text
    assert "score by round" in trend  # the 0..10 question's trend is there
    assert "favourable-note" not in trend and "Favourable:" not in trend  # nothing on the page is favourable


async def test_the_members_summary_draws_the_zero_to_ten_score_and_defines_no_favourable(client, db: AsyncSession, engine, settings) -> None:
    """Our results (members): a 0..10 question's score by round, not the chart after it (the rate
    bars, which the summary leaves out for every kind), and no definition of favourable."""
    members = [f"m{i}@x.org" for i in range(6)]
    closed = await round_with_kinds(client, db, engine, settings, {"Team": members}, dict.fromkeys(members, 9), dict.fromkeys(members, 1))
    await sign_in(client, db, members[0])
    summary = (await client.get(f"/c/{closed.world.community.id}/summary")).text
    assert "Recommend: score by round" in summary
    assert "response rate by round" not in summary
    assert "favourable-note" not in summary


async def test_a_team_of_four_is_hidden_in_the_zero_to_ten_grid(client, db: AsyncSession, engine, settings) -> None:
    """Teams of 4 and 8: the small team is below k and the big one would give it away by
    subtraction (12 - 8), so neither team's score shows, though the community's does."""
    small = [f"small{i}@x.org" for i in range(4)]
    big = [f"big{i}@x.org" for i in range(8)]
    scores = dict.fromkeys(small, 0) | dict(zip(big, [9, 9, 9, 9, 9, 8, 8, 8]))
    picks = dict.fromkeys(small, 3) | dict.fromkeys(big, 1)
    closed = await round_with_kinds(client, db, engine, settings, {"Small": small, "Big": big}, scores, picks)
    await sign_in(client, db, "fac@x.org")
    bodies = await everything_a_facilitator_can_read(client, closed)
    result = json.loads(bodies[f"/c/{closed.world.community.id}/insights/rounds/{closed.round.id}/results.json"])
    assert result["instruments"][0]["items"][0]["recommend_score"] == pytest.approx(enps(list(scores.values()))[3])  # 8.33
    # Big's own score would be 62.5 (five promoters, three passives); Small's -100.
    assert_teams_hidden(bodies, ("Small", "Big"), ("62.5",), "no comment here")


async def test_a_team_where_fewer_than_k_answered_the_question_hides_its_sibling_too(client, db: AsyncSession, engine, settings) -> None:
    """Both teams answered the round (5 and 8, k = 5), but only three of the small team answered
    the 0..10 question: its score is below k, and the big team's (12.5) would give those three away
    by subtraction from the community's, so neither team's score shows anywhere (P1, P2)."""
    small = [f"small{i}@x.org" for i in range(5)]
    big = [f"big{i}@x.org" for i in range(8)]
    scores = dict(zip(small, [9, 7, 7, None, None])) | dict(zip(big, [10, 9, 9, 8, 8, 8, 3, 2]))
    picks = dict.fromkeys(small + big, 1)
    closed = await round_with_kinds(client, db, engine, settings, {"Small": small, "Big": big}, scores, picks)
    await sign_in(client, db, "fac@x.org")
    bodies = await everything_a_facilitator_can_read(client, closed)
    result = json.loads(bodies[f"/c/{closed.world.community.id}/insights/rounds/{closed.round.id}/results.json"])
    answered = [v for v in scores.values() if v is not None]
    assert result["instruments"][0]["items"][0]["recommend_score"] == pytest.approx(enps(answered)[3])  # the community's: shown
    assert_teams_hidden(bodies, ("Small", "Big"), ("12.5", "33.3"), "no comment here")


# --- an action on a 0..10 question follows its score -------------------------------------------------


async def test_an_action_on_the_recommend_question_shows_whether_its_score_moved(client, db: AsyncSession, engine, settings, monkeypatch) -> None:
    members = [f"m{i}@x.org" for i in range(6)]
    closed = await round_with_kinds(client, db, engine, settings, {"Team": members}, dict(zip(members, [2, 3, 4, 5, 6, 7])),
                                    dict.fromkeys(members, 1))  # fmt: skip
    community = closed.world.community
    await sign_in(client, db, closed.world.facilitator)
    page = (await client.get(f"/c/{community.id}/insights/rounds/{closed.round.id}")).text
    link = f"/c/{community.id}/insights/actions?round={closed.round.id}&amp;instrument=recommend&amp;item=rc_recommend"
    assert link in page  # "Plan an action" beside the question
    about = {"round": str(closed.round.id), "instrument": "recommend", "item": "rc_recommend"}
    made = await post_form(client, f"/c/{community.id}/insights/actions/", about | {"title": "Invite a guest", "owner": "", "due_on": ""})
    assert made.status_code == 303
    # A week later five answer 9 or 10: the score goes from -83 to 100, beyond its uncertainty.
    next_week = closed.round.opens_at + timedelta(days=7, hours=1)
    monkeypatch.setattr(clock, "now", lambda: next_week)
    assert (await schedule.tick(closed.sessionmaker, closed.keyring, None, moment=next_week)).opened == 1
    second = await db.scalar(select(Round).where(Round.survey_id == closed.survey_id, Round.number == 2))
    field = choice_field(second)
    for i, email in enumerate(members[:5]):
        form = {RC: str(9 + i % 2), field: "2"}
        assert (await post_as(client, await session_cookie(db, email), f"/c/{community.id}/rounds/{second.id}", form)).status_code == 303
    assert (await schedule.tick(closed.sessionmaker, closed.keyring, None, moment=second.closes_at + timedelta(seconds=1))).closed == 1
    client.cookies.clear()
    await sign_in(client, db, closed.world.facilitator)
    detail = (await client.get(made.headers["location"])).text
    assert "rose beyond its uncertainty" in detail
    # Read as a score, not a mean: whole points on -100..100, named so.
    assert "<td>100</td>" in detail and "+183" in detail and "its score (promoters" in detail and "100.00" not in detail
