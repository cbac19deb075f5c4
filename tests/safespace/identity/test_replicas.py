"""Two app processes sharing one database: sign-in rate limits and sessions hold across them."""

from __future__ import annotations

import os
import time
from pathlib import Path

import httpx
from sqlalchemy.ext.asyncio import AsyncSession

from safespace import ratelimit
from safespace.identity import services as identity
from safespace.identity import signin
from tests.helpers import make_community, serving


def post_sign_in(client: httpx.Client, email: str, address: str) -> int:
    if "safespace_csrf" not in client.cookies:
        client.get("/signin")
    token = client.cookies["safespace_csrf"]
    return client.post("/signin", data={"email": email, "_csrf_token": token}, headers={"x-forwarded-for": address}).status_code


async def test_rate_limits_and_sessions_hold_across_two_processes(settings, db: AsyncSession, tmp_path: Path) -> None:
    await make_community(db)
    env = {
        **os.environ,
        "SAFESPACE_DATA_DIR": settings.data_dir,  # one secret key: CSRF and rate-limit keys agree
        "SAFESPACE_DATABASE_URL": settings.database_url,
        "SAFESPACE_SCHEDULE_INTERVAL_SECONDS": "0",
    }
    with serving(env, tmp_path / "a.log") as a, serving(env, tmp_path / "b.log") as b:
        with httpx.Client(base_url=a) as first, httpx.Client(base_url=b) as second:
            # The same client (by its forwarded address) alternates between the two processes.
            # Counts are kept per 15-minute window: requests that straddled two are tried again, as
            # another client, rather than waiting for a window to start.
            window = ratelimit.RATE_WINDOW.total_seconds()
            for attempt, address in enumerate(("198.51.100.23", "198.51.100.24")):
                started = time.time() // window
                statuses = [
                    post_sign_in(first if i % 2 == 0 else second, f"person{attempt}.{i}@x.org", address)
                    for i in range(signin.RATE_LIMIT_PER_CLIENT + 2)
                ]
                if time.time() // window == started:
                    break
            assert statuses == [200] * signin.RATE_LIMIT_PER_CLIENT + [429, 429], statuses

            # A session started through one process is known to the other, and ends in both.
            person, _ = await identity.get_or_create_person(db, "fac@x.org")
            token = await signin.start_session(db, person.id, None)
            await db.commit()
            for client in (first, second):
                client.cookies.set("safespace_session", token)
            assert second.get("/profile").status_code == 200
            first.get("/profile")
            out = first.post("/signout", data={"_csrf_token": first.cookies["safespace_csrf"]})
            assert out.status_code in (302, 303)
            assert second.get("/profile").status_code in (302, 401)
