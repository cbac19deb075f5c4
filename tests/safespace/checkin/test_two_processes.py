"""Two app processes on one PostgreSQL database serve one check-in: members on process A, the
facilitator on process B. The count (from k) and the reveal reach every listener on both, over
PostgreSQL's LISTEN/NOTIFY (Litestar's channels), and nothing reaches them below k."""

from __future__ import annotations

import asyncio
import json
import os
import uuid
from pathlib import Path

import httpx
import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from safespace.checkin.models import CheckIn
from safespace.identity import signin
from safespace.identity.models import Person
from tests.helpers import make_community, serving
from tests.safespace.checkin.conftest import MEMBERS, STATEMENTS


async def _client(db: AsyncSession, base: str, email: str) -> httpx.AsyncClient:
    person = await db.scalar(select(Person).where(Person.email == email))
    token = await signin.start_session(db, person.id, None)
    await db.commit()
    client = httpx.AsyncClient(base_url=base, timeout=20)
    client.cookies.set("safespace_session", token)
    assert (await client.get("/profile")).status_code == 200  # and the session's CSRF cookie
    return client


async def _post(client: httpx.AsyncClient, url: str, data: dict) -> httpx.Response:
    return await client.post(url, data={**data, "_csrf_token": client.cookies["safespace_csrf"]})


async def _listen(client: httpx.AsyncClient, path: str, into: asyncio.Queue) -> None:
    async with client.stream("GET", path, timeout=None) as response:
        assert response.status_code == 200
        async for line in response.aiter_lines():
            if line.startswith("data:"):
                await into.put(json.loads(line[5:].strip()))


async def test_two_processes_serve_one_check_in(settings, db: AsyncSession, tmp_path: Path) -> None:
    if not settings.database_url.startswith("postgresql"):
        pytest.skip("several processes share one database on PostgreSQL; SQLite serves one process")
    world = await make_community(db, teams={"All": MEMBERS}, k=5)
    env = {
        **os.environ,
        "SAFESPACE_DATA_DIR": settings.data_dir,  # one secret, one keyring, one checkin-keys folder
        "SAFESPACE_DATABASE_URL": settings.database_url,
        "SAFESPACE_SCHEDULE_INTERVAL_SECONDS": "0",
    }
    with serving(env, tmp_path / "a.log") as a, serving(env, tmp_path / "b.log") as b:
        facilitator = await _client(db, b, world.facilitator)
        members = [await _client(db, a, email) for email in MEMBERS[:5]]
        started = await _post(facilitator, f"/c/{world.community.id}/checkins", {"statement": STATEMENTS, "points": "5"})
        assert started.status_code == 303, started.text
        checkin = await db.get(CheckIn, uuid.UUID(started.headers["location"].rsplit("/", 1)[1]))
        join = f"/checkin/{checkin.code}"
        queues: list[asyncio.Queue] = [asyncio.Queue() for _ in range(3)]
        listeners = [
            asyncio.create_task(_listen(members[0], f"{join}/events", queues[0])),  # a member on A
            asyncio.create_task(_listen(members[4], f"{join}/events", queues[1])),  # another on A
            asyncio.create_task(_listen(facilitator, f"{join}/events", queues[2])),  # the facilitator on B
        ]
        try:
            for queue in queues:
                assert await asyncio.wait_for(queue.get(), 20) == {"state": "open", "count": None}
            for member in members[:4]:
                assert (await _post(member, join, {"a.s1": "4", "a.s2": "4"})).status_code == 303
            refused = await _post(facilitator, f"/c/{world.community.id}/checkins/{checkin.id}/reveal", {})
            assert refused.status_code == 409
            assert all(queue.empty() for queue in queues)  # below k: nothing was sent to anyone
            assert (await _post(members[4], join, {"a.s1": "2", "a.s2": "5"})).status_code == 303
            for queue in queues:
                assert await asyncio.wait_for(queue.get(), 20) == {"state": "open", "count": 5}
            revealed = await _post(facilitator, f"/c/{world.community.id}/checkins/{checkin.id}/reveal", {})
            assert revealed.status_code == 303
            for queue in queues:
                assert await asyncio.wait_for(queue.get(), 20) == {"state": "revealed", "count": 5}
            page = await members[0].get(join)  # process A shows the figures process B revealed
            assert "Scale score" in page.text
        finally:
            for task in listeners:
                task.cancel()
            await asyncio.gather(*listeners, return_exceptions=True)
            for client in (facilitator, *members):
                await client.aclose()
