"""A member deletes their own account (issue 20 item 4): what goes, what stays, and when it is
refused, through the profile page on both databases."""

from __future__ import annotations

from datetime import timedelta
from zoneinfo import ZoneInfo

from sqlalchemy import func, select, update
from sqlalchemy.ext.asyncio import async_sessionmaker

from safespace import clock, schedule
from safespace.audit.models import AuditEntry
from safespace.identity import services as identity
from safespace.identity.models import Community, LoginLink, Membership, Person, WebSession
from safespace.privacy.crypto import Keyring
from safespace.pulse import services as pulse_services
from safespace.pulse.models import Round, Tally
from tests.helpers import csrf, make_community, sign_in
from tests.safespace.checkin.conftest import MEMBERS, Meeting
from tests.safespace.pulse.conftest import answers


async def _count(meeting: Meeting, model, *where) -> int:
    meeting.db.expire_all()
    return await meeting.db.scalar(select(func.count()).select_from(model).where(*where)) or 0


async def _delete(meeting: Meeting, email: str, typed: str):
    client = await meeting.browser(email)
    page = await client.get("/profile")
    assert "Delete your account" in page.text
    return await client.post("/profile/delete", data={"confirm_email": typed, "_csrf_token": csrf(client)})


async def test_a_member_deletes_their_account_and_the_totals_they_answered_into_stay(meeting: Meeting, engine, settings) -> None:
    cid = meeting.community_id
    today = clock.now().astimezone(ZoneInfo("Europe/Madrid")).date()
    form = pulse_services.CadenceForm("weekly", today.weekday(), 1, 3, today.isoformat())
    await pulse_services.create_survey(meeting.db, cid, "Europe/Madrid", "Pulse", ["psychological_safety"], form)
    await meeting.db.commit()
    sessionmaker, keyring = async_sessionmaker(engine, expire_on_commit=False), Keyring.load(settings.encryption_key_path)
    assert (await schedule.tick(sessionmaker, keyring, None)).opened == 1
    round_ = await meeting.db.scalar(select(Round).where(Round.community_id == cid))
    round_id, closes_at = round_.id, round_.closes_at  # the test expires the ORM objects to read afresh
    for email in MEMBERS[:5]:
        assert (await meeting.post(email, f"/c/{cid}/rounds/{round_id}", answers(4))).status_code == 303
    await schedule.tick(sessionmaker, keyring, None, moment=closes_at + timedelta(seconds=1))
    respondents = await meeting.db.scalar(select(Tally.respondents).where(Tally.round_id == round_id, Tally.group_key == "community"))
    assert respondents == 5
    leaving = MEMBERS[0]
    person_id = await meeting.db.scalar(select(Person.id).where(Person.email == leaving))
    # Deactivated once and back: the audit log names them in what was done.
    membership_id = await meeting.db.scalar(select(Membership.id).where(Membership.person_id == person_id))
    for action in ("deactivate", "reactivate"):
        changed = await meeting.post(meeting.world.facilitator, f"/c/{cid}/members/{membership_id}", {"action": action})
        assert changed.status_code == 303
    assert leaving in (await (await meeting.browser(meeting.world.facilitator)).get(f"/c/{cid}/audit")).text
    client = await meeting.browser(leaving)

    wrong = await _delete(meeting, leaving, "someone@else.org")
    assert wrong.status_code == 422 and "Type your address exactly as shown above" in wrong.text
    assert await _count(meeting, Person, Person.id == person_id) == 1

    gone = await _delete(meeting, leaving, leaving.upper())  # an address's case is not its identity
    assert gone.status_code == 200 and "Your account is deleted" in gone.text
    assert leaving not in gone.text  # the page is drawn signed out
    assert 'safespace_session=""' in gone.headers.get("set-cookie", "") or "Max-Age=0" in gone.headers.get("set-cookie", "")
    for model, column in ((Person, Person.id), (Membership, Membership.person_id), (WebSession, WebSession.person_id), (LoginLink, LoginLink.person_id)):
        assert await _count(meeting, model, column == person_id) == 0, model
    # The old session's cookie, sent again, opens nothing.
    assert (await client.get("/profile")).status_code in (302, 303, 401)
    log = (await (await meeting.browser(meeting.world.facilitator)).get(f"/c/{cid}/audit")).text
    assert leaving not in log and "deactivate a deleted account" in log and "reactivate a deleted account" in log
    # The totals stay as they were, and the results page still shows them.
    assert await meeting.db.scalar(select(Tally.respondents).where(Tally.round_id == round_id, Tally.group_key == "community")) == 5
    results = await (await meeting.browser(MEMBERS[1])).get(f"/c/{cid}/rounds/{round_id}/results")
    assert results.status_code == 200 and "5 people answered" in results.text.replace("\n", " ")


async def test_the_only_facilitator_is_refused_until_another_takes_over_and_the_log_loses_their_address(meeting: Meeting) -> None:
    cid, fac = meeting.community_id, meeting.world.facilitator
    saved = await meeting.post(fac, f"/c/{cid}/settings/retention", {"retention_days": "365"})  # an act the log keeps
    assert saved.status_code == 303
    assert await _count(meeting, AuditEntry, AuditEntry.actor == fac) == 1

    refused = await _delete(meeting, fac, fac)
    assert refused.status_code == 409
    assert "You are the only facilitator of Coastal Planners" in refused.text
    assert await _count(meeting, Person, Person.email == fac) == 1

    await meeting.db.execute(
        update(Membership)
        .where(Membership.community_id == cid, Membership.person_id == select(Person.id).where(Person.email == MEMBERS[1]).scalar_subquery())
        .values(role="facilitator")
    )
    await meeting.db.commit()
    assert (await _delete(meeting, fac, fac)).status_code == 200
    assert await _count(meeting, Person, Person.email == fac) == 0
    assert await _count(meeting, Community, Community.id == cid) == 1  # the community stays, with its new facilitator
    assert await _count(meeting, AuditEntry, AuditEntry.actor == fac) == 0
    log = (await (await meeting.browser(MEMBERS[1])).get(f"/c/{cid}/audit")).text
    assert fac not in log and "a deleted account" in log and "a facilitator deleted their account" in log


async def test_a_community_of_one_goes_with_its_only_member(meeting: Meeting) -> None:
    world = await make_community(meeting.db, name="Solo", facilitator="solo@x.org")
    invited, _new = await identity.get_or_create_person(meeting.db, "not-yet@x.org")
    identity.add_membership(meeting.db, world.community.id, invited.id, None, "invited")  # has not accepted: no member yet
    await meeting.db.commit()
    solo = meeting.new_browser()
    await sign_in(solo, meeting.db, "solo@x.org")
    await solo.get("/profile")
    gone = await solo.post("/profile/delete", data={"confirm_email": "solo@x.org", "_csrf_token": csrf(solo)})
    assert gone.status_code == 200
    assert await _count(meeting, Community, Community.id == world.community.id) == 0
    assert await _count(meeting, Community, Community.id == meeting.community_id) == 1  # others' untouched
