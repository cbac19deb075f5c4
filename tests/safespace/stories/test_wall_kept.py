"""An unfiltered page of the wall is kept rendered (stories/wall_page.py), with slots for what is the
viewer's own. Each thing the page is drawn from is changed after it was kept and the wall is read
again over HTTP; and no member's own state (pressed buttons, CSRF field, round tokens) reaches
another member through the kept page."""

from __future__ import annotations

import re
import uuid
from zoneinfo import ZoneInfo

from sqlalchemy import delete, event, func, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from safespace import clock
from safespace.identity.models import Community
from safespace.pulse import services as pulse
from safespace.pulse.models import Round
from safespace.stories import wall_page
from safespace.stories.models import Reply, Story
from safespace.web.guards import READS_STATE_KEY
from tests.helpers import post_form, sign_in
from tests.safespace.insights.conftest import form
from tests.safespace.pulse.conftest import post_as, session_cookie
from tests.safespace.stories.test_moderation import open_title
from tests.safespace.stories.test_responses import _pressed, _released_story
from tests.safespace.stories.test_stories import STORY, _release, _share, _world

CSRF_FIELD = re.compile(r'name="_csrf_token" value="([^"]*)"')


async def _as(client, db, email: str) -> None:
    client.cookies.clear()
    await sign_in(client, db, email)


def _count(wall: str, story_id, kind: str) -> int:
    article = wall.split(f'id="s-{story_id}"', 1)[1].split("</article>", 1)[0]
    return int(re.search(rf'value="{kind}"[^>]*>[^<]*<span class="count">(\d+)</span>', article).group(1))


async def test_a_kept_wall_shows_each_member_their_own_presses_and_csrf_field(client, db: AsyncSession, engine, settings) -> None:
    world = await _world(db)
    story, _codes = await _released_story(client, db, engine, settings, world)
    wall = f"/c/{world.community.id}/stories"
    await _as(client, db, "m3@x.org")
    await client.get(wall)
    assert (await post_form(client, f"{wall}/{story.id}/react", {"kind": "helps_me"})).status_code == 303
    mine = (await client.get(wall)).text
    m3_token = client.cookies["safespace_csrf"]
    assert _pressed(mine, story.id)["helps_me"] == "true" and _count(mine, story.id, "helps_me") == 1
    assert set(CSRF_FIELD.findall(mine)) == {m3_token} and "\x00" not in mine
    await _as(client, db, "m4@x.org")  # the same page, kept: the same stories and counts
    theirs = (await client.get(wall)).text
    assert _pressed(theirs, story.id) == dict.fromkeys(("been_there", "helps_me", "thank_you"), "false")
    assert _count(theirs, story.id, "helps_me") == 1
    assert set(CSRF_FIELD.findall(theirs)) == {client.cookies["safespace_csrf"]} and m3_token not in theirs
    assert (await post_form(client, f"{wall}/{story.id}/reply", {"reply": "Same here."})).status_code == 303  # their field works
    await _as(client, db, "m3@x.org")
    assert _pressed((await client.get(wall)).text, story.id)["helps_me"] == "true"


async def test_a_kept_wall_follows_replies_reactions_edits_topics_and_hiding(client, db: AsyncSession, engine, settings) -> None:
    world = await _world(db)
    story, codes = await _released_story(client, db, engine, settings, world)
    wall = f"/c/{world.community.id}/stories"
    await client.get(wall)  # kept
    for n in range(3):  # three replies go out together at the next release
        await post_form(client, f"{wall}/{story.id}/reply", {"reply": f"Reply number {n}"})
    await _release(engine, settings)
    assert "Reply number 2" in (await client.get(wall)).text
    await _as(client, db, "m4@x.org")
    await client.get(wall)
    await post_form(client, f"{wall}/{story.id}/react", {"kind": "been_there"})
    assert _count((await client.get(wall)).text, story.id, "been_there") == 1
    # The author edits a story with the receipt code: the wall shows the new text.
    await client.get("/stories/mine")
    edited = await post_form(client, "/stories/mine/edit", {"code": codes[0], "title": "Revised title",
                                                           "happened": "Clearer now.", "learned": "", "differently": ""})  # fmt: skip
    assert edited.status_code == 200
    shown = (await client.get(wall)).text
    assert "Revised title" in shown and "Review and moderation" not in shown
    # The facilitator sees the moderation link (the role is in the key), sets topics, hides a story.
    await _as(client, db, world.facilitator)
    shown = (await client.get(wall)).text
    assert "Review and moderation" in shown
    review = f"{wall}/review"
    await client.get(review)
    await post_form(client, f"{review}/topics", {"tags": "Heat pumps\nFloods\n"})
    shown = (await client.get(wall)).text
    assert '<option value="Heat pumps"' in shown and "policy design" not in shown
    await db.refresh(story)  # one of the three was edited above: this one may be it
    title = open_title(story, settings)
    assert title in shown
    await post_form(client, f"{review}/hide", {"story": str(story.id), "reason": "Too detailed."})
    shown = (await client.get(wall)).text
    assert f"<h2>{title}</h2>" not in shown and "Reply number 2" not in shown
    spanish = (await client.get(wall, headers={"accept-language": "es"})).text
    assert "Historias" in spanish and "Stories ·" not in spanish


async def test_round_tokens_on_a_kept_wall_are_each_members_own(client, db: AsyncSession, engine, settings) -> None:
    """The wall takes an answer token for each open round the member has none for: per member."""
    world = await _world(db)
    await _released_story(client, db, engine, settings, world)
    today = clock.now().astimezone(ZoneInfo("Europe/Madrid")).date()
    cadence = pulse.CadenceForm("weekly", today.weekday(), 1, 3, today.isoformat())
    survey = await pulse.create_survey(db, world.community.id, "Europe/Madrid", "Pulse", ["psychological_safety"], cadence)
    await db.commit()
    await _release(engine, settings)  # the tick opens the round too
    round_ = await db.scalar(select(Round).where(Round.survey_id == survey.id, Round.closed.is_(False)))
    token_div = f'data-token-round="{round_.id}"'
    wall = f"/c/{world.community.id}/stories"
    await _as(client, db, "m3@x.org")
    assert token_div in (await client.get(wall)).text
    answer = await post_as(client, await session_cookie(db, "m4@x.org"), f"/c/{world.community.id}/rounds/{round_.id}", form(4))
    assert answer.status_code == 303
    await _as(client, db, "m4@x.org")
    assert token_div not in (await client.get(wall)).text
    await _as(client, db, "m3@x.org")
    assert token_div in (await client.get(wall)).text


async def test_the_reply_forms_share_their_private_mode_settings_once_and_each_posts_without_script(
    client, db: AsyncSession, engine, settings
) -> None:
    """The wall gives what every reply form shares in private mode (token and redeem addresses, the
    outbox's words) once, on the list that static/story-token.js reads; each form keeps its story,
    its action and the member's CSRF field, so a reply goes without script too."""
    world = await _world(db)
    await _released_story(client, db, engine, settings, world)
    wall = f"/c/{world.community.id}/stories"
    await _as(client, db, "m3@x.org")
    page = (await client.get(wall)).text
    forms = re.findall(r'<form method="post" action="([^"]+)/reply" class="reply-form" data-token-kind="reply" data-story="([^"]+)">\s*'
                       r'<input type="hidden" name="_csrf_token" value="([^"]+)"', page)  # fmt: skip
    assert len(forms) >= 2 and {token for _a, _s, token in forms} == {client.cookies["safespace_csrf"]}
    assert all(action.endswith(story_id) for action, story_id, _t in forms)
    for shared in ("data-token-slot=", "data-token-base=", "data-redeem-url=", "data-published-url=", "data-waiting=", "data-thanks="):
        assert page.count(shared) == 1, shared
    assert re.search(r"<div data-token-shared [^>]*data-redeem-url=\"/api/v1/replies\"", page)
    action, story_id, _token = forms[-1]
    sent = await post_form(client, f"{action}/reply", {"reply": "Sent with no script."})
    assert sent.status_code == 303 and "sent=reply" in sent.headers["location"]
    assert await db.scalar(select(func.count()).select_from(Reply).where(Reply.story_id == uuid.UUID(story_id))) == 1


async def _wall_revision(engine, community_id: uuid.UUID) -> int:
    async with engine.connect() as connection:
        return await connection.scalar(select(Community.wall_revision).where(Community.id == community_id))


async def test_a_kept_wall_is_shown_without_reading_its_stories_until_something_on_it_changes(
    client, db: AsyncSession, engine, settings
) -> None:
    world = await _world(db)
    story, _codes = await _released_story(client, db, engine, settings, world)
    wall = f"/c/{world.community.id}/stories"
    reads = client.app.state[READS_STATE_KEY]
    statements: list[object] = []

    def record(_conn, _cursor, _statement, _parameters, context, _many) -> None:
        statements.append(context.compiled.statement if context.compiled is not None else None)

    watched = [reads.engine.sync_engine, *([reads._inline] if reads._inline is not None else [])]
    for target in watched:
        event.listen(target, "before_cursor_execute", record)
    try:
        async def visit() -> tuple[str, int]:
            statements.clear()
            shown = (await client.get(wall)).text
            return shown, sum(statement is wall_page._PAGE for statement in statements)

        assert (await visit())[1] == 1  # the first visit reads the page, and keeps it
        assert (await visit())[1] == 0  # kept: its stories, replies and counts are not read again
        await _as(client, db, "m4@x.org")  # another member: the same kept page, their own presses
        await client.get(wall)
        await post_form(client, f"{wall}/{story.id}/react", {"kind": "thank_you"})
        shown, reads_of_the_page = await visit()
        assert reads_of_the_page == 1 and _count(shown, story.id, "thank_you") == 1
        assert _pressed(shown, story.id)["thank_you"] == "true"
        assert (await visit())[1] == 0
    finally:
        for target in watched:
            event.remove(target, "before_cursor_execute", record)


async def test_the_wall_revision_moves_with_what_the_wall_shows_and_only_with_it(client, db: AsyncSession, engine, settings) -> None:
    """The database's triggers (migration 0022), whatever writes: released stories and replies and
    reactions move it; pending ones, which the wall does not show, leave it (and their writes) alone."""
    world = await _world(db)
    community_id = world.community.id
    await sign_in(client, db, "m2@x.org")
    wall = f"/c/{community_id}/stories"
    for i in range(3):
        await _share(client, world, STORY | {"title": f"S{i}"})
    assert await _wall_revision(engine, community_id) == 0  # three pending stories: not on the wall
    await _release(engine, settings)
    released = await _wall_revision(engine, community_id)
    assert released == 3  # each released story, once
    story = await db.scalar(select(Story).where(Story.status == "released").order_by(Story.position))
    await client.get(wall)
    for n in range(3):  # replies go out three at a time
        await post_form(client, f"{wall}/{story.id}/reply", {"reply": f"Pending for now ({n})."})
    assert await _wall_revision(engine, community_id) == released  # pending replies
    await _release(engine, settings)
    assert await _wall_revision(engine, community_id) == released + 3  # now released, each
    changes = [
        update(Reply).where(Reply.story_id == story.id).values(status="hidden"),
        update(Story).where(Story.id == story.id).values(tags=["Floods"]),
        update(Story).where(Story.id == story.id).values(status="hidden"),
        update(Story).where(Story.id == story.id).values(status="released"),
        delete(Reply).where(Reply.story_id == story.id),  # hidden: not on the wall
        delete(Story).where(Story.id == story.id),
    ]
    expected = released + 3
    for change, moves in zip(changes, (3, 1, 1, 1, 0, 1), strict=True):  # once per row
        async with engine.begin() as connection:
            await connection.execute(change)
        expected += moves
        assert await _wall_revision(engine, community_id) == expected, change
    other = await db.scalar(select(Story).where(Story.status == "released"))
    await post_form(client, f"{wall}/{other.id}/react", {"kind": "helps_me"})
    await post_form(client, f"{wall}/{other.id}/react", {"kind": "helps_me"})  # taken back
    assert await _wall_revision(engine, community_id) == expected + 2
    # A community that goes takes its stories, replies and reactions with it: the triggers let it.
    async with engine.begin() as connection:
        await connection.execute(delete(Community).where(Community.id == community_id))
    assert await _wall_revision(engine, community_id) is None
