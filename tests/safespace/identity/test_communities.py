"""Communities, teams, members: what facilitators and members can do, and cannot."""

from __future__ import annotations

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from safespace.identity import services
from safespace.identity.models import Community, Membership, Person, Team
from tests.conftest import browser_like
from tests.helpers import api, follow_link, make_community, post_form, sign_in


async def test_facilitator_creates_a_community_in_the_form(client, db: AsyncSession) -> None:
    await make_community(db)
    await sign_in(client, db, "fac@x.org")
    form = await client.get("/communities/new")
    assert 'value="5"' in form.text  # the default k
    response = await post_form(
        client,
        "/communities",
        {"name": "River Restoration", "vision": "Rivers that live.", "min_group_size": "6", "time_zone": "Europe/Madrid"},
    )
    assert response.status_code in (302, 303)
    created = await db.scalar(select(Community).where(Community.name == "River Restoration"))
    assert created is not None and created.min_group_size == 6
    home = await client.get(f"/c/{created.id}")
    assert "Rivers that live." in home.text


async def test_k_below_three_is_refused_in_the_form(client, db: AsyncSession) -> None:
    await make_community(db)
    await sign_in(client, db, "fac@x.org")
    await client.get("/communities/new")
    response = await post_form(
        client, "/communities", {"name": "Tiny", "vision": "", "min_group_size": "2", "time_zone": "UTC"}
    )
    assert response.status_code == 422
    assert "cannot be below 3" in response.text
    assert 'value="Tiny"' in response.text  # what was typed is kept
    assert await db.scalar(select(func.count()).select_from(Community).where(Community.name == "Tiny")) == 0


async def test_a_name_another_community_has_is_refused_in_the_form_and_the_api(client, db: AsyncSession) -> None:
    """Issue 21 item 5: one community per name on an installation, case and spacing aside, so
    that a name (in the CLI, in a mail, in the menu) says which community it is."""
    await make_community(db, name="Gold", facilitator="g@x.org")
    world = await make_community(db, name="Silver")
    await sign_in(client, db, world.facilitator)
    await client.get("/communities/new")
    response = await post_form(client, "/communities", {"name": " gold  ", "vision": "", "min_group_size": "5", "time_zone": "UTC"})
    assert response.status_code == 422
    assert "There is already a community called “Gold”" in response.text
    assert 'value="gold"' in response.text  # what was typed is kept (cleaned)
    renamed = await post_form(
        client, f"/c/{world.community.id}/settings", {"name": "GOLD", "vision": "", "min_group_size": "5", "time_zone": "UTC"}
    )
    assert renamed.status_code == 422 and "already a community called “Gold”" in renamed.text
    created = await api(client, "POST", "/api/v1/communities", {"name": "Gold"})
    assert created.status_code == 422 and "name" in created.json()["errors"]
    assert await db.scalar(select(func.count()).select_from(Community)) == 2
    # Its own name in another case is not another community's.
    own = await api(client, "PATCH", f"/api/v1/communities/{world.community.id}", {"name": "SILVER"})
    assert own.status_code == 200 and own.json()["name"] == "SILVER"


async def test_k_below_three_is_refused_in_the_api(client, db: AsyncSession) -> None:
    world = await make_community(db)
    await sign_in(client, db, world.facilitator)
    response = await api(client, "POST", "/api/v1/communities", {"name": "Tiny", "min_group_size": 2})
    assert response.status_code == 422
    assert response.headers["content-type"].startswith("application/problem+json")
    assert "min_group_size" in response.json()["errors"]
    lowered = await api(client, "PATCH", f"/api/v1/communities/{world.community.id}", {"min_group_size": 1})
    assert lowered.status_code == 422
    await db.refresh(world.community)
    assert world.community.min_group_size == 5


async def test_api_rejects_malformed_json_with_a_problem_document(client, db: AsyncSession) -> None:
    world = await make_community(db)
    await sign_in(client, db, world.facilitator)
    response = await api(client, "POST", "/api/v1/communities", {"name": 42})
    assert response.status_code == 400
    body = response.json()
    assert body["status"] == 400 and body["title"]


async def test_teams_are_created_and_renamed(client, db: AsyncSession) -> None:
    world = await make_community(db)
    await sign_in(client, db, world.facilitator)
    base = f"/c/{world.community.id}/teams"
    await client.get(base)
    assert (await post_form(client, base, {"name": "Energy"})).status_code in (302, 303)
    duplicate = await post_form(client, base, {"name": "energy"})
    assert duplicate.status_code == 422 and "already a team" in duplicate.text
    team = await db.scalar(select(Team).where(Team.name == "Energy"))
    assert (await post_form(client, f"{base}/{team.id}", {"name": "Energy transition"})).status_code in (302, 303)
    page = await client.get(base)
    assert "Energy transition" in page.text


async def test_a_team_name_differing_only_in_non_ascii_case_is_refused_not_a_500(client, db: AsyncSession) -> None:
    """Schemathesis found it on SQLite, whose lower() folds ASCII only: "Ä" twice reached the index."""
    world = await make_community(db)
    await sign_in(client, db, world.facilitator)
    base = f"/c/{world.community.id}/teams"
    await client.get(base)
    assert (await post_form(client, base, {"name": "Ärzte Übersee"})).status_code in (302, 303)
    for again in ("Ärzte Übersee", "ärzte übersee", "ÄRZTE ÜBERSEE"):
        refused = await post_form(client, base, {"name": again})
        assert refused.status_code == 422 and "already a team" in refused.text, (again, refused.status_code)
    other = await post_form(client, base, {"name": "Évora"})
    assert other.status_code in (302, 303)
    team = await db.scalar(select(Team).where(Team.name == "Évora"))
    renamed = await post_form(client, f"{base}/{team.id}", {"name": "ärzte ÜBERSEE"})
    assert renamed.status_code == 422 and "already a team" in renamed.text
    assert (await post_form(client, f"{base}/{team.id}", {"name": "évora"})).status_code in (302, 303)  # itself, recased


async def test_invite_creates_one_member_and_lists_the_bad_address(client, db: AsyncSession, inbox) -> None:
    world = await make_community(db, teams={"Energy": []})
    await sign_in(client, db, world.facilitator)
    members_page = f"/c/{world.community.id}/members"
    await client.get(members_page)
    response = await post_form(
        client,
        members_page,
        {"addresses": "a@x.org, not-an-address, a@x.org", "team": str(world.teams["Energy"])},
    )
    assert response.status_code == 422
    assert "not-an-address" in response.text
    assert "1 invitation sent." in response.text
    people = (await db.scalars(select(Person.email).where(Person.email != world.facilitator))).all()
    assert people == ["a@x.org"]
    membership = await db.scalar(select(Membership).join(Person).where(Person.email == "a@x.org"))
    assert membership.status == "invited" and membership.team_id == world.teams["Energy"]
    assert len(inbox.to("a@x.org")) == 1


async def test_invited_member_follows_the_link_and_lands_on_the_home_page(client, db: AsyncSession, inbox) -> None:
    world = await make_community(db)
    await sign_in(client, db, world.facilitator)
    await client.get(f"/c/{world.community.id}/members")
    await post_form(client, f"/c/{world.community.id}/members", {"addresses": "new@x.org", "team": ""})
    link = inbox.last_link("new@x.org")
    client.cookies.clear()
    response = await follow_link(client, link)
    assert response.headers["location"] == f"/c/{world.community.id}"
    home = await client.get(response.headers["location"])
    assert home.status_code == 200
    assert world.community.name in home.text and "We learn together." in home.text
    membership = await db.scalar(select(Membership).join(Person).where(Person.email == "new@x.org"))
    await db.refresh(membership)
    assert membership.status == "active"


async def test_roster_shows_name_email_team_role_status(client, db: AsyncSession) -> None:
    world = await make_community(db, teams={"Energy": ["e1@x.org"]})
    await sign_in(client, db, world.facilitator)
    roster = await client.get(f"/c/{world.community.id}/members")
    for text in ("e1@x.org", "Energy", "facilitator", "member", "active"):
        assert text in roster.text


async def test_deactivate_and_reactivate_a_member(client, db: AsyncSession) -> None:
    world = await make_community(db, teams={"Energy": ["e1@x.org"]})
    membership = await db.scalar(select(Membership).join(Person).where(Person.email == "e1@x.org"))
    await sign_in(client, db, world.facilitator)
    url = f"/c/{world.community.id}/members/{membership.id}"
    await client.get(f"/c/{world.community.id}/members")
    await post_form(client, url, {"action": "deactivate"})
    await db.refresh(membership)
    assert membership.status == "deactivated"

    async with browser_like(client.app) as member:
        await sign_in(member, db, "e1@x.org")
        assert (await member.get(f"/c/{world.community.id}")).status_code == 404

    await post_form(client, url, {"action": "reactivate"})
    await db.refresh(membership)
    assert membership.status == "active"


async def test_community_always_keeps_a_facilitator(client, db: AsyncSession) -> None:
    world = await make_community(db, teams={"Energy": ["e1@x.org"]})
    await sign_in(client, db, world.facilitator)
    mine = await db.scalar(select(Membership).join(Person).where(Person.email == world.facilitator))
    other = await db.scalar(select(Membership).join(Person).where(Person.email == "e1@x.org"))
    url = f"/c/{world.community.id}/members"
    await client.get(url)
    await post_form(client, f"{url}/{mine.id}", {"action": "make_member"})
    page = await client.get(url)
    assert "at least one facilitator" in page.text
    await db.refresh(mine)
    assert mine.role == "facilitator"

    await post_form(client, f"{url}/{other.id}", {"action": "make_facilitator"})
    await post_form(client, f"{url}/{mine.id}", {"action": "make_member"})
    await db.refresh(mine)
    await db.refresh(other)
    assert (mine.role, other.role) == ("member", "facilitator")
    # Now a member: the facilitator pages are closed to me.
    assert (await client.get(url)).status_code == 403


async def test_member_gets_403_on_facilitator_pages_and_api(client, db: AsyncSession) -> None:
    world = await make_community(db, teams={"Energy": ["e1@x.org"]})
    await sign_in(client, db, "e1@x.org")
    c = world.community.id
    for path in (f"/c/{c}/members", f"/c/{c}/teams", f"/c/{c}/settings"):
        assert (await client.get(path)).status_code == 403, path
    for path in (f"/api/v1/communities/{c}/members", f"/api/v1/communities/{c}/teams"):
        response = await client.get(path)
        assert response.status_code == 403, path
        assert response.json()["status"] == 403
    assert (await api(client, "POST", f"/api/v1/communities/{c}/teams", {"name": "Mine"})).status_code == 403
    assert (await client.get(f"/c/{c}")).status_code == 200


async def test_facilitator_of_a_gets_404_for_community_b(client, db: AsyncSession) -> None:
    a = await make_community(db, name="A", facilitator="fa@x.org")
    b = await make_community(db, name="B", facilitator="fb@x.org")
    await sign_in(client, db, a.facilitator)
    for path in (f"/c/{b.community.id}", f"/c/{b.community.id}/members", f"/c/{b.community.id}/settings"):
        assert (await client.get(path)).status_code == 404, path
    assert (await client.get(f"/api/v1/communities/{b.community.id}/members")).status_code == 404
    assert (await api(client, "PATCH", f"/api/v1/communities/{b.community.id}", {"name": "Mine now"})).status_code == 404


async def test_person_in_two_communities_switches_between_them(client, db: AsyncSession) -> None:
    a = await make_community(db, name="Alpha circle", facilitator="fa@x.org", teams={"T": ["both@x.org"]})
    b = await make_community(db, name="Beta circle", facilitator="fb@x.org", teams={"U": ["both@x.org"]})
    await sign_in(client, db, "both@x.org")
    page = await client.get(f"/c/{a.community.id}")
    assert f'href="/c/{b.community.id}"' in page.text and "Beta circle" in page.text
    assert "Beta circle" in (await client.get(f"/c/{b.community.id}")).text
    # The start page remembers where I was last.
    assert (await client.get("/")).headers["location"] == f"/c/{b.community.id}"


async def test_member_sets_display_name_and_language(client, db: AsyncSession) -> None:
    world = await make_community(db, teams={"Energy": ["e1@x.org"]})
    await sign_in(client, db, "e1@x.org")
    await client.get("/profile")
    response = await post_form(client, "/profile", {"display_name": "  Eva  Lund ", "language": "es"})
    assert response.status_code in (302, 303)
    page = await client.get("/profile")
    assert "Eva Lund" in page.text
    assert '<html lang="es">' in page.text and "Tu perfil" in page.text
    home = await client.get(f"/c/{world.community.id}")
    assert "Nuestra visión" in home.text


async def test_api_lists_and_invites(client, db: AsyncSession, inbox) -> None:
    world = await make_community(db, teams={"Energy": ["e1@x.org"]})
    await sign_in(client, db, world.facilitator)
    c = world.community.id
    invited = await api(
        client,
        "POST",
        f"/api/v1/communities/{c}/members",
        {"addresses": ["b@x.org", "nope", "e1@x.org"], "team_id": str(world.teams["Energy"])},
    )
    assert invited.status_code == 201, invited.text
    body = invited.json()
    assert [m["email"] for m in body["invited"]] == ["b@x.org"]
    assert body["invalid"] == ["nope"] and body["already_members"] == ["e1@x.org"]
    assert body["not_mailed"] == []
    roster = (await client.get(f"/api/v1/communities/{c}/members")).json()
    assert {m["email"] for m in roster} == {"fac@x.org", "e1@x.org", "b@x.org"}
    assert len(inbox.to("b@x.org")) == 1


async def test_signing_in_does_not_accept_other_invitations(client, db: AsyncSession, inbox) -> None:
    """An invitation is accepted only by its own link or by the person, not by signing in elsewhere."""
    a = await make_community(db, name="Alpha circle", facilitator="fa@x.org", teams={"T": ["both@x.org"]})
    b = await make_community(db, name="Beta circle", facilitator="fb@x.org")
    await sign_in(client, db, b.facilitator)
    await client.get(f"/c/{b.community.id}/members")
    await post_form(client, f"/c/{b.community.id}/members", {"addresses": "both@x.org", "team": ""})
    client.cookies.clear()
    await sign_in(client, db, "both@x.org")  # an ordinary sign-in link
    invited = await db.scalar(
        select(Membership).join(Person).where(Person.email == "both@x.org", Membership.community_id == b.community.id)
    )
    await db.refresh(invited)
    assert invited.status == "invited"
    page = await client.get("/communities")
    assert "Accept invitation" in page.text and f'href="/c/{b.community.id}"' not in page.text
    assert (await client.get(f"/c/{b.community.id}")).status_code == 404
    accepted = await post_form(client, f"/communities/{b.community.id}/accept", {})
    assert accepted.headers["location"] == f"/c/{b.community.id}"
    assert (await client.get(f"/c/{b.community.id}")).status_code == 200
    assert a.community.id != b.community.id


async def test_reactivating_someone_who_never_accepted_leaves_them_invited(client, db: AsyncSession) -> None:
    world = await make_community(db)
    await sign_in(client, db, world.facilitator)
    members = f"/c/{world.community.id}/members"
    await client.get(members)
    await post_form(client, members, {"addresses": "late@x.org", "team": ""})
    membership = await db.scalar(select(Membership).join(Person).where(Person.email == "late@x.org"))
    for action in ("deactivate", "reactivate"):
        await post_form(client, f"{members}/{membership.id}", {"action": action})
    await db.refresh(membership)
    assert membership.status == "invited"


async def test_control_characters_never_reach_the_database(client, db: AsyncSession) -> None:
    world = await make_community(db)
    await sign_in(client, db, world.facilitator)
    await client.get(f"/c/{world.community.id}/teams")
    response = await post_form(client, f"/c/{world.community.id}/teams", {"name": "Wa\x00ter\x07"})
    assert response.status_code == 303
    assert await db.scalar(select(Team.name).where(Team.community_id == world.community.id)) == "Water"


async def test_the_community_menu_lists_the_viewers_active_communities_by_name(client, db: AsyncSession) -> None:
    """The navigation comes with the session in one query: active memberships only, by name, the
    one being looked at marked current; a person with no community gets no menu."""
    rivers = await make_community(db, "Rivers", teams={"North": ["both@x.org"]})
    coasts = await make_community(db, "Coasts", facilitator="other@x.org", teams={"East": ["both@x.org"]})
    archive = await make_community(db, "Archive", facilitator="third@x.org")
    person, _ = await services.get_or_create_person(db, "both@x.org")
    services.add_membership(db, archive.community.id, person.id, None, "deactivated")
    await services.get_or_create_person(db, "alone@x.org")
    await db.commit()
    await sign_in(client, db, "both@x.org")
    await client.get(f"/c/{rivers.community.id}")  # the session remembers the community last opened
    menu = (await client.get("/profile")).text.split('class="switcher"', 1)[1].split("</details>", 1)[0]
    assert menu.index(">Coasts<") < menu.index(">Rivers<") and "Archive" not in menu
    assert f'href="/c/{rivers.community.id}" aria-current="true">Rivers<' in menu
    assert f'href="/c/{coasts.community.id}">Coasts<' in menu
    await sign_in(client, db, "alone@x.org")
    page = await client.get("/profile")
    assert page.status_code == 200 and 'class="switcher"' not in page.text and ">Sign out<" in page.text


async def test_an_invitation_tells_the_inviter_nothing_about_the_address(client, db: AsyncSession, inbox) -> None:
    """Anyone can start a community and invite any address: the answer for an address with an
    account (and a name its owner set for another community) must look like the one for a new
    address, and the name appears only once they accept."""
    other = await make_community(db, name="Elsewhere", facilitator="fo@x.org", teams={"T": ["known@x.org"]})
    known = await db.scalar(select(Person).where(Person.email == "known@x.org"))
    known.display_name = "Secret Agent Name"
    await db.commit()
    world = await make_community(db, name="Probe circle", facilitator="probe@x.org")
    await sign_in(client, db, world.facilitator)
    c = world.community.id
    invited = (await api(client, "POST", f"/api/v1/communities/{c}/members", {"addresses": ["known@x.org", "fresh@x.org"]})).json()
    shapes = [{k: v for k, v in m.items() if k not in ("id", "email")} for m in invited["invited"]]
    assert shapes[0] == shapes[1] and shapes[0]["display_name"] == ""
    roster = (await client.get(f"/api/v1/communities/{c}/members")).json()
    assert "Secret Agent Name" not in repr(roster)
    assert "Secret Agent Name" not in (await client.get(f"/c/{c}/members")).text
    # Once they accept, the name they chose is shown here too.
    client.cookies.clear()
    await follow_link(client, inbox.last_link("known@x.org"))
    client.cookies.clear()
    await sign_in(client, db, world.facilitator)
    assert "Secret Agent Name" in (await client.get(f"/c/{c}/members")).text
    assert other.community.id != c


async def test_invitations_are_limited_per_day_per_community_and_sender(client, db: AsyncSession, inbox, monkeypatch) -> None:
    from safespace.identity import signin

    monkeypatch.setattr(signin, "INVITATIONS_PER_DAY", 3)
    world = await make_community(db)
    await sign_in(client, db, world.facilitator)
    c = world.community.id
    assert (await api(client, "POST", f"/api/v1/communities/{c}/members", {"addresses": ["a1@x.org", "a2@x.org"]})).status_code == 201
    refused = await api(client, "POST", f"/api/v1/communities/{c}/members", {"addresses": ["a3@x.org", "a4@x.org"]})
    assert refused.status_code == 429 and "at most 1 more" in refused.json()["detail"]
    assert await db.scalar(select(func.count()).select_from(Person).where(Person.email.in_(["a3@x.org", "a4@x.org"]))) == 0
    assert inbox.to("a3@x.org") == []
    members = f"/c/{c}/members"
    await client.get(members)
    page = await post_form(client, members, {"addresses": "a3@x.org\na4@x.org", "team": ""})
    assert page.status_code == 429 and "at most 1 more" in page.text and "a3@x.org" in page.text  # kept in the box
    assert (await api(client, "POST", f"/api/v1/communities/{c}/members", {"addresses": ["a3@x.org"]})).status_code == 201
    # The sender's own limit holds in a community they start next.
    second = await api(client, "POST", "/api/v1/communities", {"name": "Second circle", "vision": "", "time_zone": "UTC"})
    assert second.status_code == 201, second.text
    again = await api(client, "POST", f"/api/v1/communities/{second.json()['id']}/members", {"addresses": ["b1@x.org"]})
    assert again.status_code == 429 and "you have invited 3 today" in again.json()["detail"]


async def test_who_may_start_a_community_is_a_setting(settings, db: AsyncSession) -> None:
    import msgspec

    from safespace.app import create_app

    await make_community(db)
    operators_only = msgspec.structs.replace(settings, community_creators="operators")
    async with browser_like(create_app(operators_only)) as client:
        await sign_in(client, db, "fac@x.org")
        page = await client.get("/communities")
        assert 'href="/communities/new"' not in page.text and "started by the people who run it" in page.text
        assert (await client.get("/communities/new")).status_code == 403
        refused = await post_form(client, "/communities", {"name": "Mine", "vision": "", "min_group_size": "5", "time_zone": "UTC"})
        assert refused.status_code == 403
        api_refused = await api(client, "POST", "/api/v1/communities", {"name": "Mine", "vision": "", "time_zone": "UTC"})
        assert api_refused.status_code == 403 and "started by the people who run it" in api_refused.json()["detail"]
    assert await db.scalar(select(func.count()).select_from(Community).where(Community.name == "Mine")) == 0


async def test_anyone_signed_in_may_start_a_community_by_default(client, db: AsyncSession) -> None:
    """SAFESPACE_COMMUNITY_CREATORS=anyone (the default): the link, the form and the route work."""
    await services.get_or_create_person(db, "new@x.org")
    await db.commit()
    await sign_in(client, db, "new@x.org")
    page = await client.get("/communities")
    assert 'href="/communities/new"' in page.text and "Start one, or ask a facilitator" in page.text
    assert (await client.get("/communities/new")).status_code == 200
    made = await post_form(client, "/communities", {"name": "Mine", "vision": "", "min_group_size": "5", "comment_threshold": "10", "time_zone": "UTC"})
    assert made.status_code == 303, made.text


async def test_when_operators_start_communities_the_page_says_so_and_offers_no_way_in(settings, db: AsyncSession) -> None:
    """Issue 17 item 10: with SAFESPACE_COMMUNITY_CREATORS=operators nothing invites a member to
    start one, and the form's address answers 403 with a page that explains and says what to do."""
    import msgspec

    from safespace.app import create_app

    await services.get_or_create_person(db, "new@x.org")
    await db.commit()
    operators_only = msgspec.structs.replace(settings, community_creators="operators")
    async with browser_like(create_app(operators_only)) as client:
        await sign_in(client, db, "new@x.org")
        page = await client.get("/communities")
        assert "Start a community" not in page.text and "Start one" not in page.text  # no community yet, no false hint
        assert "Ask a facilitator to invite you." in page.text
        refused = await client.get("/communities/new")
        assert refused.status_code == 403 and refused.headers["content-type"].startswith("text/html")
        assert "communities are started by the people who run it. Ask them to start one for you." in refused.text
        spanish = await client.get("/communities/new", headers={"accept-language": "es"})
        assert spanish.status_code == 403 and '<html lang="es">' in spanish.text
        assert "Pide a un facilitador que te invite." in (await client.get("/communities", headers={"accept-language": "es"})).text
