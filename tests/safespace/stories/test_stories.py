"""Failure stories: shared without a trace of the author, released in shuffled batches."""

from __future__ import annotations

import re
from datetime import datetime, timedelta

from sqlalchemy import func, select, text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from safespace import clock, schedule
from safespace.identity.models import Person
from safespace.privacy.crypto import Keyring
from safespace.stories.identifying import find_identifying, roster_names
from safespace.stories.models import Story
from tests.helpers import make_community, post_form, sign_in

STORY = {"title": "The consultation nobody came to", "happened": "We announced it too late.",
         "learned": "Start outreach a month before.", "differently": "Ask the groups when they can meet."}


async def _world(db: AsyncSession):
    world = await make_community(db, teams={"Energy": [f"m{i}@x.org" for i in range(6)]})
    for person in await db.scalars(select(Person).where(Person.email.in_(["m0@x.org", "m1@x.org"]))):
        person.display_name = {"m0@x.org": "Ines Duarte", "m1@x.org": "Tomás Rivera"}[person.email]
    await db.commit()
    return world


async def _share(client, world, story=STORY, **extra) -> tuple[int, str | None]:
    base = f"/c/{world.community.id}/stories"
    await client.get(f"{base}/new")
    response = await post_form(client, base, story | extra)
    found = re.search(r'id="receipt-code"[^>]*>([A-Z0-9-]{19})<', response.text)
    return response.status_code, found.group(1) if found else None


def _not_yet() -> tuple[int, int]:
    """A weekly release slot later this week in the community's time zone (Madrid), so not due
    yet: the next hour ("late today" at 23:00 was due from 23:00 on). Sunday 23:xx has none."""
    local = clock.now().astimezone(__import__("zoneinfo").ZoneInfo("Europe/Madrid"))
    return (local.weekday(), local.hour + 1) if local.hour < 23 else (local.weekday() + 1, 0)


async def _release(engine, settings, moment: datetime | None = None) -> schedule.TickReport:
    return await schedule.tick(
        async_sessionmaker(engine, expire_on_commit=False), Keyring.load(settings.encryption_key_path), None,
        moment=moment or clock.now(), story_release=_not_yet(),
    )


async def test_a_story_alone_waits_three_go_out_together(client, db: AsyncSession, engine, settings) -> None:
    world = await _world(db)
    await sign_in(client, db, "m2@x.org")
    status, code = await _share(client, world)
    assert status == 200 and code
    await _release(engine, settings)
    wall = await client.get(f"/c/{world.community.id}/stories")
    assert "The consultation nobody came to" not in wall.text
    for title in ("Second story", "Third story"):
        assert (await _share(client, world, STORY | {"title": title}))[0] == 200
    report = await _release(engine, settings)
    assert report.stories_released == 3
    wall = await client.get(f"/c/{world.community.id}/stories")
    for title in ("The consultation nobody came to", "Second story", "Third story"):
        assert title in wall.text
    assert f"Released on {clock.now().astimezone(__import__('zoneinfo').ZoneInfo('Europe/Madrid')).date().isoformat()}" in wall.text


async def test_a_story_sent_signed_in_gets_a_receipt_that_says_so(client, db: AsyncSession) -> None:
    """The signed-in form (no private mode: JavaScript off, or Share pressed before the page's
    script ran) still stores the story without a name; its receipt says the server knew who sent
    it, as private mode's receipt says it did not."""
    world = await _world(db)
    await sign_in(client, db, "m2@x.org")
    await client.get(f"/c/{world.community.id}/stories/new")
    sent = await post_form(client, f"/c/{world.community.id}/stories", STORY)
    assert sent.status_code == 200 and 'id="receipt-code"' in sent.text
    assert "Sent signed in" in sent.text and "the server knew who was sending" in sent.text
    assert "Sent in private mode" not in sent.text


async def test_the_weekly_release_sends_a_lone_story(client, db: AsyncSession, engine, settings) -> None:
    world = await _world(db)
    await sign_in(client, db, "m2@x.org")
    await _share(client, world)
    moment = clock.now()
    report = await schedule.tick(async_sessionmaker(engine), Keyring.load(settings.encryption_key_path), None,
                                 moment=moment, story_release=(0, 0))  # Monday 00:00 has passed this week
    assert report.stories_released == 1
    assert "The consultation nobody came to" in (await client.get(f"/c/{world.community.id}/stories")).text


async def test_receipt_opens_the_story_and_withdraw_removes_it_everywhere(client, db: AsyncSession, engine, settings) -> None:
    world = await _world(db)
    await sign_in(client, db, "m2@x.org")
    codes = [(await _share(client, world, STORY | {"title": f"Story {i}"}))[1] for i in range(3)]
    await _release(engine, settings)
    mine = "/stories/mine"  # the receipt route: the code alone, no session read
    await client.get(mine)
    opened = await post_form(client, mine, {"code": codes[0].lower().replace("-", " ")})
    assert opened.status_code == 200 and "Story 0" in opened.text and "Released on" in opened.text
    # Withdrawing deletes for good: the first press asks once more and deletes nothing.
    asked = await post_form(client, f"{mine}/withdraw", {"code": codes[0]})
    assert asked.status_code == 200 and "This cannot be undone" in asked.text and "Keep my story" in asked.text
    assert await db.scalar(select(func.count()).select_from(Story)) == 3
    withdrawn = await post_form(client, f"{mine}/withdraw", {"code": codes[0], "confirmed": "yes"})
    assert "withdrawn and deleted" in withdrawn.text
    wall = await client.get(f"/c/{world.community.id}/stories", params={"q": "Story"})
    assert "Story 0" not in wall.text and "Story 1" in wall.text
    assert await db.scalar(select(func.count()).select_from(Story)) == 2
    assert (await post_form(client, mine, {"code": codes[0]})).status_code == 404


async def test_wrong_receipt_codes_are_rate_limited_and_no_code_is_stored(client, db: AsyncSession, still_clock) -> None:
    world = await _world(db)
    await sign_in(client, db, "m2@x.org")
    _status, code = await _share(client, world)
    mine = "/stories/mine"  # the receipt route: the code alone, no session read
    await client.get(mine)
    locator = code[:4]
    other = next(c for c in "23456789ABCDEFGHJKMNPQRSTVWXYZ" if c != locator[0])
    # Someone behind the same address (an office NAT) guesses codes that name no story: they are
    # stopped after 10, and the author, from that same address, still gets in with their code.
    nowhere = f"{other}222-3333-4444-5555"
    statuses = [(await post_form(client, mine, {"code": nowhere})).status_code for _ in range(11)]
    assert statuses == [404] * 10 + [429]
    assert (await post_form(client, mine, {"code": code})).status_code == 200
    # Guessing at this story (its locator is the code's first group) stops after 10 wrong tries,
    # for everyone: the guesser cannot go on from another address.
    wrong_rest = f"{locator}-{'2222' if code[5:9] != '2222' else '3333'}-4444-5555"
    statuses = [(await post_form(client, mine, {"code": wrong_rest})).status_code for _ in range(11)]
    assert statuses == [404] * 10 + [429]
    assert (await post_form(client, mine, {"code": code})).status_code == 429  # this story waits 15 minutes
    raw = code.replace("-", "")
    async with db.bind.connect() as connection:
        dump = repr((await connection.execute(text("SELECT * FROM story"))).all())
    assert raw not in dump and raw[4:] not in dump and code not in dump


async def test_identity_warning_catches_names_emails_and_phones(client, db: AsyncSession) -> None:
    world = await _world(db)
    await sign_in(client, db, "m2@x.org")
    status, code = await _share(client, world, STORY | {
        "happened": "Ines told me at the meeting; write to tomas@x.org or call +34 612 345 678.",
    })
    assert status == 200 and code is None  # not stored yet: the writer decides
    page = (await client.get(f"/c/{world.community.id}/stories/new")).text
    assert "Ines" not in page
    assert await db.scalar(select(func.count()).select_from(Story)) == 0
    warned = await post_form(client, f"/c/{world.community.id}/stories", STORY | {
        "happened": "Ines told me at the meeting; write to tomas@x.org or call +34 612 345 678."})
    for expected in ("a member's name", "Ines", "tomas@x.org", "+34 612 345 678"):
        assert expected in warned.text
    confirmed = await post_form(client, f"/c/{world.community.id}/stories", STORY | {
        "happened": "Ines told me at the meeting.", "confirmed": "yes"})
    assert "receipt-code" in confirmed.text


def test_an_ordinary_word_that_is_nobodys_name_is_not_flagged() -> None:
    names = roster_names(["Ines Duarte", "Mark Energy"], [])
    # "market" is not "Mark", "energy" alone is not "Mark Energy", and Grace is nobody here.
    assert find_identifying("The energy market and the budget of Grace", names) == []
    assert [f.text for f in find_identifying("Then MARK said no.", names)] == ["MARK"]
    assert find_identifying("We had a grace period on the energy budget.", roster_names(["Ines Duarte"], [])) == []


async def test_the_fourth_story_in_a_week_is_refused(client, db: AsyncSession, still_clock) -> None:
    world = await _world(db)
    await sign_in(client, db, "m2@x.org")
    statuses = [(await _share(client, world, STORY | {"title": f"Story {i}"}))[0] for i in range(4)]
    assert statuses == [200, 200, 200, 429]
    refused = await post_form(client, f"/c/{world.community.id}/stories", STORY)
    assert "shared 3 stories this week" in refused.text
    assert await db.scalar(select(func.count()).select_from(Story)) == 3


async def test_html_in_a_story_is_shown_as_text(client, db: AsyncSession, engine, settings) -> None:
    world = await _world(db)
    await sign_in(client, db, "m2@x.org")
    payload = '<script>alert("x")</script><img src=x onerror=alert(1)>{{ 7*7 }}'
    for i in range(3):
        await _share(client, world, STORY | {"title": f"T{i}", "happened": payload})
    await _release(engine, settings)
    wall = (await client.get(f"/c/{world.community.id}/stories")).text
    assert "<script>alert" not in wall and "&lt;script&gt;alert(&#34;x&#34;)&lt;/script&gt;" in wall
    assert "{{ 7*7 }}" in wall and ">49<" not in wall and "\n49" not in wall


async def test_dump_after_release_has_no_author_and_batches_are_shuffled(client, db: AsyncSession, engine, settings) -> None:
    world = await _world(db)
    orders = []
    for batch in range(4):
        for writer in range(3):
            client.cookies.clear()
            await sign_in(client, db, f"m{(batch * 3 + writer) % 6}@x.org")  # two stories each: under the limit
            await _share(client, world, STORY | {"title": f"b{batch}-w{writer}"})
        await _release(engine, settings, clock.now() + timedelta(seconds=batch))
    people = (await db.execute(select(Person.id, Person.email))).all()
    async with engine.connect() as connection:
        rows = (await connection.execute(text("SELECT * FROM story"))).all()
        columns = list((await connection.execute(text("SELECT * FROM story"))).keys())
    assert len(rows) == 12
    assert not any(c for c in columns if "person" in c or "member" in c or c.endswith("_at"))
    dump = repr(rows)
    for person_id, email in people:
        assert str(person_id) not in dump and person_id.hex not in dump and email not in dump
    wall = (await client.get(f"/c/{world.community.id}/stories")).text
    titles = re.findall(r"b(\d)-w(\d)", wall)
    for batch in range(4):
        orders.append([w for b, w in titles if b == str(batch)])
    assert all(sorted(order) == ["0", "1", "2"] for order in orders)
    assert any(order != ["0", "1", "2"] for order in orders), "every batch came out in the order it was written"


async def test_key_rotation_reseals_every_story(client, db: AsyncSession, engine, settings) -> None:
    import os
    import subprocess
    import sys

    world = await _world(db)
    await sign_in(client, db, "m2@x.org")
    codes = [(await _share(client, world, STORY | {"title": f"Rotated {i}"}))[1] for i in range(3)]
    await _release(engine, settings)
    released = await db.scalar(select(Story).where(Story.status == "released").limit(1))
    for i in range(3):
        await post_form(client, f"/c/{world.community.id}/stories/{released.id}/reply", {"reply": f"kept reply {i}"})
    await _release(engine, settings)
    env = {**os.environ, "SAFESPACE_DATA_DIR": settings.data_dir, "SAFESPACE_DATABASE_URL": settings.database_url}
    first = Keyring.load(settings.encryption_key_path).current_id
    result = subprocess.run([sys.executable, "-m", "safespace", "keys", "rotate"], env=env, capture_output=True, text=True)
    assert result.returncode == 0 and "re-encrypted 6" in result.stdout, result.stderr  # 3 stories, 3 replies
    keyring = Keyring.load(settings.encryption_key_path)
    assert list(keyring.keys) == [first + 1]
    mine = "/stories/mine"  # the receipt route: the code alone, no session read
    for i, code in enumerate(codes):
        opened = await post_form(client, mine, {"code": code})
        assert f"Rotated {i}" in opened.text
    wall = (await client.get(f"/c/{world.community.id}/stories")).text
    assert all(f"kept reply {i}" in wall for i in range(3))


async def test_the_receipt_alone_opens_edits_and_withdraws_with_no_session_read(client, db: AsyncSession) -> None:
    """Opening one's story required a session, which paired it with the author at that moment. The
    receipt route reads none: a bare client does it all, and a session cookie sent along (a
    browser without JavaScript) is not even looked at."""
    import httpx

    from tests.conftest import BASE_URL

    world = await _world(db)
    await sign_in(client, db, "m2@x.org")
    _status, code = await _share(client, world)
    page = (await client.get(f"/c/{world.community.id}/stories/mine")).text
    assert '<form method="post" action="/stories/mine" data-anonymous' in page and 'src="/static/mine.js"' in page
    assert f'action="/c/{world.community.id}/stories/mine"' not in page
    transport = httpx.ASGITransport(app=client.app, client=("198.51.100.9", 40000))
    async with httpx.AsyncClient(transport=transport, base_url=BASE_URL) as bare:
        opened = await bare.post("/stories/mine", data={"code": code, "lang": "es"})
        assert opened.status_code == 200 and STORY["title"] in opened.text and 'lang="es"' in opened.text
        assert "set-cookie" not in opened.headers
        # A session cookie goes along unread: the page does not know who is signed in.
        member_session = client.cookies.get("safespace_session")
        with_cookie = await bare.post("/stories/mine", data={"code": code}, headers={"cookie": f"safespace_session={member_session}"})
        assert with_cookie.status_code == 200 and "m2@x.org" not in with_cookie.text and "Sign out" not in with_cookie.text
        edit = {"code": code, "title": "Renamed", "happened": "Ines Duarte was there.", "learned": "", "differently": ""}
        warned = await bare.post("/stories/mine/edit", data=edit)
        assert "a member&#39;s name" in warned.text and "<code>Ines Duarte</code>" not in warned.text  # the name is not repeated
        saved = await bare.post("/stories/mine/edit", data=edit | {"happened": "Someone was there.", "confirmed": "yes"})
        assert saved.status_code == 200 and "Renamed" in saved.text
        withdrawn = await bare.post("/stories/mine/withdraw", data={"code": code, "confirmed": "yes"})
        assert "withdrawn and deleted" in withdrawn.text
    assert await db.scalar(select(func.count()).select_from(Story)) == 0


async def test_a_story_no_key_opens_waits_and_the_others_go_out(client, db: AsyncSession, engine, settings, tmp_path) -> None:
    """A story sealed with a key the key file lacks (shared while a wrong key file was in place)
    once stopped every release, in every community, for good. Now it waits alone."""
    from safespace.stories import services as stories
    from safespace.stories.models import Story

    world = await _world(db)
    other = await make_community(db, name="Other circle", facilitator="fo@x.org", teams={"T": ["o1@x.org"]})
    stranger = Keyring.load(tmp_path / "a-lost-key-file")
    await stories.store_story(db, stranger, world.community.id, stories.StoryText("Sealed elsewhere", "x", "", ""), [], False, False)
    for title in ("Second story", "Third story"):
        await stories.store_story(db, Keyring.load(settings.encryption_key_path), world.community.id,
                                  stories.StoryText(title, "y", "", ""), [], False, False)  # fmt: skip
    await stories.store_story(db, Keyring.load(settings.encryption_key_path), other.community.id,
                              stories.StoryText("Elsewhere, fine", "z", "", ""), [], False, False)  # fmt: skip
    await db.commit()
    report = await schedule.tick(async_sessionmaker(engine), Keyring.load(settings.encryption_key_path), None,
                                 moment=clock.now(), story_release=(0, 0))  # fmt: skip
    assert report.stories_released == 3
    statuses = dict((await db.execute(select(Story.community_id, func.count()).where(Story.status == "pending").group_by(Story.community_id))).all())
    assert statuses == {world.community.id: 1}  # only the story no key opens still waits
    await sign_in(client, db, "m2@x.org")
    wall = (await client.get(f"/c/{world.community.id}/stories")).text
    assert "Second story" in wall and "Third story" in wall and "Sealed elsewhere" not in wall


async def test_sealing_the_receipt_runs_off_the_event_loop(client, db: AsyncSession, monkeypatch) -> None:
    """scrypt (about 30 ms and 16 MiB) must not hold every other request of the process: the
    receipt is sealed in a worker thread, as its check already was (issue 16 item 2)."""
    import threading

    from safespace.stories import receipts

    sealed_on: list[int] = []
    real_seal = receipts.seal

    def seal(code: str):
        sealed_on.append(threading.get_ident())
        return real_seal(code)

    monkeypatch.setattr(receipts, "seal", seal)
    world = await _world(db)
    await sign_in(client, db, "m2@x.org")
    status, code = await _share(client, world)
    assert status == 200 and code is not None
    assert sealed_on and threading.get_ident() not in sealed_on, "the receipt was sealed on the event loop's thread"
