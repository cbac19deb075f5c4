""""Favourable" is defined wherever it is shown, and agreement to any degree is shown beside it
(issue 17 item 4): on a 7-point scale the top two points alone read ten of twelve agreeing as
17% favourable and 83% neutral."""

from __future__ import annotations

import csv
import io
import re

import pytest
from sqlalchemy.ext.asyncio import AsyncSession

from tests.helpers import sign_in
from tests.safespace.insights.conftest import Closed, answered_round, read_every_page, route_values
from tests.safespace.pulse.conftest import PS

MEMBERS = [f"m{i}@x.org" for i in range(12)]
RISK = "I can try something new here, even if it might not work."  # statement 4
MISTAKES = "If I make a mistake here, it tends to be held against me."  # statement 1, reversed
ISSUES = "In this group we can bring up problems and difficult topics."  # statement 2, 4 answers: hidden
RISK_ANSWERS = [3, 4, 5, 5, 5, 5, 5, 5, 5, 5, 6, 6]  # 10 of 12 at 5-7, 2 at 6-7; mean 59/12 = 4.92
MISTAKE_ANSWERS = [1, 1, 1, 2, 2, 2, 2, 3, 3, 4, 5, 5]  # as given; keyed (8 - raw): 7 7 7 6 6 6 6 5 5 4 3 3
DEFINITION = "Favourable: the share of answers in the top two points of the scale"


def _form(i: int) -> dict[str, str]:
    values = {key: "4" for key in PS.item_keys} | {"ps_risk": str(RISK_ANSWERS[i]), "ps_mistakes": str(MISTAKE_ANSWERS[i])}
    values["ps_raise_issues"] = "7" if i < 4 else ""  # four answers, k = 5: the statement is hidden
    return {f"psychological_safety.{key}": value for key, value in values.items()}


async def _round(client, db: AsyncSession, engine, settings) -> Closed:
    return await answered_round(client, db, engine, settings, {"Team": MEMBERS}, {e: _form(i) for i, e in enumerate(MEMBERS)})


def _row(html: str, statement: str) -> dict[str, str]:
    """The disagree / neutral / agree / favourable cells of a statement's row in the results table."""
    (row,) = [r for r in re.findall(r"<tr>.*?</tr>", html, re.S) if statement in r and "data-share" in r]
    return dict(re.findall(r'data-share="(\w+)">([^<]*)</td>', row))


def _pct(x: float | None) -> int | None:
    return None if x is None else round(x * 100)


async def test_ten_of_twelve_agreeing_shows_83_agree_beside_17_favourable(client, db: AsyncSession, engine, settings) -> None:
    closed = await _round(client, db, engine, settings)
    community = closed.world.community.id
    await sign_in(client, db, "m0@x.org")
    member_page = (await client.get(f"/c/{community}/rounds/{closed.round.id}/results")).text
    api = (await client.get(f"/api/v1/communities/{community}/rounds/{closed.round.id}/results")).json()
    client.cookies.clear()
    await sign_in(client, db, "fac@x.org")
    round_page = (await client.get(f"{closed.base}/rounds/{closed.round.id}")).text
    report = (await client.get(f"{closed.base}/rounds/{closed.round.id}/report")).text
    exported = (await client.get(f"{closed.base}/rounds/{closed.round.id}/results.json")).json()
    rows = {r["item"]: r for r in csv.DictReader(io.StringIO((await client.get(f"{closed.base}/rounds/{closed.round.id}/results.csv")).text))}

    for page in (member_page, round_page, report):
        assert "4.92" in page
        assert _row(page, RISK) == {"disagree": "8%", "neutral": "8%", "agree": "83%", "favourable": "17%"}
        # Reversed: disagreeing with "mistakes are held against me" is agreeing in the favourable direction.
        assert _row(page, MISTAKES) == {"disagree": "17%", "neutral": "8%", "agree": "75%", "favourable": "58%"}
        # Hidden with the rest of its row: none of the four shares (four people chose 7: 100% each).
        assert _row(page, ISSUES) == {"disagree": "—", "neutral": "—", "agree": "—", "favourable": "—"}
        assert 'id="about-numbers"' in page and "About these numbers" in page
    # The chart beside the table reads the same: 83% agree, not 83% neutral.
    assert f"4. {RISK}: Agree 83%" in round_page and f"4. {RISK}: Neutral 83%" not in round_page

    for result in (api, exported):
        (instrument,) = result["instruments"]
        items = {item["key"]: item for item in instrument["items"]}
        risk = items["ps_risk"]
        assert (risk["n"], [_pct(risk[s]) for s in ("disagree", "neutral", "agree", "favourable")]) == (12, [8, 8, 83, 17])
        assert risk["agree"] == pytest.approx(10 / 12) and risk["favourable"] == pytest.approx(2 / 12)
        mistakes = items["ps_mistakes"]
        assert mistakes["reverse"] and mistakes["agree"] == pytest.approx(9 / 12) and mistakes["favourable"] == pytest.approx(7 / 12)
        hidden = items["ps_raise_issues"]
        assert [hidden[s] for s in ("disagree", "neutral", "agree", "favourable", "n")] == [None] * 5 and hidden["distribution"] == []
        # The scale's shares pool the six statements shown (72 answers), never the hidden one.
        assert instrument["favourable_n"] == 72
        assert instrument["agree"] == pytest.approx(19 / 72) and instrument["favourable"] == pytest.approx(9 / 72)
        assert instrument["disagree"] == pytest.approx(3 / 72) and instrument["neutral"] == pytest.approx(50 / 72)

    assert {k: rows["ps_risk"][k] for k in ("n", "disagree", "neutral", "agree", "favourable")} == {
        "n": "12", "disagree": "0.0833", "neutral": "0.0833", "agree": "0.8333", "favourable": "0.1667"}  # fmt: skip
    assert rows["ps_mistakes"]["reverse"] == "yes" and rows["ps_mistakes"]["agree"] == "0.75"
    hidden_row = rows["ps_raise_issues"]
    assert [hidden_row[k] for k in ("disagree", "neutral", "agree", "favourable")] == [""] * 4
    assert hidden_row["empty_because"] == "fewer_than_k"
    assert rows["score"]["agree"] == "0.2639" and rows["score"]["favourable"] == "0.125"


async def test_every_page_that_shows_favourable_defines_it(client, db: AsyncSession, engine, settings) -> None:
    """Every page of the app, as the facilitator and as a member, found by walking the router."""
    closed = await _round(client, db, engine, settings)
    shown = []
    for person in ("fac@x.org", "m0@x.org"):
        client.cookies.clear()
        await sign_in(client, db, person)
        for url, response in (await read_every_page(client, route_values(closed))).items():
            if response.headers.get("content-type", "").startswith("text/html") and "favourable" in response.text.lower():
                shown.append(url)
                assert DEFINITION in response.text, f"{url} shows favourable without saying what it means"
                assert "disagree or strongly disagree counts as favourable" in response.text, url  # reversed, plainly
    assert any(url.endswith("/results") for url in shown) and any("/summary" in url for url in shown)
    assert any(url.endswith(f"/insights/rounds/{closed.round.id}") for url in shown)


async def test_the_definition_is_in_spanish_too(client, db: AsyncSession, engine, settings) -> None:
    closed = await _round(client, db, engine, settings)
    await sign_in(client, db, "m0@x.org")
    page = (await client.get(f"/c/{closed.world.community.id}/rounds/{closed.round.id}/results", headers={"accept-language": "es"})).text
    assert "Favorable: la proporción de respuestas en los dos puntos más altos de la escala" in page
    assert "Sobre estas cifras" in page and ">De acuerdo</th>" in page
    assert _row(page, "Aquí puedo probar algo nuevo, aunque quizá no funcione.")["agree"] == "83%"
