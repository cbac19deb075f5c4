"""A meeting check-in kept in a survey's trend, over HTTP on SQLite and PostgreSQL: drawn on the
facilitator's trend chart at its date, marked apart from the rounds, in the chart's table, the
round list and trend.csv / trend.json; gone when discarded; never a figure below k."""

from __future__ import annotations

import csv
import io
import re
import uuid
from datetime import timedelta
from zoneinfo import ZoneInfo

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import async_sessionmaker

from safespace import clock, schedule
from safespace.checkin.models import CheckIn
from safespace.privacy.crypto import Keyring
from safespace.pulse import services as pulse
from safespace.pulse.models import Round
from tests.safespace.checkin.conftest import MEMBERS, Meeting
from tests.safespace.insights.conftest import form


async def _closed_round(meeting: Meeting, engine, settings) -> str:
    """A survey of psychological safety with one round every member answered (all at 6), closed."""
    today = clock.now().date()
    cadence = pulse.CadenceForm("weekly", today.weekday(), 1, 3, today.isoformat())
    survey = await pulse.create_survey(meeting.db, meeting.community_id, "Europe/Madrid", "Pulse", ["psychological_safety"], cadence)
    await meeting.db.commit()
    keyring = Keyring.load(settings.encryption_key_path)
    sessionmaker = async_sessionmaker(engine, expire_on_commit=False)
    assert (await schedule.tick(sessionmaker, keyring, None, moment=clock.now())).opened == 1
    round_ = await meeting.db.scalar(select(Round).where(Round.survey_id == survey.id))
    for email in MEMBERS:
        response = await meeting.post(email, f"/c/{meeting.community_id}/rounds/{round_.id}", form(6))
        assert response.status_code == 303, response.text
    assert (await schedule.tick(sessionmaker, keyring, None, moment=round_.closes_at + timedelta(seconds=1))).closed == 1
    return str(survey.id)


async def _revealed(meeting: Meeting, values: list[int]) -> None:
    """A check-in of two psychological-safety statements, answered and revealed."""
    await meeting.start()
    for email, value in zip(MEMBERS, values, strict=False):
        assert (await meeting.answer(email, value)).status_code == 303
    assert (await meeting.post(meeting.world.facilitator, f"{meeting.page}/reveal", {})).status_code == 303


async def _trend(meeting: Meeting, survey_id: str) -> str:
    client = await meeting.browser(meeting.world.facilitator)
    response = await client.get(f"/c/{meeting.community_id}/insights?survey={survey_id}")
    assert response.status_code == 200
    return response.text


async def _exports(meeting: Meeting, survey_id: str) -> tuple[list[dict[str, str]], dict]:
    client = await meeting.browser(meeting.world.facilitator)
    rows = (await client.get(f"/c/{meeting.community_id}/insights/trend.csv?survey={survey_id}")).text
    found = (await client.get(f"/c/{meeting.community_id}/insights/trend.json?survey={survey_id}")).json()
    # The API gives the same trend, its kept check-ins included (and nothing of one below k).
    api = (await client.get(f"/api/v1/communities/{meeting.community_id}/insights/trend?survey={survey_id}")).json()
    assert [i["checkins"] for i in api["instruments"]] == [i["checkins"] for i in found["instruments"]]
    return list(csv.DictReader(io.StringIO(rows))), found


def _meeting_rows(page: str) -> list[str]:
    """The rows of the charts' tables that are meeting check-ins."""
    return re.findall(r'<tr><th scope="row">(Meeting check-in, [^<]+)</th>(.*?)</tr>', page)


async def _keep(meeting: Meeting, survey_id: str) -> None:
    kept = await meeting.post(meeting.world.facilitator, f"{meeting.page}/outcome", {"outcome": "trend", "survey": survey_id})
    assert kept.status_code == 303


async def test_a_kept_check_in_is_drawn_on_the_trend_marked_as_such_and_leaves_it_when_discarded(meeting: Meeting, engine, settings) -> None:
    survey_id = await _closed_round(meeting, engine, settings)
    before = await _trend(meeting, survey_id)  # the charts are drawn and kept for this trend revision
    assert "Round 1" in before and not _meeting_rows(before) and "point meeting" not in before
    # ps_mistakes is reverse-keyed: 2 counts as 6 there, so each person's mean of the two is 4.
    await _revealed(meeting, [2, 2, 2, 2, 2])
    await _keep(meeting, survey_id)

    page = await _trend(meeting, survey_id)  # keeping bumped the revision: drawn again
    day = (await meeting.reload()).opened_at.astimezone(ZoneInfo("Europe/Madrid")).date()
    rows, found = await _exports(meeting, survey_id)
    [point] = found["instruments"][0]["checkins"]
    assert point["kind"] == "meeting_checkin" and point["respondents"] == 5 and point["score"] == 4.0
    assert point["day"] == day.isoformat() and point["checkin_id"] == str(meeting.checkin_id)
    # On the score and favourable charts: a diamond of its own, a legend entry, a row of the table.
    assert page.count('class="point meeting series-0"') == 2
    assert re.search(r'<g class="legend-item"[^>]*><path [^>]*/><text[^>]*>meeting check-in</text>', page)
    scored = [cells for _label, cells in _meeting_rows(page) if "<td>4.00</td>" in cells]
    assert len(scored) == 1 and "significant" not in scored[0]
    assert "marked apart from the rounds: Scale score: 4.00." in page  # the chart's description
    # Listed among the rounds, with a link to the check-in; the round keeps its own line.
    assert f"Meeting check-in, {day.isoformat()}</a>" in page and f"/checkins/{meeting.checkin_id}" in page
    assert "Round 1" in page
    # The exports say which row is a meeting check-in.
    kinds = [(r["kind"], r["round"]) for r in rows]
    assert ("meeting_checkin", "") in kinds and ("round", "1") in kinds
    [meeting_row] = [r for r in rows if r["kind"] == "meeting_checkin"]
    assert meeting_row["score"] == "4" and meeting_row["respondents"] == "5" and meeting_row["closed_on"] == day.isoformat()

    # Taken out of the trend (discarded), with the button on the check-in's page: the kept charts
    # are drawn again without it.
    shown = (await (await meeting.browser(meeting.world.facilitator)).get(meeting.page)).text
    assert 'name="outcome" value="discarded"' in shown and "Take it out of the trend" in shown
    out = await meeting.post(meeting.world.facilitator, f"{meeting.page}/outcome", {"outcome": "discarded"})
    assert out.status_code == 303
    page = await _trend(meeting, survey_id)
    assert not _meeting_rows(page) and "point meeting" not in page and "Meeting check-in," not in page
    rows, found = await _exports(meeting, survey_id)
    assert found["instruments"][0]["checkins"] == [] and {r["kind"] for r in rows} == {"round"}


async def test_a_discarded_check_in_is_never_on_the_trend(meeting: Meeting, engine, settings) -> None:
    survey_id = await _closed_round(meeting, engine, settings)
    await _trend(meeting, survey_id)
    await _revealed(meeting, [2, 2, 2, 2, 2])
    assert (await meeting.post(meeting.world.facilitator, f"{meeting.page}/outcome", {"outcome": "discarded"})).status_code == 303
    page = await _trend(meeting, survey_id)
    assert not _meeting_rows(page) and "point meeting" not in page and "Meeting check-in," not in page
    rows, found = await _exports(meeting, survey_id)
    assert found["instruments"][0]["checkins"] == [] and {r["kind"] for r in rows} == {"round"}


async def test_a_free_question_joins_no_instrument_chart(meeting: Meeting, engine, settings) -> None:
    survey_id = await _closed_round(meeting, engine, settings)
    await meeting.start(statements=[], question="I can say what I think in this meeting.")
    for email in MEMBERS[:5]:
        await meeting.answer(email, 3, **{"a.q1": "3"})
    assert (await meeting.post(meeting.world.facilitator, f"{meeting.page}/reveal", {})).status_code == 303
    await _keep(meeting, survey_id)
    page = await _trend(meeting, survey_id)
    assert "point meeting" not in page and not _meeting_rows(page)


async def test_below_k_a_check_in_shows_no_figure_on_the_trend(meeting: Meeting, engine, settings) -> None:
    survey_id = await _closed_round(meeting, engine, settings)
    # Four answered: closed without a reveal, it cannot join a trend.
    await meeting.start()
    for email in MEMBERS[:4]:
        await meeting.answer(email, 1)
    assert (await meeting.post(meeting.world.facilitator, f"{meeting.page}/close", {})).status_code == 303
    refused = await meeting.post(meeting.world.facilitator, f"{meeting.page}/outcome", {"outcome": "trend", "survey": survey_id})
    assert refused.status_code == 409
    page = await _trend(meeting, survey_id)
    assert "point meeting" not in page and not _meeting_rows(page)

    # A kept check-in whose figures would be hidden (here: its k raised past its five answers in the
    # database) is a labelled gap at its date: no score, no favourable, no count, in page or export.
    await _revealed(meeting, [2, 2, 2, 2, 2])
    await _keep(meeting, survey_id)
    await meeting.db.execute(update(CheckIn).where(CheckIn.id == meeting.checkin_id).values(min_group_size=6))
    await pulse.bump_trend(meeting.db, uuid.UUID(survey_id))
    await meeting.db.commit()
    page = await _trend(meeting, survey_id)
    rows = _meeting_rows(page)
    assert len(rows) == 2 and all("fewer than 5 answered" in cells and "4.00" not in cells and "80%" not in cells for _label, cells in rows)
    assert "point meeting" not in page and '<g class="gap"' in page
    csv_rows, found = await _exports(meeting, survey_id)
    [point] = found["instruments"][0]["checkins"]
    assert point["respondents"] is None and point["score"] is None and point["favourable"] is None
    assert point["empty_because"]
    [meeting_row] = [r for r in csv_rows if r["kind"] == "meeting_checkin"]
    assert meeting_row["score"] == meeting_row["respondents"] == meeting_row["favourable"] == "" and meeting_row["empty_because"]
