"""`safespace tick` killed in the middle of closing a round or releasing a story batch: the next
tick does the work, exactly once.

How the kill lands mid-work, every time: the tick runs through tests/faults/paused_tick.py, the
real command with one of its steps wrapped so that, once the step's writes are flushed (not
committed), it prints PAUSED and blocks; the test then sends SIGKILL. A kill after a delay would
land anywhere or after the commit depending on the machine's speed, and a switch read from the
environment would ship a test hook in the product.
"""

from __future__ import annotations

import asyncio
import os
import random
import signal
import subprocess
import sys
import uuid
from datetime import timedelta
from pathlib import Path
from urllib.parse import parse_qsl

import pytest
from sqlalchemy import func, select, update
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession

from safespace import clock
from safespace.identity.models import Person
from safespace.privacy.crypto import Keyring
from safespace.pulse import answering
from safespace.pulse import services as pulse
from safespace.pulse.models import Participation, PendingComment, ReleasedComment, Round, Tally
from safespace.settings import Settings
from safespace.stories.models import Story
from safespace.stories.services import StoryText, store_story
from tests.faults.conftest import ROOT, commenting, seed_pulse, server_env
from tests.load import answer_body

MEMBERS, ANSWERING, STORIES = 24, 20, 5  # four teams of six (k = 5); a batch goes out from three stories


async def _tick(env: dict[str, str]) -> str:
    done = await asyncio.to_thread(
        subprocess.run, [sys.executable, "-m", "safespace", "tick"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


async def _paused_tick(env: dict[str, str], point: str) -> None:
    """Run the tick until it pauses at `point` mid-transaction, then SIGKILL it."""
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "tests.faults.paused_tick", point, cwd=ROOT, env=env,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE, start_new_session=True,
    )  # fmt: skip
    try:
        line = await asyncio.wait_for(process.stdout.readline(), timeout=120)
        assert line.strip() == b"PAUSED", (line, await process.stderr.read())
    finally:
        os.killpg(process.pid, signal.SIGKILL)
        await process.wait()
    assert process.returncode == -signal.SIGKILL


async def _state(engine: AsyncEngine, round_id: uuid.UUID) -> dict[str, object]:
    async with engine.connect() as db:
        count = lambda model, *where: db.scalar(select(func.count()).select_from(model).where(*where))  # noqa: E731
        return {
            "closed": await db.scalar(select(Round.closed).where(Round.id == round_id)),
            "ledger": await count(Participation, Participation.round_id == round_id),
            "tally": await db.scalar(select(Tally.respondents).where(Tally.round_id == round_id, Tally.group_key == pulse.COMMUNITY)),
            "pending comments": await count(PendingComment, PendingComment.round_id == round_id),
            "released comments": await count(ReleasedComment, ReleasedComment.round_id == round_id),
            "pending stories": await count(Story, Story.status == "pending"),
            "released stories": await count(Story, Story.status == "released"),
            "locators": sorted(await db.scalars(select(Story.receipt_locator))),
        }


@pytest.mark.parametrize("point", ["close", "stories"])
async def test_tick_killed_mid_work_is_finished_once_by_the_next(
    point: str, database_url: str, engine: AsyncEngine, db: AsyncSession, tmp_path: Path
) -> None:
    data_dir = tmp_path / "data"
    settings = Settings(data_dir=str(data_dir), database_url=database_url)
    keyring = Keyring.load(settings.encryption_key_path)
    seeded = await seed_pulse(engine, MEMBERS)
    community_id, round_id = uuid.UUID(seeded.community_id), uuid.UUID(seeded.round_id)
    for n in range(ANSWERING):
        person_id = await db.scalar(select(Person.id).where(Person.email == f"member{n}@bench.example"))
        form = dict(parse_qsl(answer_body("-", random.Random(n), comment=commenting(n)).decode()))
        await answering.submit(db, keyring, community_id, person_id, round_id, form)
    locators = []
    for n in range(STORIES):
        text = StoryText(f"Story {n}", "The pilot ran late.", "Ask earlier.", "Plan a buffer.")
        locators.append((await store_story(db, keyring, community_id, text, [], False, moderated=False))[:4])
    await db.execute(update(Round).where(Round.id == round_id).values(closes_at=clock.now() - timedelta(minutes=1)))
    await db.commit()
    before = await _state(engine, round_id)
    assert before["pending stories"] == STORIES and before["pending comments"] == 2 and not before["closed"]

    env = server_env(data_dir, database_url)
    await _paused_tick(env, point)
    assert await _state(engine, round_id) == before, "the killed tick left part of its work behind"

    # The dead tick's lease does not hold the next one back for two minutes.
    report = await _tick(env)
    assert f"closed 1 round(s); released {STORIES} story(ies)" in report, report
    done = await _state(engine, round_id)
    assert done == {
        "closed": True,
        "ledger": ANSWERING,
        "tally": ANSWERING,
        "pending comments": 0,
        "released comments": 2,
        "pending stories": 0,
        "released stories": STORIES,
        "locators": sorted(before["locators"]),
    }
    assert sorted(done["locators"]) == sorted(locators)

    again = await _tick(env)
    assert "closed 0 round(s); released 0 story(ies)" in again, again
    assert await _state(engine, round_id) == done


def _process_state(pid: int) -> str:
    return Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[0]


async def test_a_killed_tick_left_a_zombie_does_not_hold_the_next_back(
    database_url: str, engine: AsyncEngine, db: AsyncSession, tmp_path: Path
) -> None:
    """Issue 21 item 8: a tick killed mid-close whose parent has not reaped it yet is a zombie, and
    `os.kill(pid, 0)` still reaches a zombie, so its lease held the next tick back for two minutes.
    The next tick takes over at once: on PostgreSQL the advisory lock ended with the dead process's
    connection; on SQLite the lease holder's /proc state says it has exited."""
    data_dir = tmp_path / "data"
    Keyring.load(Settings(data_dir=str(data_dir), database_url=database_url).encryption_key_path)
    seeded = await seed_pulse(engine, 8)
    round_id = uuid.UUID(seeded.round_id)
    await db.execute(update(Round).where(Round.id == round_id).values(closes_at=clock.now() - timedelta(minutes=1)))
    await db.commit()

    env = server_env(data_dir, database_url)
    log = tmp_path / "paused-tick.log"
    with log.open("w") as stderr:
        # subprocess, not asyncio: asyncio's child watcher would reap the process as soon as it died.
        paused = subprocess.Popen(
            [sys.executable, "-m", "tests.faults.paused_tick", "close"], cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=stderr
        )
    try:
        line = await asyncio.wait_for(asyncio.to_thread(paused.stdout.readline), timeout=120)
        assert line.strip() == b"PAUSED", (line, log.read_text())
        os.kill(paused.pid, signal.SIGKILL)
        for _ in range(200):
            if _process_state(paused.pid) == "Z":
                break
            await asyncio.sleep(0.01)
        assert _process_state(paused.pid) == "Z"

        report = await _tick(env)
        assert "closed 1 round(s)" in report, report
        assert _process_state(paused.pid) == "Z", "the dead tick was reaped before the check: the test proved nothing"
    finally:
        paused.kill()
        paused.wait()
    assert await db.scalar(select(Round.closed).where(Round.id == round_id))
