"""Roster import: a CSV previewed first (new, team changes, unchanged, errors and why), then
applied; invitations only for new people; bad files refused whole; open rounds keep their teams."""

from __future__ import annotations

import html

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession

from safespace.audit.models import AuditEntry
from safespace.identity.models import Membership, Person
from safespace.pulse.models import Round
from tests.conftest import Inbox
from tests.helpers import csrf, make_community, post_form, sign_in
from tests.safespace.insights.conftest import answered_round
from tests.safespace.test_cli import run

ROSTER = (
    "email,name,team,language\n"
    "new@x.org,Nadia New,North,es\n"  # new, invited
    "m1@x.org,,South,\n"  # moves from North to South
    "m2@x.org,,North,\n"  # unchanged
    "not-an-address,,North,\n"  # an error
    "m4@x.org,,Atlantis,\n"  # an error: no such team
)  # m3@x.org is missing from the file


async def world(db: AsyncSession):
    return await make_community(db, teams={"North": ["m1@x.org", "m2@x.org", "m3@x.org", "m4@x.org"], "South": []})


async def statuses(db: AsyncSession) -> dict[str, tuple[str, str | None]]:
    rows = await db.execute(select(Person.email, Membership.status, Membership.team_id).join(Membership).execution_options(populate_existing=True))
    return {email: (status, str(team)) for email, status, team in rows}


async def upload(client, community_id, data: bytes, deactivate: bool = True):
    await client.get(f"/c/{community_id}/members/import")
    form = {"_csrf_token": csrf(client)} | ({"deactivate": "yes"} if deactivate else {})
    return await client.post(f"/c/{community_id}/members/import", data=form, files={"file": ("roster.csv", data, "text/csv")})


async def test_preview_changes_nothing_then_apply_does_what_it_showed(client, db: AsyncSession, inbox: Inbox) -> None:
    w = await world(db)
    before = await statuses(db)
    await sign_in(client, db, w.facilitator)
    preview = await upload(client, w.community.id, ROSTER.encode())
    text = html.unescape(preview.text)
    assert preview.status_code == 200, text
    for shown in ("New, to be invited: 1", "Moving to another team: 1", "Unchanged: 1", "Rows with errors, left out: 2",
                  "Members not in the file: 1", "m1@x.org: North → South", "not an e-mail address", "no team of this name"):  # fmt: skip
        assert shown in text, shown
    assert await statuses(db) == before and inbox.to("new@x.org") == []

    applied = await post_form(client, f"/c/{w.community.id}/members/import/apply", {"roster": ROSTER, "deactivate": "yes"})
    assert applied.status_code == 303, applied.text
    after = await statuses(db)
    assert after["new@x.org"] == ("invited", str(w.teams["North"]))
    assert after["m1@x.org"] == ("active", str(w.teams["South"]))
    assert after["m2@x.org"] == before["m2@x.org"] and after["m4@x.org"] == before["m4@x.org"]
    assert after["m3@x.org"][0] == "deactivated" and after[w.facilitator][0] == "active"  # facilitators stay
    assert len(inbox.to("new@x.org")) == 1 and inbox.to("m1@x.org") == []  # invitations for new people only
    nadia = await db.scalar(select(Person).where(Person.email == "new@x.org"))
    assert (nadia.display_name, nadia.language) == ("Nadia New", "es")
    [entry] = await db.scalars(select(AuditEntry).where(AuditEntry.kind == "member"))
    assert entry.detail == "roster import: 1 invited, 1 team changes, 1 deactivated"


async def test_bad_files_are_refused_whole_and_change_nothing(client, db: AsyncSession, inbox: Inbox) -> None:
    w = await world(db)
    before = await statuses(db)
    await sign_in(client, db, w.facilitator)
    many = "email\n" + "".join(f"p{i}@x.org\n" for i in range(100_000))
    bad = {
        "is not UTF-8": "email,name\nnew@x.org,José\n".encode("latin-1"),
        "one must be “email”": b"address,name\nnew@x.org,Nadia\n",
        "more than 10,000 rows": many.encode(),
        "appears twice": b"email\nnew@x.org\nother@x.org\nNEW@x.org\n",
        "run as a formula": b"email,name\nnew@x.org,=HYPERLINK(\"http://evil.example\")\n",
    }
    for words, data in bad.items():
        answer = await upload(client, w.community.id, data)
        assert answer.status_code == 422 and words in html.unescape(answer.text), (words, answer.text[-800:])
        if words != "is not UTF-8":  # a form's field arrives as text: the file's own bytes are checked at upload
            applied = await post_form(client, f"/c/{w.community.id}/members/import/apply", {"roster": data.decode()})
            assert applied.status_code == 422, words
    assert await statuses(db) == before and inbox.messages == []


async def test_team_change_leaves_the_open_round_as_it_opened(client, db: AsyncSession, engine: AsyncEngine, settings) -> None:
    pulse = await answered_round(client, db, engine, settings, {"North": [f"m{i}@x.org" for i in range(5)], "South": []}, {}, close=False)
    opened_with = dict(pulse.round.population)
    await sign_in(client, db, pulse.world.facilitator)
    roster = "email,team\n" + "".join(f"m{i}@x.org,South\n" for i in range(5))
    applied = await post_form(client, f"/c/{pulse.world.community.id}/members/import/apply", {"roster": roster})
    assert applied.status_code == 303
    assert (await db.scalar(select(Round.population).where(Round.id == pulse.round.id).execution_options(populate_existing=True))) == opened_with
    moved = await db.scalar(select(func.count()).select_from(Membership).where(Membership.team_id == pulse.world.teams["South"]))
    assert moved == 5


async def test_api_previews_then_applies(client, db: AsyncSession, inbox: Inbox) -> None:
    w = await world(db)
    await sign_in(client, db, w.facilitator)
    url = f"/api/v1/communities/{w.community.id}/roster"
    headers = {"x-csrftoken": csrf(client), "content-type": "text/csv"}
    dry = await client.post(url, content=ROSTER.encode(), headers=headers)
    assert dry.status_code == 200, dry.text
    body = dry.json()
    assert body["applied"] is False and body["new"] == ["new@x.org"] and body["missing"] == ["m3@x.org"]
    assert body["changed_team"] == [{"email": "m1@x.org", "before": "North", "after": "South"}] and len(body["errors"]) == 2
    assert inbox.messages == []
    done = await client.post(url + "?apply=true", content=ROSTER.encode(), headers=headers)
    assert done.json()["invited"] == 1 and done.json()["deactivated"] == 0 and len(inbox.to("new@x.org")) == 1
    refused = await client.post(url, content=b"name\nNadia\n", headers=headers)
    assert refused.status_code == 422 and "email" in refused.text


async def test_cli_dry_run_then_apply(settings, db: AsyncSession, tmp_path) -> None:
    w = await world(db)
    before = await statuses(db)
    path = tmp_path / "roster.csv"
    path.write_text(ROSTER)
    dry = run(settings, "import-roster", "--community", w.community.name, "--deactivate-missing", str(path))
    assert dry.returncode == 0, dry.stderr
    assert "new (to invite): 1; team changes: 1" in dry.stdout and "Dry run: nothing was changed" in dry.stdout
    assert await statuses(db) == before
    done = run(settings, "import-roster", "--community", w.community.name, "--apply", str(path))
    assert done.returncode == 0 and "Applied: 1 invited." in done.stdout, done.stderr
    assert (await statuses(db))["new@x.org"][0] == "invited" and (await statuses(db))["m3@x.org"][0] == "active"
    path.write_bytes(b"name\nNadia\n")
    refused = run(settings, "import-roster", "--community", w.community.name, "--apply", str(path))
    assert refused.returncode == 1 and "Nothing was changed" in refused.stderr
