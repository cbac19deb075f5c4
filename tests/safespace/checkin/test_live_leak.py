"""Live-leak attack: a facilitator and a member who does not answer read every GET route of the
app after each single answer to a check-in. Nothing changes below k (not the pages, exports or
API answers, not even their length), and from k on the only change is the count."""

from __future__ import annotations

import re
import uuid

import httpx

from tests.helpers import app_routes, url_for
from tests.safespace.checkin.conftest import MEMBERS, Meeting

SKIPPED = ("/static/", "/schema", "/language/", "/signin", "/signout")
# What differs between two reads for reasons of their own: CSRF tokens and integrity hashes.
VOLATILE = [
    (re.compile(r'name="_csrf_token" value="[^"]*"'), 'name="_csrf_token" value=""'),
    (re.compile(r'name="csrf-token" content="[^"]*"'), 'name="csrf-token" content=""'),
]
# The live paragraph: "waiting" below k, the count from k.
LIVE = re.compile(r"(data-live-text>)\s*(Waiting for at least \d+ answers\. Nothing is shown before then\.|\d+ people have answered\.)")


def _routes(meeting: Meeting) -> list[str]:
    values = {
        "community_id": meeting.community_id, "checkin_id": meeting.checkin_id, "code": meeting.code,
        "provider_id": "none", "file_path": "safespace.css", "path": "none", "survey": uuid.uuid4(),
    }  # fmt: skip
    urls = []
    for method, template in app_routes(meeting.app):
        if method != "GET" or template.startswith(SKIPPED) or template.endswith("/events"):
            continue  # the event stream never ends: test_checkin.py reads it message by message
        urls.append(url_for(meeting.app, method, template, values))
    return urls


async def _read(client: httpx.AsyncClient, urls: list[str]) -> dict[str, str]:
    bodies = {}
    for url in urls:
        response = await client.get(url)
        assert response.status_code < 500, (url, response.status_code)
        body = f"{response.status_code} {response.headers.get('location', '')} {response.text}"
        for pattern, replacement in VOLATILE:
            body = pattern.sub(replacement, body)
        bodies[url] = body
    return bodies


def _changes(before: dict[str, str], after: dict[str, str]) -> list[str]:
    return [url for url in before if before[url] != after[url]]


async def test_polling_every_route_after_each_answer_shows_nothing_but_the_count_from_k(meeting: Meeting) -> None:
    await meeting.start(prompt="Anything else?")
    urls = _routes(meeting)
    assert any(meeting.code in url for url in urls) and any(str(meeting.checkin_id) in url for url in urls)
    for email in MEMBERS[:5]:
        await meeting.browser(email)  # signed in before the first read: a sign-in shows elsewhere (the audit log)
    watchers = {"facilitator": await meeting.browser(meeting.world.facilitator), "member": await meeting.browser(MEMBERS[5])}
    # Pages that change with the reading itself (the session's current community after a first
    # visit; an audit log of the reads) are found by reading with no answer in between, and left out.
    for client in watchers.values():
        await _read(client, urls)
    second = {name: await _read(client, urls) for name, client in watchers.items()}
    last = {name: await _read(client, urls) for name, client in watchers.items()}
    restless = {url for name in watchers for url in _changes(second[name], last[name])}
    assert not any(meeting.code in url or str(meeting.checkin_id) in url for url in restless), restless
    urls = [url for url in urls if url not in restless]
    last = {name: {url: body for url, body in bodies.items() if url in urls} for name, bodies in last.items()}
    for n, email in enumerate(MEMBERS[:5], 1):
        await meeting.answer(email, n % 5 + 1, comment=f"leak{n}")
        for name, client in watchers.items():
            now = await _read(client, urls)
            changed = _changes(last[name], now)
            if n < 5:
                assert changed == [], f"after answer {n} (below k) {name} sees a change on {changed}"
            else:
                assert changed, "at k the count appears"
                for url in changed:  # ... and nothing else changed
                    assert "5 people have answered." in now[url], url
                    assert LIVE.sub(r"\1COUNT", now[url]) == LIVE.sub(r"\1COUNT", last[name][url]), url
            assert not any(f"leak{i}" in body for body in now.values() for i in range(1, 6))
            last[name] = now
