"""From a released result to an action, its log, members seeing it, and the next round saying
whether the statement moved."""

from __future__ import annotations

import csv
import io
import re
import uuid
from datetime import timedelta

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from safespace import clock, schedule
from safespace.chat import services as chat
from safespace.identity.models import Person
from safespace.pulse.models import Round
from tests.helpers import post_form, sign_in
from tests.safespace.chat.test_chat import _tick as chat_tick
from tests.safespace.chat.test_chat import receiver  # noqa: F401 - the fixture
from tests.safespace.insights.conftest import answered_round, form
from tests.safespace.pulse.conftest import PS, post_as, session_cookie

MEMBERS = [f"m{i}@x.org" for i in range(6)]
STATEMENT = next(item for item in PS.items if not item.reverse)  # a rise in its mean is a rise in safety


async def test_a_facilitator_plans_an_action_from_a_statement_and_keeps_its_log(client, db: AsyncSession, engine, settings) -> None:
    closed = await answered_round(client, db, engine, settings, {"Team": MEMBERS}, {e: form(2 + i % 2) for i, e in enumerate(MEMBERS)})
    community = closed.world.community
    await sign_in(client, db, closed.world.facilitator)
    round_page = (await client.get(f"/c/{community.id}/insights/rounds/{closed.round.id}")).text
    link = f"/c/{community.id}/insights/actions?round={closed.round.id}&amp;instrument=psychological_safety&amp;item={STATEMENT.key}"
    assert link in round_page
    form_page = await client.get(link.replace("&amp;", "&"))
    assert form_page.status_code == 200 and STATEMENT.text.get("en") in form_page.text
    base = f"/c/{community.id}/insights/actions"
    about = {"round": str(closed.round.id), "instrument": "psychological_safety", "item": STATEMENT.key}
    empty = await post_form(client, f"{base}/", about | {"title": "  ", "owner": "", "due_on": "2020-01-01"})
    assert empty.status_code == 422 and "Say what will be done." in empty.text and "Choose a due date from today on." in empty.text
    stranger = about | {"round": str(uuid.uuid4()), "title": "Something"}
    assert (await post_form(client, f"{base}/", stranger | {"owner": "", "due_on": ""})).status_code == 404
    due = (clock.now() + timedelta(days=30)).date().isoformat()
    made = await post_form(client, f"{base}/", about | {"title": "Retros open with what went wrong", "owner": "Ana", "due_on": due})
    assert made.status_code == 303
    detail_url = made.headers["location"]
    detail = (await client.get(detail_url)).text
    assert "Retros open with what went wrong" in detail and STATEMENT.text.get("en") in detail and "No round has closed since" in detail

    nothing = await post_form(client, detail_url, {"status": "planned", "text": ""})
    assert nothing.status_code == 422 and "Write what changed, or choose a new status." in nothing.text
    assert (await post_form(client, detail_url, {"status": "in_progress", "text": "First two retros done"})).status_code == 303
    detail = (await client.get(detail_url)).text
    assert "in progress: First two retros done" in detail

    # Filters, exports and the API say the same.
    assert "Retros open" in (await client.get(f"{base}?status=in_progress")).text
    assert "No action matches these filters." in (await client.get(f"{base}?status=done")).text
    rows = list(csv.DictReader(io.StringIO((await client.get(f"{base}/export.csv")).text)))
    assert [(r["title"], r["status"], r["owner"], r["statement_key"], r["round"]) for r in rows] == [
        ("Retros open with what went wrong", "in_progress", "Ana", STATEMENT.key, "1")
    ]
    (listed,) = (await client.get(f"/api/v1/communities/{community.id}/insights/actions")).json()
    assert listed["status"] == "in_progress" and [u["status"] for u in listed["updates"]] == ["planned", "in_progress"]
    assert (await client.get(f"/api/v1/communities/{community.id}/insights/actions?status=dropped")).json() == []

    # Members see it on "Our results", with its latest update; a dropped action leaves the page.
    client.cookies.clear()
    await sign_in(client, db, MEMBERS[0])
    ours = (await client.get(f"/c/{community.id}/summary")).text
    assert "You said, we did" in ours and "Retros open with what went wrong" in ours and "First two retros done" in ours
    assert "Plan an action" not in (await client.get(f"/c/{community.id}/rounds/{closed.round.id}/results")).text
    assert (await client.get(f"{base}/")).status_code == 403  # members do not plan actions
    client.cookies.clear()
    await sign_in(client, db, closed.world.facilitator)
    await client.get(detail_url)
    assert (await post_form(client, detail_url, {"status": "dropped", "text": "Replaced by the new retro format"})).status_code == 303
    client.cookies.clear()
    await sign_in(client, db, MEMBERS[0])
    assert "Retros open with what went wrong" not in (await client.get(f"/c/{community.id}/summary")).text


async def test_the_next_round_shows_whether_the_statement_moved(client, db: AsyncSession, engine, settings, monkeypatch) -> None:
    closed = await answered_round(client, db, engine, settings, {"Team": MEMBERS}, {e: form(2 + i % 2) for i, e in enumerate(MEMBERS)})
    community = closed.world.community
    await sign_in(client, db, closed.world.facilitator)
    base = f"/c/{community.id}/insights/actions"
    await client.get(f"{base}?round={closed.round.id}&instrument=psychological_safety&item={STATEMENT.key}")
    about = {"round": str(closed.round.id), "instrument": "psychological_safety", "item": STATEMENT.key}
    made = await post_form(client, f"{base}/", about | {"title": "Speak first", "owner": "", "due_on": ""})
    scale = await post_form(client, f"{base}/", about | {"item": "", "title": "The whole scale", "owner": "", "due_on": ""})
    assert made.status_code == scale.status_code == 303

    # A week later the next round opens; five of six answer, higher.
    next_week = closed.round.opens_at + timedelta(days=7, hours=1)
    monkeypatch.setattr(clock, "now", lambda: next_week)
    assert (await schedule.tick(closed.sessionmaker, closed.keyring, None, moment=next_week)).opened == 1
    second = await db.scalar(select(Round).where(Round.survey_id == closed.survey_id, Round.number == 2))
    for i, email in enumerate(MEMBERS[:5]):
        response = await post_as(client, await session_cookie(db, email), f"/c/{community.id}/rounds/{second.id}", form(6 + i % 2))
        assert response.status_code == 303
    assert (await schedule.tick(closed.sessionmaker, closed.keyring, None, moment=second.closes_at + timedelta(seconds=1))).closed == 1
    client.cookies.clear()
    await sign_in(client, db, closed.world.facilitator)  # a week on: the first session has lapsed
    detail = (await client.get(made.headers["location"])).text
    assert "rose beyond its uncertainty" in detail and "No round has closed since" not in detail
    assert "rose beyond its uncertainty" in (await client.get(scale.headers["location"])).text
    # The statement was answered by 5 >= k people: its mean is shown, as on the results page.
    results = (await client.get(f"/c/{community.id}/insights/rounds/{second.id}/results.json")).json()
    mean = next(i["mean"] for i in results["instruments"][0]["items"] if i["key"] == STATEMENT.key)
    assert f"{mean:.2f}" in detail


async def test_you_said_we_did_is_published_once_and_mailed_to_every_member(client, db: AsyncSession, engine, settings, inbox) -> None:
    closed = await answered_round(client, db, engine, settings, {"Team": MEMBERS}, {e: form(3 + i % 3) for i, e in enumerate(MEMBERS)})
    community = closed.world.community
    spanish = await db.scalar(select(Person).where(Person.email == MEMBERS[1]))
    spanish.language = "es"
    await db.commit()
    await sign_in(client, db, closed.world.facilitator)
    round_url = f"/c/{community.id}/insights/rounds/{closed.round.id}"
    await client.get(round_url)
    about = {"round": str(closed.round.id), "instrument": "psychological_safety", "item": STATEMENT.key}
    assert (await post_form(client, f"/c/{community.id}/insights/actions/", about | {"title": "Speak first", "owner": "Ana", "due_on": ""})).status_code == 303
    publish = f"/c/{community.id}/insights/actions/summaries/{closed.round.id}"
    inbox.messages.clear()
    empty = await post_form(client, publish, {"summary": "  "})
    assert empty.status_code == 303 and "Write a few lines" in (await client.get(round_url)).text and not inbox.messages
    text = "You told us raising problems feels risky.\n\nFacilitators will speak first about their own mistakes."
    assert (await post_form(client, publish, {"summary": text})).status_code == 303
    page = (await client.get(round_url)).text
    assert "Published. 7 members get it by mail." in page and "Facilitators will speak first" in page and 'name="summary"' not in page
    mails = {m["To"]: m for m in inbox.messages}
    assert set(mails) == {closed.world.facilitator, *MEMBERS}
    english = mails[MEMBERS[0]].get_body(("plain",)).get_content()
    assert "Facilitators will speak first" in english and "Speak first (planned, owner: Ana)" in english
    assert f"/c/{community.id}/rounds/{closed.round.id}/results" in english
    assert mails[MEMBERS[1]]["Subject"] == "Pulse: lo que dijisteis y lo que estamos haciendo"
    # Once: a second publication is refused and mails nobody.
    inbox.messages.clear()
    assert (await post_form(client, publish, {"summary": "Again"})).status_code == 303
    assert "summary is published already." in (await client.get(round_url)).text and not inbox.messages
    # Members read it above the results.
    client.cookies.clear()
    await sign_in(client, db, MEMBERS[2])
    results = (await client.get(f"/c/{community.id}/rounds/{closed.round.id}/results")).text
    assert "You said, we did" in results and "Facilitators will speak first" in results and "Speak first" in results
    assert (await post_form(client, publish, {"summary": "A member's words"})).status_code == 403


async def test_the_trend_marks_an_action_on_its_round_until_it_is_dropped(client, db: AsyncSession, engine, settings) -> None:
    closed = await answered_round(client, db, engine, settings, {"Team": MEMBERS}, {e: form(3 + i % 3) for i, e in enumerate(MEMBERS)})
    community = closed.world.community
    await sign_in(client, db, closed.world.facilitator)
    trend = f"/c/{community.id}/insights/?survey={closed.survey_id}"
    assert "Action: Speak first" not in (await client.get(trend)).text  # drawn and kept before the action
    about = {"round": str(closed.round.id), "instrument": "psychological_safety", "item": STATEMENT.key}
    made = await post_form(client, f"/c/{community.id}/insights/actions/", about | {"title": "Speak first", "owner": "", "due_on": ""})
    assert "Action: Speak first" in (await client.get(trend)).text
    rows = list(csv.DictReader(io.StringIO((await client.get(f"/c/{community.id}/insights/trend.csv?survey={closed.survey_id}")).text)))
    assert rows[0]["notes"] == "Action: Speak first"
    await client.get(made.headers["location"])
    assert (await post_form(client, made.headers["location"], {"status": "dropped", "text": ""})).status_code == 303
    assert "Action: Speak first" not in (await client.get(trend)).text


async def test_you_said_we_did_reaches_the_chat_with_the_actions_and_no_figure(client, db: AsyncSession, engine, settings, receiver) -> None:  # noqa: F811
    closed = await answered_round(client, db, engine, settings, {"Team": MEMBERS}, {e: form(3 + i % 3) for i, e in enumerate(MEMBERS)})
    community = closed.world.community
    await chat.set_channel(db, closed.keyring, community.id, receiver.url(), "en", clock.now())
    await db.commit()
    await sign_in(client, db, closed.world.facilitator)
    await client.get(f"/c/{community.id}/insights/rounds/{closed.round.id}")
    about = {"round": str(closed.round.id), "instrument": "psychological_safety", "item": STATEMENT.key}
    assert (await post_form(client, f"/c/{community.id}/insights/actions/", about | {"title": "Speak first", "owner": "", "due_on": ""})).status_code == 303
    text = "You told us raising problems feels risky. Facilitators will speak first."
    assert (await post_form(client, f"/c/{community.id}/insights/actions/summaries/{closed.round.id}", {"summary": text})).status_code == 303
    assert receiver.posts == []  # noted with the summary; the schedule sends it
    assert (await chat_tick(settings, engine, closed.keyring, clock.now())).chat_delivered == 1
    (post,) = receiver.posts
    assert post["title"] == "Pulse: what you said, and what we are doing"
    assert text in post["message"] and "- Speak first" in post["message"]
    assert post["message"].endswith(f"/c/{community.id}/rounds/{closed.round.id}/results")
    assert not re.findall(r"\d", re.sub(r"https?://\S+", "", post["message"]))  # no figure, no count
