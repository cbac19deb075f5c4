"""Stories and replies through blind-signature tokens: the quota at issue, nothing about who at redeem."""

from __future__ import annotations

import httpx
from sqlalchemy import func, select, text
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession

from safespace.identity.models import Person
from safespace.privacy import blind
from safespace.privacy.token_keys import b64url, from_b64url
from safespace.stories.models import Reply, Story, StorySpentToken
from tests.helpers import csrf, post_form, sign_in
from tests.safespace.pulse.test_tokens import anonymous, jwk_key
from tests.safespace.stories.test_responses import _released_story
from tests.safespace.stories.test_stories import STORY, _world


async def story_token(client: httpx.AsyncClient, community_id, kind: str = "story") -> tuple[int, dict]:
    """The share page's script: this week's key, blind, have it signed (signed in), finalize."""
    base = f"/api/v1/communities/{community_id}/story-tokens"
    key = (await client.get(f"{base}/key", params={"kind": kind})).json()
    public = jwk_key(key["jwk"])
    msg = blind.prepare(b"story token")
    blinded, inv = blind.blind(public, msg)
    signed = await client.post(base, json={"key_id": key["key_id"], "blinded_msg": b64url(blinded)}, headers={"x-csrftoken": csrf(client)})
    if signed.status_code != 200:
        return signed.status_code, signed.json()
    sig = blind.finalize(public, msg, from_b64url(signed.json()["blind_sig"], "sig"), inv)
    return 200, {"key_id": key["key_id"], "msg": b64url(msg), "sig": b64url(sig)}


async def test_a_story_with_a_token_warns_then_stores_and_works_once(client, db: AsyncSession, engine: AsyncEngine) -> None:
    world = await _world(db)
    await sign_in(client, db, "m2@x.org")
    status, token = await story_token(client, world.community.id)
    assert status == 200
    naming = STORY | {"happened": "Ines Duarte told me it was too late."}
    async with anonymous(client) as bare:
        warned = await bare.post("/api/v1/stories", json=token | naming)
        assert warned.status_code == 200 and warned.json()["findings"] == [{"label": "a member's name", "text": None}]
        assert await db.scalar(select(func.count()).select_from(Story)) == 0
        stored = await bare.post("/api/v1/stories", json=token | naming | {"confirmed": True})
        assert stored.status_code == 201 and len(stored.json()["receipt"]) == 19
        again = await bare.post("/api/v1/stories", json=token | STORY)
        assert again.status_code == 409
        # A forged token learns nothing, not even whether the text names someone.
        forged = await bare.post("/api/v1/stories", json=token | naming | {"sig": token["msg"]})
        assert forged.status_code == 400 and "findings" not in forged.json()
    assert await db.scalar(select(func.count()).select_from(Story)) == 1
    # The receipt works like a signed-in share's.
    await client.get(f"/c/{world.community.id}/stories/mine")
    mine = await post_form(client, "/stories/mine", {"code": stored.json()["receipt"]})
    assert mine.status_code == 200 and STORY["title"] in mine.text
    # A session cookie with the story is refused.
    status, other = await story_token(client, world.community.id)
    refused = await client.post("/api/v1/stories", json=other | STORY)
    assert refused.status_code == 400 and "without cookies" in refused.json()["detail"]


async def test_the_weekly_quota_is_counted_when_tokens_are_taken(client, db: AsyncSession, engine: AsyncEngine, settings, still_clock) -> None:
    world = await _world(db)
    await sign_in(client, db, "m2@x.org")
    statuses = [(await story_token(client, world.community.id))[0] for _ in range(settings.stories_per_week + 1)]
    assert statuses == [200] * settings.stories_per_week + [429]


async def test_a_reply_with_a_token_names_no_one(client, db: AsyncSession, engine: AsyncEngine, settings) -> None:
    world = await _world(db)
    story, _codes = await _released_story(client, db, engine, settings, world)
    status, token = await story_token(client, world.community.id, "reply")
    assert status == 200
    async with anonymous(client) as bare:
        stored = await bare.post("/api/v1/replies", json=token | {"story_id": str(story.id), "reply": "We had this too."})
        assert stored.status_code == 201
        wrong_kind = await bare.post("/api/v1/stories", json=token | STORY)
        assert wrong_kind.status_code == 404
    assert await db.scalar(select(func.count()).select_from(Reply)) == 1
    assert await db.scalar(select(func.count()).select_from(StorySpentToken)) == 1
    people = (await db.execute(select(Person.id, Person.email))).all()
    async with engine.connect() as connection:
        for table in ("reply", "story_spent_token", "story_key"):
            dump = repr((await connection.execute(text(f"SELECT * FROM {table}"))).all())
            for person_id, email in people:
                assert str(person_id) not in dump and person_id.hex not in dump and email not in dump


async def test_the_anonymous_check_is_no_roster_oracle(client, db: AsyncSession, engine: AsyncEngine, still_clock) -> None:
    """Anyone with one story token tried names against the roster without limit, and was told which
    word matched. Now: a spent or forged token gets no check, a token gets five, and a name is
    never echoed (an email still is: it comes from the text, not from the roster)."""
    world = await _world(db)
    await sign_in(client, db, "m2@x.org")
    status, token = await story_token(client, world.community.id)
    assert status == 200
    guesses = ["Ines Duarte", "Tomas", "Zelda Quux", "Ines", "Marta", "Pablo"]
    async with anonymous(client) as bare:
        answers = [await bare.post("/api/v1/stories", json=token | STORY | {"happened": f"{name} and me at x@y.org."})
                   for name in guesses]  # fmt: skip
        assert [a.status_code for a in answers] == [200] * 5 + [429]
        for answer in answers[:5]:
            assert all(f["text"] in (None, "x@y.org") for f in answer.json()["findings"]), answer.json()
            assert not any(name in answer.text for name in guesses)
        assert "new token" in answers[5].json()["detail"]
        # Spent: once the story is stored, the token checks nothing more.
        stored = await bare.post("/api/v1/stories", json=token | STORY | {"confirmed": True})
        assert stored.status_code == 201
        status, second = await story_token(client, world.community.id)
        await bare.post("/api/v1/stories", json=second | STORY | {"confirmed": True})
        spent = await bare.post("/api/v1/stories", json=second | STORY | {"happened": "Ines Duarte again."})
        assert spent.status_code == 409 and "findings" not in spent.json()
