"""Flags, hiding, edits, topics and counts: what facilitators and authors can do."""

from __future__ import annotations

import re

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from safespace.stories.models import Flag, Reply, Story
from tests.helpers import post_form, sign_in
from tests.safespace.stories.test_responses import _released_story
from tests.safespace.stories.test_stories import STORY, _release, _share, _world


async def test_reported_story_is_hidden_with_a_reason_its_author_sees(client, db: AsyncSession, engine, settings) -> None:
    world = await _world(db)
    story, codes = await _released_story(client, db, engine, settings, world)
    flag_url = f"/c/{world.community.id}/stories/{story.id}/flag"
    for email in ("m3@x.org", "m4@x.org", "m4@x.org"):  # m4 twice: still two reports
        client.cookies.clear()
        await sign_in(client, db, email)
        await client.get(f"/c/{world.community.id}/stories")
        assert (await post_form(client, flag_url, {})).status_code == 303
    assert await db.scalar(select(func.count()).select_from(Flag)) == 2
    client.cookies.clear()
    await sign_in(client, db, world.facilitator)
    review = f"/c/{world.community.id}/stories/review"
    page = (await client.get(review)).text
    assert "2 reports" in page
    await post_form(client, f"{review}/hide", {"story": str(story.id), "reason": "It describes a client in detail."})
    wall = (await client.get(f"/c/{world.community.id}/stories")).text
    title = open_title(story, settings)
    assert f"<h2>{title}</h2>" not in wall  # as a heading: a two-letter title can turn up in a script's hash
    client.cookies.clear()
    await sign_in(client, db, "m2@x.org")
    mine = "/stories/mine"  # the receipt route: the code alone, no session read
    await client.get(mine)
    pages = [(await post_form(client, mine, {"code": code})).text for code in codes]
    assert sum("It describes a client in detail." in p for p in pages) == 1


def open_title(story: Story, settings) -> str:
    from safespace.privacy.crypto import Keyring
    from safespace.stories.services import open_story

    return open_story(Keyring.load(settings.encryption_key_path), story).title


async def test_a_reported_reply_can_be_hidden(client, db: AsyncSession, engine, settings) -> None:
    world = await _world(db)
    story, _codes = await _released_story(client, db, engine, settings, world)
    for i in range(3):
        await post_form(client, f"/c/{world.community.id}/stories/{story.id}/reply", {"reply": f"reply {i} mean words"})
    await _release(engine, settings)
    reply_id = await db.scalar(select(Reply.id).where(Reply.status == "released").limit(1))
    await post_form(client, f"/c/{world.community.id}/stories/{story.id}/flag", {"reply": str(reply_id)})
    client.cookies.clear()
    await sign_in(client, db, world.facilitator)
    review = f"/c/{world.community.id}/stories/review"
    await client.get(review)
    await post_form(client, f"{review}/hide", {"story": str(story.id), "reply": str(reply_id)})
    wall = (await client.get(f"/c/{world.community.id}/stories")).text
    assert len(re.findall(r"reply \d mean words", wall)) == 2


async def test_author_edits_and_moderation_reviews_the_edit(client, db: AsyncSession, engine, settings) -> None:
    world = await _world(db)
    await sign_in(client, db, "m2@x.org")
    codes = [(await _share(client, world, STORY | {"title": f"E{i}"}))[1] for i in range(3)]
    await _release(engine, settings)
    mine = "/stories/mine"  # the receipt route: the code alone, no session read
    await client.get(mine)
    edited = await post_form(client, f"{mine}/edit", {"code": codes[0], "title": "E0 revised",
                                            "happened": "Clearer now.", "learned": "", "differently": ""})
    assert "E0 revised" in edited.text and "Your changes are saved." in edited.text
    assert "E0 revised" in (await client.get(f"/c/{world.community.id}/stories")).text
    world.community.moderate_stories = True
    db.add(world.community)
    await db.commit()
    await post_form(client, f"{mine}/edit", {"code": codes[1], "title": "E1 revised",
                                   "happened": "Again.", "learned": "", "differently": ""})
    assert "E1 revised" not in (await client.get(f"/c/{world.community.id}/stories")).text  # back in review
    assert await db.scalar(select(func.count()).select_from(Story).where(Story.status == "review")) == 1


async def test_facilitators_set_topics_and_see_counts_never_names(client, db: AsyncSession, engine, settings) -> None:
    world = await _world(db)
    story, _codes = await _released_story(client, db, engine, settings, world)
    await post_form(client, f"/c/{world.community.id}/stories/{story.id}/react", {"kind": "helps_me"})
    client.cookies.clear()
    await sign_in(client, db, world.facilitator)
    review = f"/c/{world.community.id}/stories/review"
    await client.get(review)
    await post_form(client, f"{review}/topics", {"tags": "Heat pumps\nFloods\nHeat pumps\n"})
    form = (await client.get(f"/c/{world.community.id}/stories/new")).text
    assert 'value="Heat pumps"' in form and 'value="Floods"' in form and "policy design" not in form
    page = (await client.get(review)).text
    assert re.search(r"<td>3</td><td>0</td><td>1</td>", page)
    for email in ("m2@x.org", "m3@x.org", "fac@x.org"):
        assert email not in page


async def test_the_check_answers_while_typing(client, db: AsyncSession) -> None:
    world = await _world(db)
    await sign_in(client, db, "m3@x.org")
    await client.get(f"/c/{world.community.id}/stories/new")
    response = await post_form(client, f"/c/{world.community.id}/stories/check", {"happened": "Tomás said so."})
    assert response.status_code == 201
    assert response.json() == {"findings": [{"label": "a member's name", "text": "Tomás"}]}


async def test_withdrawn_story_leaves_the_counts_and_html_in_replies_stays_text(client, db: AsyncSession, engine, settings) -> None:
    world = await _world(db)
    story, codes = await _released_story(client, db, engine, settings, world)
    for i in range(3):
        await post_form(client, f"/c/{world.community.id}/stories/{story.id}/reply",
                        {"reply": f'<script>alert({i})</script><b onmouseover="x()">bold</b>'})
    await _release(engine, settings)
    wall = (await client.get(f"/c/{world.community.id}/stories")).text
    assert "<script>alert(" not in wall and "&lt;script&gt;alert(0)&lt;/script&gt;" in wall
    mine = "/stories/mine"  # the receipt route: the code alone, no session read
    for code in codes:
        await post_form(client, f"{mine}/withdraw", {"code": code, "confirmed": "yes"})
    client.cookies.clear()
    await sign_in(client, db, world.facilitator)
    page = (await client.get(f"/c/{world.community.id}/stories/review")).text
    assert "No stories released yet." in page
    assert await db.scalar(select(func.count()).select_from(Reply)) == 0  # replies went with their story


async def test_facilitators_choose_the_weekly_release_time(client, db: AsyncSession, engine, settings) -> None:
    from sqlalchemy.ext.asyncio import async_sessionmaker

    from safespace import clock, schedule
    from safespace.privacy.crypto import Keyring

    world = await _world(db)
    await sign_in(client, db, world.facilitator)
    review = f"/c/{world.community.id}/stories/review"
    await client.get(review)
    await post_form(client, f"{review}/release-time", {"weekday": "0", "hour": "0"})  # Monday 00:00: passed
    assert (await post_form(client, f"{review}/release-time", {"weekday": "9", "hour": "0"})).status_code == 303
    await db.refresh(world.community)
    assert (world.community.story_release_weekday, world.community.story_release_hour) == (0, 0)
    await _share(client, world)
    # The installation's default says "late on Sunday"; the community's own time wins.
    report = await schedule.tick(async_sessionmaker(engine), Keyring.load(settings.encryption_key_path), None,
                                 moment=clock.now(), story_release=(6, 23))
    assert report.stories_released == 1


async def test_a_story_written_after_the_weekly_slot_waits_for_the_next(client, db: AsyncSession, engine, settings) -> None:
    """The slot passed with nothing waiting; a lone story written later must not go out at once."""
    from sqlalchemy.ext.asyncio import async_sessionmaker

    from safespace import clock, schedule
    from safespace.privacy.crypto import Keyring

    world = await _world(db)
    tick = lambda: schedule.tick(async_sessionmaker(engine), Keyring.load(settings.encryption_key_path), None,  # noqa: E731
                                 moment=clock.now(), story_release=(0, 0))
    assert (await tick()).stories_released == 0  # this week's slot is marked, nothing to send
    await sign_in(client, db, "m2@x.org")
    await _share(client, world)
    assert (await tick()).stories_released == 0
    assert await db.scalar(select(func.count()).select_from(Story).where(Story.status == "pending")) == 1


async def test_replying_and_reporting_write_nothing_tied_to_the_member(client, db: AsyncSession, engine, settings) -> None:
    from safespace.identity.models import WebSession

    world = await _world(db)
    story, _codes = await _released_story(client, db, engine, settings, world)
    await post_form(client, f"/c/{world.community.id}/stories/{story.id}/reply", {"reply": "Same here."})
    response = await post_form(client, f"/c/{world.community.id}/stories/{story.id}/flag", {})
    assert response.headers["location"].startswith(f"/c/{world.community.id}/stories?sent=report")
    assert await db.scalar(select(func.count()).select_from(WebSession).where(WebSession.flash.is_not(None))) == 0
    page = (await client.get(response.headers["location"])).text
    assert "nobody sees who reported it" in page


async def test_editing_a_hidden_story_sends_it_to_review_not_back_out(client, db: AsyncSession, engine, settings) -> None:
    world = await _world(db)
    story, codes = await _released_story(client, db, engine, settings, world)
    client.cookies.clear()
    await sign_in(client, db, world.facilitator)
    review = f"/c/{world.community.id}/stories/review"
    await client.get(review)
    await post_form(client, f"/c/{world.community.id}/stories/{story.id}/flag", {})
    await post_form(client, f"{review}/hide", {"story": str(story.id), "reason": "Too specific."})
    mine = "/stories/mine"  # the receipt route: the code alone, no session read
    for code in codes:
        await post_form(client, f"{mine}/edit", {"code": code, "title": "Rewritten", "happened": "Less specific.",
                                       "learned": "", "differently": ""})
    await db.refresh(story)
    assert story.status == "review" and story.decline_reason is None
    await post_form(client, f"{review}/approve", {"story": str(story.id)})
    await db.refresh(story)
    assert story.status == "released"  # back out under the same id and day, replies and reactions kept
    assert (await post_form(client, f"{review}/publish", {"story": str(story.id)})).status_code == 404


async def test_only_wrong_receipt_codes_count_towards_the_limit(client, db: AsyncSession) -> None:
    world = await _world(db)
    await sign_in(client, db, "m2@x.org")
    _status, code = await _share(client, world)
    mine = "/stories/mine"  # the receipt route: the code alone, no session read
    await client.get(mine)
    assert {(await post_form(client, mine, {"code": code})).status_code for _ in range(15)} == {200}


async def test_an_edit_gets_the_identifying_details_warning_too(client, db: AsyncSession) -> None:
    world = await _world(db)
    await sign_in(client, db, "m3@x.org")
    _status, code = await _share(client, world)
    mine = "/stories/mine"  # the receipt route: the code alone, no session read
    await client.get(mine)
    edit = {"code": code, "title": "T", "happened": "Ines was there.", "learned": "", "differently": ""}
    warned = await post_form(client, f"{mine}/edit", edit)
    assert "a member&#39;s name" in warned.text or "a member's name" in warned.text
    opened = await post_form(client, mine, {"code": code})
    assert "Ines was there." not in opened.text  # not saved yet
    saved = await post_form(client, f"{mine}/edit", edit | {"confirmed": "yes"})
    assert "Ines was there." in saved.text
