"""A community of a facilitator and six members, each in a browser of their own (own cookies),
on one app; the facilitator can start a check-in; an event stream can be read as it arrives."""

from __future__ import annotations

import asyncio
import json
import re
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import httpx
import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from safespace.checkin.models import CheckIn
from safespace.identity import services as identity
from safespace.identity.models import Community
from tests.conftest import BASE_URL, running, shared_app
from tests.helpers import World, csrf, make_community, sign_in

MEMBERS = [f"m{i}@x.org" for i in range(6)]
STATEMENTS = ["psychological_safety/ps_mistakes", "psychological_safety/ps_raise_issues"]


@dataclass
class Meeting:
    app: object
    world: World
    db: AsyncSession
    browsers: dict[str, httpx.AsyncClient] = field(default_factory=dict)
    transport: httpx.ASGITransport | None = None
    checkin: CheckIn | None = None
    # Kept apart from the ORM objects, which a test expires to read the database afresh.
    community_id: uuid.UUID | None = None
    checkin_id: uuid.UUID | None = None
    code: str = ""

    def new_browser(self) -> httpx.AsyncClient:
        return httpx.AsyncClient(transport=self.transport, base_url=BASE_URL)

    async def browser(self, email: str) -> httpx.AsyncClient:
        """The person's own browser, signed in (made on first use)."""
        if email not in self.browsers:
            client = self.new_browser()
            await sign_in(client, self.db, email)
            self.browsers[email] = client
        return self.browsers[email]

    async def post(self, email: str, url: str, data: dict[str, str | list[str]]) -> httpx.Response:
        client = await self.browser(email)
        if not client.cookies.get("safespace_csrf"):
            await client.get("/profile")
        return await client.post(url, data={**data, "_csrf_token": csrf(client)})

    async def start(self, statements: list[str] | None = None, prompt: str = "", question: str = "") -> CheckIn:
        form: dict[str, str | list[str]] = {"statement": statements if statements is not None else STATEMENTS, "prompt": prompt, "question": question, "points": "5"}
        response = await self.post(self.world.facilitator, f"/c/{self.community_id}/checkins", form)
        assert response.status_code == 303, response.text
        checkin_id = uuid.UUID(response.headers["location"].rsplit("/", 1)[1])
        self.checkin = await self.db.get(CheckIn, checkin_id)
        self.checkin_id, self.code = checkin_id, self.checkin.code
        return self.checkin

    @property
    def page(self) -> str:
        return f"/c/{self.community_id}/checkins/{self.checkin_id}"

    @property
    def join(self) -> str:
        return f"/checkin/{self.code}"

    async def answer(self, email: str, value: int = 4, comment: str = "", **values: str) -> httpx.Response:
        form = {"a.s1": str(value), "a.s2": str(value), "comment": comment} | values
        return await self.post(email, self.join, form)

    async def reload(self) -> CheckIn:
        self.db.expire_all()
        self.checkin = await self.db.scalar(select(CheckIn).where(CheckIn.id == self.checkin_id))
        return self.checkin


@pytest.fixture
async def meeting(settings, db: AsyncSession) -> AsyncIterator[Meeting]:
    world = await make_community(db, teams={"All": MEMBERS}, k=5)
    app = shared_app(settings)
    async with running(app):
        found = Meeting(app, world, db, community_id=world.community.id, transport=httpx.ASGITransport(app=app, client=("203.0.113.7", 50000)))
        try:
            yield found
        finally:
            for client in found.browsers.values():
                await client.aclose()


async def outsider(meeting: Meeting) -> str:
    """A member of another community, signed in."""
    person, _ = await identity.get_or_create_person(meeting.db, "other@y.org")
    await identity.create_community(meeting.db, person.id, "Elsewhere", "Another place.", 5, "Europe/Madrid")
    await meeting.db.commit()
    return "other@y.org"


class EventStream:
    """A GET of an event stream driven at the ASGI level, so its events can be read as they come
    (httpx's ASGI transport would wait for the end of a stream that never ends)."""

    def __init__(self, app, path: str, cookies: httpx.Cookies) -> None:
        self.status: int | None = None
        self.events: asyncio.Queue[dict] = asyncio.Queue()
        self._buffer = ""
        self._done = asyncio.Event()
        cookie = "; ".join(f"{name}={value}" for name, value in cookies.items())
        path, _, query = path.partition("?")
        scope = {
            "type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "GET", "scheme": "http",
            "path": path, "raw_path": path.encode(), "query_string": query.encode(), "root_path": "",
            "headers": [(b"host", b"testserver.local"), (b"cookie", cookie.encode()), (b"accept", b"text/event-stream")],
            "client": ("203.0.113.7", 50000), "server": ("testserver.local", 80),
        }  # fmt: skip
        self._task = asyncio.create_task(app(scope, self._receive, self._send))
        self.started = asyncio.Event()

    async def _receive(self) -> dict:
        await self._done.wait()
        return {"type": "http.disconnect"}

    async def _send(self, message: dict) -> None:
        if message["type"] == "http.response.start":
            self.status = message["status"]
            self.started.set()
        elif message["type"] == "http.response.body":
            self._buffer += message.get("body", b"").decode()
            while "\r\n\r\n" in self._buffer or "\n\n" in self._buffer:
                sep = "\r\n\r\n" if "\r\n\r\n" in self._buffer else "\n\n"
                block, self._buffer = self._buffer.split(sep, 1)
                data = "\n".join(line.split(":", 1)[1].strip() for line in block.splitlines() if line.startswith("data:"))
                if data:
                    await self.events.put(json.loads(data))
            if not message.get("more_body", False):
                self.started.set()

    async def next(self, timeout: float = 10) -> dict:
        return await asyncio.wait_for(self.events.get(), timeout)

    def pending(self) -> list[dict]:
        found = []
        while not self.events.empty():
            found.append(self.events.get_nowait())
        return found

    async def close(self) -> None:
        self._done.set()
        try:
            await asyncio.wait_for(self._task, 5)
        except (TimeoutError, asyncio.CancelledError):
            self._task.cancel()


async def open_stream(meeting: Meeting, email: str) -> EventStream:
    client = await meeting.browser(email)
    stream = EventStream(meeting.app, f"{meeting.join}/events", client.cookies)
    await asyncio.wait_for(stream.started.wait(), 10)
    return stream


def shown_count(page: str) -> str | None:
    """The count the live paragraph shows, if any (only that paragraph: the page also says "at
    least 5 people have answered" in its rules)."""
    found = re.search(r"data-live-text>\s*(\d+) people have answered", page)
    return found.group(1) if found else None


async def community_of(meeting: Meeting) -> Community:
    return await meeting.db.get(Community, meeting.community_id)
