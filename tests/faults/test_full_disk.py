"""A full disk must not take signed-in pages down (issue 21 item 4).

Reading a page writes only housekeeping: the session's hourly touch, ending an idle session,
clearing a one-time notice once shown. With the disk full those writes fail; the page must be
served all the same. Two ways of filling the disk:

- on both databases, every write to the session table fails with the database's own disk-full
  error (a trigger raising SQLSTATE 53100 on PostgreSQL, SQLITE_FULL's message on SQLite), so
  the test runs anywhere;
- on SQLite, where the machine lets the test mount a small tmpfs, a real full file system.
"""

from __future__ import annotations

import shutil
import subprocess
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import select, text
from sqlalchemy.ext.asyncio import AsyncSession

from safespace.app import create_app
from safespace.db.engine import make_engine
from safespace.db.migrate import upgrade
from safespace.identity.models import Person, WebSession
from safespace.settings import Settings
from safespace.web.session import notice
from tests.conftest import browser_like
from tests.helpers import make_community, post_form, sign_in

NOTICE = "Your profile is saved."

FAIL_WRITES = {
    "sqlite": [
        f"CREATE TRIGGER disk_full_{verb} BEFORE {verb} ON web_session BEGIN SELECT RAISE(ABORT, 'database or disk is full'); END"
        for verb in ("UPDATE", "DELETE")
    ],
    "postgresql": [
        "CREATE FUNCTION disk_full() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN "
        "RAISE EXCEPTION 'could not extend file: No space left on device' USING ERRCODE = 'disk_full'; END $$",
        "CREATE TRIGGER disk_full BEFORE UPDATE OR DELETE ON web_session FOR EACH ROW EXECUTE FUNCTION disk_full()",
    ],
}
ALLOW_WRITES = {
    "sqlite": ["DROP TRIGGER disk_full_UPDATE", "DROP TRIGGER disk_full_DELETE"],
    "postgresql": ["DROP TRIGGER disk_full ON web_session", "DROP FUNCTION disk_full()"],
}


async def _age_sessions(db: AsyncSession, by: timedelta, with_notice: bool) -> None:
    for web_session in await db.scalars(select(WebSession)):
        web_session.last_seen_at -= by
        web_session.flash = notice(NOTICE) if with_notice else None
    await db.commit()


async def _run(db: AsyncSession, statements: list[str]) -> None:
    for statement in statements:
        await db.execute(text(statement))
    await db.commit()


async def test_signed_in_pages_are_served_while_session_writes_fail(client, db: AsyncSession, database_url: str) -> None:
    kind = "postgresql" if database_url.startswith("postgresql") else "sqlite"
    world = await make_community(db, teams={"Rivers": ["ana@x.org"]})
    home = f"/c/{world.community.id}"
    await sign_in(client, db, "ana@x.org")
    await _age_sessions(db, timedelta(hours=2), with_notice=True)  # a touch and a notice are due
    before = await db.scalar(select(WebSession.last_seen_at))

    await _run(db, FAIL_WRITES[kind])
    try:
        pages = [await client.get(path) for path in [home, f"{home}/stories"] * 10]
        assert [page.status_code for page in pages] == [200] * 20, [p.text[:300] or p.headers.get("location") for p in pages if p.status_code != 200]
        assert NOTICE in pages[0].text  # the notice is shown; clearing it could not be written
        db.expire_all()
        assert await db.scalar(select(WebSession.last_seen_at)) == before, "the write was meant to fail"

        # A session idle past the limit ends even though its row cannot be deleted now.
        await _run(db, ALLOW_WRITES[kind])
        await _age_sessions(db, timedelta(days=4), with_notice=False)
        await _run(db, FAIL_WRITES[kind])
        page = await client.get(home)
        assert page.status_code in (302, 303) and "/signin" in page.headers["location"], "an idle session is signed out"
    finally:
        await db.rollback()
        await _run(db, ALLOW_WRITES[kind])

    await sign_in(client, db, "ana@x.org")
    await _age_sessions(db, timedelta(hours=2), with_notice=False)
    before = await db.scalar(select(WebSession.last_seen_at))
    assert (await client.get(home)).status_code == 200
    db.expire_all()
    assert await db.scalar(select(WebSession.last_seen_at)) > before, "with space again, the touch is written"


async def _save_profile(client, name: str):
    await client.get("/profile")
    return await post_form(client, "/profile", {"display_name": name, "language": "en"})


async def test_a_form_whose_commit_fails_says_nothing_was_saved(client, db: AsyncSession, database_url: str) -> None:
    """A write that fails only at COMMIT (PostgreSQL: a deferred check, the way a full disk or a
    lost server refuses a commit) must not answer "saved". It used to: the commit's failure was
    logged at debug level and the redirect to "Your profile is saved." went out."""
    if not database_url.startswith("postgresql"):
        pytest.skip("SQLite's commit fails on a really full disk: test_sqlite_on_a_really_full_disk_...")
    await make_community(db, teams={"Rivers": ["ana@x.org"]})
    await sign_in(client, db, "ana@x.org")
    await _run(db, [
        "CREATE FUNCTION disk_full() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN "
        "RAISE EXCEPTION 'could not write: No space left on device' USING ERRCODE = 'disk_full'; END $$",
        "CREATE CONSTRAINT TRIGGER disk_full AFTER UPDATE ON person DEFERRABLE INITIALLY DEFERRED "
        "FOR EACH ROW EXECUTE FUNCTION disk_full()",
    ])
    try:
        refused = await _save_profile(client, "Ana Lopez")
    finally:
        await _run(db, ["DROP TRIGGER disk_full ON person", "DROP FUNCTION disk_full()"])
    assert refused.status_code == 503 and refused.headers["retry-after"] == "30"
    assert "Nothing was saved" in refused.text and "location" not in refused.headers
    db.expire_all()
    assert await db.scalar(select(Person.display_name).where(Person.email == "ana@x.org")) in (None, "")
    page = await client.get("/profile")
    assert "Your profile is saved" not in page.text

    saved = await _save_profile(client, "Ana Lopez")  # with the disk back, the same form saves
    assert saved.status_code == 303
    db.expire_all()
    assert await db.scalar(select(Person.display_name).where(Person.email == "ana@x.org")) == "Ana Lopez"


@pytest.fixture
def small_disk(tmp_path: Path):
    """A 16 MiB tmpfs, where the machine allows mounting one (root with CAP_SYS_ADMIN)."""
    where = tmp_path / "disk"
    where.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=16m", "tmpfs", str(where)], capture_output=True, text=True)
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a small tmpfs here ({mounted.stderr.strip() or 'not root'}); the trigger test covers both databases")
    try:
        yield where
    finally:
        subprocess.run(["umount", "-l", str(where)], check=False)


async def test_sqlite_on_a_really_full_disk_still_serves_signed_in_pages(small_disk: Path, database_url: str) -> None:
    if not database_url.startswith("sqlite"):
        pytest.skip("PostgreSQL writes its WAL before any table; a full disk there is the trigger test's case")
    settings = Settings(data_dir=str(small_disk), database_url=f"sqlite+aiosqlite:///{small_disk / 'safespace.db'}",
                        schedule_interval_seconds=0)
    engine = make_engine(settings)
    try:
        await upgrade(engine)
        async with AsyncSession(engine, expire_on_commit=False) as db:
            world = await make_community(db, teams={"Rivers": ["ana@x.org"]})
            home = f"/c/{world.community.id}"
            async with browser_like(create_app(settings)) as client:
                await sign_in(client, db, "ana@x.org")
                await _age_sessions(db, timedelta(hours=2), with_notice=True)
                before = await db.scalar(select(WebSession.last_seen_at))
                await db.commit()
                # Empty the write-ahead log, so that the next write must grow a file.
                async with engine.connect() as conn:
                    await conn.exec_driver_sql("PRAGMA wal_checkpoint(TRUNCATE)")
                filler = small_disk / "filler"
                with filler.open("wb") as out:  # fill the file system to the last block
                    chunk = b"\0" * 65536
                    try:
                        while True:
                            out.write(chunk)
                            out.flush()
                    except OSError:
                        pass
                assert shutil.disk_usage(small_disk).free < 65536
                pages = [await client.get(path) for path in [home, f"{home}/stories"] * 10]
                assert [page.status_code for page in pages] == [200] * 20, [p.text[:300] or p.headers.get("location") for p in pages if p.status_code != 200]
                assert NOTICE in pages[0].text
                db.expire_all()
                assert await db.scalar(select(WebSession.last_seen_at)) == before, "the disk was meant to refuse the touch"
                await db.commit()
                refused = await _save_profile(client, "Ana Lopez")
                assert refused.status_code == 503 and "Nothing was saved" in refused.text
                filler.unlink()
                assert (await client.get(home)).status_code == 200
    finally:
        await engine.dispose()
