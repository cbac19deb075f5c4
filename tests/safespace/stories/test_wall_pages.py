"""The wall shows stories a page at a time, newest first, and the pages keep the filters."""

from __future__ import annotations

import json
import os
import re
import uuid
from datetime import timedelta

from safespace import clock
from safespace.privacy.crypto import Keyring, associated_data
from safespace.stories import receipts
from safespace.stories.models import Story
from safespace.stories.services import WALL_PAGE
from tests.helpers import make_community, sign_in

TITLE = re.compile(r"Story number (\d+)\b")


async def test_the_wall_pages_newest_first_and_keeps_the_search(client, db, settings) -> None:
    world = await make_community(db, teams={"Energy": [f"m{i}@x.org" for i in range(6)]})
    keyring = Keyring.load(settings.encryption_key_path)
    today = clock.now().date()
    count = 2 * WALL_PAGE + 5  # three pages
    for number in range(count):  # number 0 is the newest
        story_id = uuid.uuid4()
        text = {"title": f"Story number {number}", "happened": "lost a grant" if number % 3 == 0 else "late report",
                "learned": "ask early", "differently": "plan"}  # fmt: skip
        db.add(Story(
            id=story_id, community_id=world.community.id, status="released", released_on=today - timedelta(days=number),
            position=0, tags=["funding"] if number % 2 == 0 else [], wants_advice=False,
            body=keyring.seal(json.dumps(text), associated_data("story", "body", story_id)),
            receipt_locator=receipts.new_code()[: receipts.GROUP_LENGTH], receipt_salt=os.urandom(16), receipt_hash=os.urandom(32),
        ))  # fmt: skip
    await db.commit()
    await sign_in(client, db, "m0@x.org")
    wall = f"/c/{world.community.id}/stories/"

    async def numbers(query: str) -> tuple[list[int], str]:
        page = (await client.get(wall + query)).text
        return [int(n) for n in TITLE.findall(page)], page

    seen = []
    for page_number, expected in ((1, WALL_PAGE), (2, WALL_PAGE), (3, 5)):
        shown, page = await numbers(f"?page={page_number}")
        assert len(shown) == expected
        seen += shown
        assert ('rel="next"' in page) == (page_number < 3) and ('rel="prev"' in page) == (page_number > 1)
    assert seen == list(range(count))  # every story once, newest first
    # A search pages over the matching stories only, and the links carry it.
    matching = [n for n in range(count) if n % 3 == 0 and n % 2 == 0]  # "grant", tagged funding
    shown, page = await numbers("?tag=funding&q=grant")
    assert shown == matching[:WALL_PAGE] and 'rel="next"' not in page
    few = await numbers("?q=grant&page=2")
    assert few[0] == [n for n in range(count) if n % 3 == 0][WALL_PAGE:]
    assert 'href="?q=grant&amp;page=1"' in few[1]
    assert (await client.get(wall + "?page=0")).status_code == 400
