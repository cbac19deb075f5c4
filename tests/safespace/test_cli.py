"""The `safespace` command, run as an operator would run it."""

from __future__ import annotations

import os
import subprocess
import sys

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from safespace.identity.models import Community, Membership, Person, Team
from tests.helpers import follow_link


def run(settings, *args: str) -> subprocess.CompletedProcess[str]:
    env = {
        **os.environ,
        "SAFESPACE_DATA_DIR": settings.data_dir,
        "SAFESPACE_DATABASE_URL": settings.database_url,
        "SAFESPACE_BASE_URL": settings.base_url,
    }
    return subprocess.run(
        [sys.executable, "-m", "safespace", *args], env=env, capture_output=True, text=True, timeout=120
    )


async def test_demo_twice_gives_one_demo_community(settings, db: AsyncSession) -> None:
    first = run(settings, "demo")
    second = run(settings, "demo")
    assert first.returncode == second.returncode == 0, first.stderr + second.stderr
    assert "Created the demo community" in first.stdout and "Found the demo community" in second.stdout
    for out in (first.stdout, second.stdout):
        assert "facilitator: http://testserver.local/signin/" in out and "member:" in out
    assert await db.scalar(select(func.count()).select_from(Community)) == 1
    sizes = dict(
        (await db.execute(select(Team.name, func.count(Membership.id)).join(Membership).group_by(Team.name))).all()
    )
    assert sizes == {"Energy": 12, "Circular economy": 10, "Transport": 11, "Adaptation": 4}


async def test_demo_has_a_year_of_weekly_rounds_with_a_rising_trend(settings, db: AsyncSession) -> None:
    """The README promises a year of weekly rounds (issue 17 item 7: it had twelve)."""
    import msgspec

    from safespace.demo_rounds import SURVEY_TITLE
    from safespace.pulse.models import Round, Survey, Tally
    from surveys import stats
    from surveys import tally as tally_rules

    assert run(settings, "demo").returncode == 0
    weekly = await db.scalar(select(Survey.id).where(Survey.title == SURVEY_TITLE))
    rounds = list(await db.scalars(select(Round).where(Round.survey_id == weekly).order_by(Round.number)))
    assert [r.closed for r in rounds] == [True] * 52 + [False]
    assert (rounds[51].closes_at - rounds[0].opens_at).days in range(355, 366)
    means = {}
    for round_ in rounds[:52]:
        data = await db.scalar(select(Tally.data).where(Tally.round_id == round_.id, Tally.group_key == "community"))
        if round_.number in (3, 46):  # the holiday weeks: 4 answered, so no tally was kept (a gap on the trend)
            assert data is None
            continue
        tally = msgspec.json.decode(data, type=tally_rules.Tally)
        assert tally.respondents >= 15
        means[round_.number] = stats.scale_estimate(tally).mean
    before, after = [means[n] for n in range(4, 19)], [means[n] for n in range(47, 53)]
    assert sum(after) / len(after) > sum(before) / len(before) + 0.5  # safer since the failure-sharing sessions
    assert means[35] < means[34] - 0.4  # the reorganisation's dip
    from safespace.stories.models import Story

    batches = (await db.execute(select(Story.released_on, func.count()).group_by(Story.released_on))).all()
    assert len(batches) == 9 and sum(n for _day, n in batches) == 12


async def test_login_link_prints_a_link_that_works(settings, db: AsyncSession, client) -> None:
    run(settings, "demo")
    result = run(settings, "login-link", "mara@climate.example")
    assert result.returncode == 0, result.stderr
    response = await follow_link(client, result.stdout.strip())
    assert response.status_code == 303
    unknown = run(settings, "login-link", "nobody@x.org")
    assert unknown.returncode == 1 and "No one with the address" in unknown.stderr


async def test_login_link_for_someone_invited_accepts_the_invitation(settings, db: AsyncSession, client) -> None:
    """The README's deployment steps: create a community, invite, and with no mail server, hand the
    invitee a login-link. That link must bring them in, not to an empty "no community" page."""
    assert run(settings, "create-community", "--name", "Wetlands", "--facilitator", "w@x.org").returncode == 0
    assert run(settings, "invite", "--community", "Wetlands", "new@x.org").returncode == 0
    result = run(settings, "login-link", "new@x.org")
    assert result.returncode == 0 and "accepts the invitation to Wetlands" in result.stderr, result.stderr
    response = await follow_link(client, result.stdout.strip())
    assert response.status_code == 303
    status = await db.scalar(
        select(Membership.status).join(Person, Person.id == Membership.person_id).where(Person.email == "new@x.org")
    )
    assert status == "active"


async def test_create_community_and_invite(settings, db: AsyncSession) -> None:
    made = run(settings, "create-community", "--name", "Wetlands", "--facilitator", "w@x.org", "--time-zone", "Europe/Madrid")
    assert made.returncode == 0, made.stderr
    refused = run(settings, "create-community", "--name", "Tiny", "--facilitator", "t@x.org", "--min-group-size", "2")
    assert refused.returncode == 1 and "below 3" in refused.stderr
    invited = run(settings, "invite", "--community", "Wetlands", "m1@x.org", "m2@x.org,bad")
    assert invited.returncode == 1 and "Invited 2" in invited.stdout and "bad" in invited.stderr
    assert "/signin/" in invited.stdout  # the console mailer prints the invitations


async def test_a_community_name_is_taken_whatever_its_case_and_spacing(settings, db: AsyncSession) -> None:
    """Issue 21 item 5: `create-community --name Gold` succeeded when "Gold" existed, and
    `invite --community Gold` then picked the older one without a word."""
    assert run(settings, "create-community", "--name", "Gold", "--facilitator", "g@x.org").returncode == 0
    gold = await db.scalar(select(Community).where(Community.name == "Gold"))
    again = run(settings, "create-community", "--name", "  gOLD ", "--facilitator", "h@x.org")
    assert again.returncode == 1 and again.stdout == "", again.stdout
    assert again.stderr.count("\n") == 1 and "Traceback" not in again.stderr, again.stderr
    assert "“Gold”" in again.stderr and str(gold.id) in again.stderr
    assert await db.scalar(select(func.count()).select_from(Community)) == 1
    assert await db.scalar(select(func.count()).select_from(Person).where(Person.email == "h@x.org")) == 0

    by_name = run(settings, "invite", "--community", "gold", "a@x.org")
    by_id = run(settings, "invite", "--community", str(gold.id), "b@x.org")
    assert by_name.returncode == by_id.returncode == 0, by_name.stderr + by_id.stderr
    invited = await db.scalars(
        select(Person.email).join(Membership, Membership.person_id == Person.id).where(
            Membership.community_id == gold.id, Membership.role == "member"
        )
    )
    assert sorted(invited) == ["a@x.org", "b@x.org"]

    assert run(settings, "create-community", "--name", "Silver", "--facilitator", "s@x.org").returncode == 0
    missing = run(settings, "invite", "--community", "Bronze", "c@x.org")
    assert missing.returncode == 1 and missing.stderr.count("\n") == 1, missing.stderr
    assert "No community is called 'Bronze'" in missing.stderr and "Gold, Silver" in missing.stderr


def test_every_command_has_help() -> None:
    """Found from the CLI itself, so a new command cannot be forgotten."""
    from safespace.cli import main

    for command in main.commands:
        _check_help(command)


def _check_help(command: str) -> None:
    result = subprocess.run([sys.executable, "-m", "safespace", command, "--help"], capture_output=True, text=True)
    assert result.returncode == 0 and "Usage:" in result.stdout


async def test_serve_and_tick_refuse_a_key_file_that_cannot_open_the_database(settings, db: AsyncSession) -> None:
    """A missing encryption.keys used to be made afresh (reusing key id 1) while the database held
    data sealed with the old one: results answered 500 and stories were sealed with the new key.
    Now serve and tick refuse, naming the file; a file made afresh never reuses an old key id."""
    import shutil

    from safespace.demo import ensure_demo
    from safespace.privacy.crypto import Keyring

    original = Keyring.load(settings.encryption_key_path)
    await ensure_demo(db, original)
    await db.commit()
    key_file = settings.encryption_key_path
    kept = key_file.with_name("kept.keys")
    shutil.move(key_file, kept)

    for command in (["tick"], ["serve", "--port", "1"], ["keys", "rotate"]):
        refused = run(settings, *command)
        assert refused.returncode == 1, (command, refused.stdout, refused.stderr)
        assert str(key_file) in refused.stderr and "Safespace did not start" in refused.stderr, refused.stderr
        assert "Traceback" not in refused.stderr
        assert not key_file.exists(), "no key file may be made while the database holds data sealed with another"

    fresh = Keyring.load(key_file)  # as a careless `safespace demo` or an old version would make one
    assert fresh.current_id != original.current_id, "a new key file reused the lost one's key id"
    refused = run(settings, "tick")
    assert refused.returncode == 1 and f"key {original.current_id}" in refused.stderr, refused.stderr
    shutil.move(kept, key_file)
    assert run(settings, "tick").returncode == 0


async def test_serve_and_tick_refuse_a_database_at_another_schema_revision(settings, db: AsyncSession) -> None:
    """Issue 21 item 7: against an unmigrated, older or newer database, `serve` and `tick` ran and
    every page answered 500 while /readyz said 200. Now both refuse with one line saying what to
    do, and /readyz reports the mismatch with a 503."""
    from sqlalchemy import text

    from safespace.app import create_app
    from safespace.db.migrate import current_revision
    from tests.conftest import browser_like

    head = await current_revision(db.bind)
    cases = {
        "older": ("UPDATE alembic_version SET version_num = '0008'", "needs revision", "run `safespace migrate`"),
        "newer": ("UPDATE alembic_version SET version_num = 'ffffffffffff'", "does not know", "Run the Safespace version"),
        "none": ("DELETE FROM alembic_version", "not set up", "run `safespace migrate`"),
    }
    try:
        for case, (statement, what, todo) in cases.items():
            await db.execute(text("DELETE FROM alembic_version"))
            await db.execute(text("INSERT INTO alembic_version (version_num) VALUES (:v)"), {"v": head})
            await db.execute(text(statement))
            await db.commit()
            for command in (["tick"], ["serve", "--port", "1"]):  # serve fails before it binds a port
                refused = run(settings, *command)
                assert refused.returncode == 1, (case, command, refused.stdout, refused.stderr)
                assert what in refused.stderr and todo in refused.stderr and "Traceback" not in refused.stderr, refused.stderr
                assert refused.stderr.strip().count("\n") == 0, refused.stderr
            async with browser_like(create_app(settings)) as client:
                ready = await client.get("/readyz")
            assert ready.status_code == 503 and ready.headers["retry-after"] == "30", case
            assert "schema" in ready.json()["status"], ready.json()
    finally:
        await db.rollback()
        await db.execute(text("DELETE FROM alembic_version"))
        await db.execute(text("INSERT INTO alembic_version (version_num) VALUES (:v)"), {"v": head})
        await db.commit()
    assert run(settings, "tick").returncode == 0


async def test_tick_and_backup_load_no_web_framework(settings, db: AsyncSession, tmp_path) -> None:
    """The commands an operator's timer runs (tick every minute, backup nightly) work from the
    models, the mail templates and the database: they import neither Litestar nor advanced-alchemy
    (with them, about 0.3 s more of every start). The command runs as `python -m safespace`; what it
    loaded is read at its exit."""
    env = {**os.environ, "SAFESPACE_DATA_DIR": settings.data_dir, "SAFESPACE_DATABASE_URL": settings.database_url,
           "SAFESPACE_BASE_URL": settings.base_url}  # fmt: skip
    for args in (["tick"], ["backup", str(tmp_path / "backup")]):
        code = (
            "import atexit, runpy, sys\n"
            "atexit.register(lambda: print('loaded:', sorted({n.split('.')[0] for n in sys.modules} & {'litestar', 'advanced_alchemy'}), file=sys.stderr))\n"
            f"sys.argv = ['safespace', *{args!r}]\n"
            "runpy.run_module('safespace', run_name='__main__')"
        )
        done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)
        assert done.returncode == 0, done.stderr
        assert "loaded: []" in done.stderr, (args, done.stderr[-500:])
