"""Load for benchmarks and fault tests: a seeded community with signed-in members and an open
round, a cheap keep-alive HTTP/1.1 client, an answer form's body and the round's ledger.

bench/ and tests/faults/ both drive a real server with many members; this is their shared part,
kept with the tests so that the tests import nothing from bench/.
"""

from __future__ import annotations

import asyncio
import random
import uuid
from urllib.parse import urlencode

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncEngine, async_sessionmaker

from safespace import clock
from safespace.db.migrate import upgrade
from safespace.identity import services as identity
from safespace.identity import signin
from safespace.privacy.crypto import Keyring
from safespace.pulse import lifecycle
from safespace.pulse import services as pulse
from safespace.pulse.models import Participation, PendingComment, Tally
from surveys.cadence import window_at
from surveys.instrument import builtin_instruments

CSRF_COOKIE, INSTRUMENT = "safespace_csrf", "psychological_safety"
TEAMS = 4


class Connection:
    """One keep-alive HTTP/1.1 connection: just enough protocol for this app, cheap on CPU."""

    def __init__(self, port: int) -> None:
        self.port, self.reader, self.writer = port, None, None
        self.body = b""  # the last response's body (tests read the error pages)

    async def request(self, method: str, path: str, cookies: dict, body: bytes = b"") -> tuple[int, dict[str, str]]:
        try:
            if self.writer is None:
                self.reader, self.writer = await asyncio.open_connection("127.0.0.1", self.port)
            head = f"{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n"
            if cookies:
                head += "Cookie: " + "; ".join(f"{k}={v}" for k, v in cookies.items()) + "\r\n"
            if method == "POST":
                head += f"Content-Type: application/x-www-form-urlencoded\r\nContent-Length: {len(body)}\r\n"
            self.writer.write(head.encode() + b"\r\n" + body)
            lines = (await self.reader.readuntil(b"\r\n\r\n")).decode("latin-1").split("\r\n")
            status, length, close, set_cookies = int(lines[0].split(" ", 2)[1]), 0, False, {}
            for name, _, value in (line.partition(":") for line in lines[1:]):
                name, value = name.lower(), value.strip()
                if name == "content-length":
                    length = int(value)
                elif name == "connection":
                    close = value.lower() == "close"
                elif name == "set-cookie":
                    key, _, cookie = value.split(";", 1)[0].partition("=")
                    set_cookies[key.strip()] = cookie.strip()
            self.body = await self.reader.readexactly(length)
        except (OSError, asyncio.IncompleteReadError):
            self.close()
            raise ConnectionError(f"{method} {path}: the server dropped the connection") from None
        if close:
            self.close()
        return status, set_cookies

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
        self.reader = self.writer = None


async def seed(engine: AsyncEngine, members: int, keyring: Keyring | None = None) -> tuple[str, str, list[str]]:
    """Community, teams, members with sessions and an open round, committed: (community, round, cookies)."""
    await upgrade(engine)
    async with async_sessionmaker(engine, expire_on_commit=False)() as db:
        founder, _ = await identity.get_or_create_person(db, "facilitator@bench.example")
        community = await identity.create_community(db, founder.id, "Bench", "", 5, "UTC")
        teams = [await identity.create_team(db, community.id, f"Team {n + 1}") for n in range(TEAMS)]
        tokens = []
        for n in range(members):
            person, _ = await identity.get_or_create_person(db, f"member{n}@bench.example")
            identity.add_membership(db, community.id, person.id, teams[n % TEAMS].id, "active")
            tokens.append(await signin.start_session(db, person.id, community.id))
        today = clock.now().date()  # the community's time zone is UTC: the round opened at midnight
        form = pulse.CadenceForm(every="weekly", weekday=today.weekday(), day_of_month=1, open_days=6, start=today)
        survey = await pulse.create_survey(db, community.id, "UTC", "Bench pulse", [INSTRUMENT], form)
        window = window_at(pulse.survey_cadence(survey), clock.now())
        assert window is not None, "the bench round should be open now"
        # Without the server's keyring the round's answer-token keys are made on first use instead.
        round_ = await lifecycle.open_round(db, survey, window, keyring, token_key_bits=2048 if keyring else None)
        await db.commit()
    return str(community.id), str(round_.id), tokens


async def ledger(engine: AsyncEngine, round_id: uuid.UUID) -> dict[str, int]:
    async with engine.connect() as db:
        query = select(Tally.group_key, Tally.respondents).where(Tally.round_id == round_id, Tally.instrument == INSTRUMENT)
        tallies = dict((await db.execute(query)).all())
        count = [await db.scalar(select(func.count()).where(m.round_id == round_id)) for m in (Participation, PendingComment)]
    community = tallies.pop(pulse.COMMUNITY)
    return {"participation": count[0], "community": community, "teams": sum(tallies.values()), "comments": count[1]}


def answer_body(csrf: str, rng: random.Random, comment: bool) -> bytes:
    fields = {"_csrf_token": csrf}
    fields |= {f"{INSTRUMENT}.{item}": str(rng.randint(1, 7)) for item in builtin_instruments()[INSTRUMENT].item_keys}
    if comment:
        fields[f"{INSTRUMENT}.comment"] = "More time in retrospectives to talk about what went wrong."
    return urlencode(fields).encode()
