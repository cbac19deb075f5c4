"""Reactions, replies and moderation: counts and text without a trace of who."""

from __future__ import annotations

import re

from sqlalchemy import func, select, text
from sqlalchemy.ext.asyncio import AsyncSession

from safespace.identity.models import Person
from safespace.stories.models import Reaction, Reply, Story
from tests.helpers import post_form, sign_in
from tests.safespace.stories.test_stories import STORY, _release, _share, _world


async def _released_story(client, db, engine, settings, world):
    await sign_in(client, db, "m2@x.org")
    codes = [(await _share(client, world, STORY | {"title": f"S{i}"}))[1] for i in range(3)]
    await _release(engine, settings)
    story = await db.scalar(select(Story).where(Story.status == "released").order_by(Story.position))
    return story, codes


async def test_one_reaction_of_each_kind_per_member_shown_as_counts(client, db: AsyncSession, engine, settings) -> None:
    world = await _world(db)
    story, _codes = await _released_story(client, db, engine, settings, world)
    url = f"/c/{world.community.id}/stories/{story.id}/react"
    for kind in ("been_there", "been_there", "helps_me"):  # the second "been there" takes it back
        assert (await post_form(client, url, {"kind": kind})).status_code == 303
    for email in ("m3@x.org", "m4@x.org"):
        client.cookies.clear()
        await sign_in(client, db, email)
        await post_form(client, url, {"kind": "thank_you"})
    counts = dict((await db.execute(select(Reaction.kind, func.count()).group_by(Reaction.kind))).all())
    assert counts == {"helps_me": 1, "thank_you": 2}
    assert (await post_form(client, url, {"kind": "love"})).status_code == 404
    # A dump shows markers, not people.
    people = (await db.execute(select(Person.id, Person.email))).all()
    async with engine.connect() as connection:
        dump = repr((await connection.execute(text("SELECT * FROM reaction"))).all())
    for person_id, email in people:
        assert str(person_id) not in dump and person_id.hex not in dump and email not in dump


def _pressed(wall: str, story_id) -> dict[str, str]:
    """Each reaction button of one story on the wall: kind -> its aria-pressed."""
    article = wall.split(f'id="s-{story_id}"', 1)[1].split("</article>", 1)[0]
    buttons = re.findall(r'<button type="submit" name="kind" value="(\w+)"[^>]*?aria-pressed="(\w+)"', article)
    return dict(buttons)


async def test_reaction_buttons_say_whether_they_are_pressed(client, db: AsyncSession, engine, settings) -> None:
    """Issue 17 item 6: a toggle button tells assistive technology its state (aria-pressed)."""
    world = await _world(db)
    story, _codes = await _released_story(client, db, engine, settings, world)
    wall_url = f"/c/{world.community.id}/stories"
    assert _pressed((await client.get(wall_url)).text, story.id) == dict.fromkeys(("been_there", "helps_me", "thank_you"), "false")
    await post_form(client, f"{wall_url}/{story.id}/react", {"kind": "helps_me"})
    wall = (await client.get(wall_url)).text
    assert _pressed(wall, story.id) == {"been_there": "false", "helps_me": "true", "thank_you": "false"}
    others = [s for s in await db.scalars(select(Story).where(Story.status == "released")) if s.id != story.id]
    assert all("true" not in _pressed(wall, other.id).values() for other in others)
    # Pressed is this member's own state: someone else sees the count, not the press.
    client.cookies.clear()
    await sign_in(client, db, "m3@x.org")
    assert _pressed((await client.get(wall_url)).text, story.id)["helps_me"] == "false"
    await post_form(client, f"{wall_url}/{story.id}/react", {"kind": "helps_me"})
    await post_form(client, f"{wall_url}/{story.id}/react", {"kind": "helps_me"})  # taken back
    assert _pressed((await client.get(wall_url)).text, story.id)["helps_me"] == "false"


async def test_a_lone_reply_waits_three_go_out_together(client, db: AsyncSession, engine, settings) -> None:
    world = await _world(db)
    story, codes = await _released_story(client, db, engine, settings, world)
    url = f"/c/{world.community.id}/stories/{story.id}/reply"
    await post_form(client, url, {"reply": "Same here: we now phone the associations first."})
    await _release(engine, settings)
    wall = (await client.get(f"/c/{world.community.id}/stories")).text
    assert "we now phone the associations" not in wall
    for i in range(2):
        await post_form(client, url, {"reply": f"Another reply {i}"})
    await _release(engine, settings)
    wall = (await client.get(f"/c/{world.community.id}/stories")).text
    assert "we now phone the associations" in wall and "Another reply 1" in wall
    assert await db.scalar(select(func.count()).select_from(Reply).where(Reply.status == "released")) == 3
    # The author reads the replies with the receipt code.
    mine = "/stories/mine"  # the receipt route: the code alone, no session read
    for code in codes:
        page = (await post_form(client, mine, {"code": code})).text
        if "Another reply 0" in page:
            break
    else:
        raise AssertionError("no receipt showed the replies")


async def test_moderation_holds_stories_and_tells_the_author_why(client, db: AsyncSession, engine, settings) -> None:
    world = await _world(db)
    await sign_in(client, db, world.facilitator)
    review = f"/c/{world.community.id}/stories/review"
    await client.get(review)
    await post_form(client, f"{review}/moderation/on", {})
    client.cookies.clear()
    await sign_in(client, db, "m2@x.org")
    codes = [(await _share(client, world, STORY | {"title": f"M{i}"}))[1] for i in range(3)]
    await _release(engine, settings)
    assert "M0" not in (await client.get(f"/c/{world.community.id}/stories")).text  # held for review
    assert (await client.get(review)).status_code == 403  # members cannot review
    client.cookies.clear()
    await sign_in(client, db, world.facilitator)
    queue = (await client.get(review)).text
    ids = re.findall(r'name="story" value="([0-9a-f-]+)"', queue)
    assert len(ids) == 3
    # Each story's form sends "Approve" to its action and "Decline" to its button's formaction.
    assert queue.count(f'action="{review}/approve"') == 3 and queue.count(f'formaction="{review}/decline"') == 3
    for story_id in ids[:2]:
        await post_form(client, f"{review}/approve", {"story": story_id})
    await post_form(client, f"{review}/decline", {"story": ids[2], "reason": "It names a partner organisation."})
    await _release(engine, settings)  # two approved: below three, they wait for the weekly release
    client.cookies.clear()
    await sign_in(client, db, "m2@x.org")
    mine = "/stories/mine"  # the receipt route: the code alone, no session read
    await client.get(mine)
    reasons = [(await post_form(client, mine, {"code": code})).text for code in codes]
    assert sum("It names a partner organisation." in page for page in reasons) == 1
    assert await db.scalar(select(func.count()).select_from(Story).where(Story.status == "pending")) == 2


def test_no_story_table_holds_a_member_or_a_time_finer_than_a_day() -> None:
    from datetime import date, datetime

    from safespace.db.models import metadata

    for name in ("story", "reply", "reaction", "flag"):
        table = metadata.tables[name]
        for column in table.columns:
            assert "person" not in column.name and "member" not in column.name, f"{name}.{column.name}"
            assert column.type.python_type is not datetime, f"{name}.{column.name} is a time"
            if column.type.python_type is date:
                assert column.name == "released_on"
        assert {fk.column.table.name for fk in table.foreign_keys} <= {"community", "story", "reply"}
