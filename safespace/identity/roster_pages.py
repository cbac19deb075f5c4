"""The roster import's pages: upload a CSV, see what it would do, then apply it (identity/roster.py)."""

from __future__ import annotations

from typing import Annotated, Any

import msgspec
from litestar import Controller, Request, get, post
from litestar.datastructures import UploadFile
from litestar.di import NamedDependency
from litestar.enums import RequestEncodingType
from litestar.params import Body, FromQuery
from litestar.response import Redirect, Template
from sqlalchemy.ext.asyncio import AsyncSession

from safespace import i18n
from safespace.errors import InvalidInput
from safespace.i18n import gettext as _
from safespace.identity import roster, signin
from safespace.identity.mail import Postman
from safespace.identity.models import Membership
from safespace.identity.sign_in_pages import Form
from safespace.web.errors import problem_responses
from safespace.web.guards import facilitator_routes
from safespace.web.pages import form_text, page, see_other
from safespace.web.session import Viewer, flash

Upload = Annotated[dict[str, Any], Body(media_type=RequestEncodingType.MULTI_PART)]


class RosterController(Controller):
    include_in_schema = False
    path = "/c/{community_id:uuid}/members/import"
    dependencies = facilitator_routes()

    @get("/", name="roster:form")
    async def form(self, facilitation: NamedDependency[Membership]) -> Template:
        return page("identity/roster.html", community=facilitation.community, plan=None, error=None, text="", deactivate=False)

    @post("/", name="roster:preview")
    async def preview(self, data: Upload, facilitation: NamedDependency[Membership], db_session: NamedDependency[AsyncSession]) -> Template:
        upload = data.get("file")
        raw = await upload.read() if isinstance(upload, UploadFile) else b""
        deactivate = form_text(data, "deactivate") == "yes"
        return await self._preview(db_session, facilitation, raw, deactivate)

    async def _preview(self, db: AsyncSession, facilitation: Membership, raw: bytes, deactivate: bool) -> Template:
        community = facilitation.community
        try:
            rows = roster.read_rows(raw)
        except roster.RosterRefused as exc:
            return page("identity/roster.html", status_code=422, community=community, plan=None, error=str(exc), text="", deactivate=deactivate)
        planned = await roster.plan(db, community.id, rows)
        return page("identity/roster.html", community=community, plan=planned, error=None, text=raw.decode("utf-8-sig"), deactivate=deactivate)

    @post("/apply", name="roster:apply")
    async def apply(
        self,
        request: Request,
        data: Form,
        facilitation: NamedDependency[Membership],
        viewer: NamedDependency[Viewer],
        db_session: NamedDependency[AsyncSession],
        postman: NamedDependency[Postman],
        secret: NamedDependency[bytes],
    ) -> Template | Redirect:
        """The previewed file again (sent back with the preview), read and planned afresh, then applied."""
        raw, deactivate = form_text(data, "roster").encode(), form_text(data, "deactivate") == "yes"
        community_id = facilitation.community_id
        try:
            planned = await roster.plan(db_session, community_id, roster.read_rows(raw))
            invited = await roster.apply_and_record(db_session, community_id, planned, deactivate, viewer.email)
            await signin.count_invitations(db_session, secret, community_id, viewer.person_id, len(invited))
        except (roster.RosterRefused, signin.TooManyInvitations) as exc:
            await db_session.rollback()
            await db_session.refresh(facilitation, ["community"])
            return page("identity/roster.html", status_code=422, community=facilitation.community, plan=None, error=str(exc), text="",
                        deactivate=deactivate)  # fmt: skip
        deactivated = len(planned.missing) if deactivate else 0
        await db_session.commit()  # invitations exist before the mails that announce them
        language = i18n.current_language()
        sent = [await postman.invitation(m, t, viewer.name, language) for m, t in invited]
        message = _("Roster applied: %(invited)s invited, %(moved)s moved to another team, %(gone)s deactivated.") % {
            "invited": sum(sent), "moved": len(planned.changed_team), "gone": deactivated}  # fmt: skip
        await flash(db_session, viewer, message, "success" if all(sent) else "warning")
        return see_other(request.app.route_reverse("community:members", community_id=community_id))


class RosterChange(msgspec.Struct):
    email: str
    before: str
    after: str


class RosterRowError(msgspec.Struct):
    line: int
    value: str
    reason: str


class RosterOut(msgspec.Struct):
    """What the roster does (applied=false: would do). Teams are names; an empty string is no team."""

    applied: bool
    new: list[str]
    changed_team: list[RosterChange]
    unchanged: int
    errors: list[RosterRowError]
    missing: list[str]
    deactivated: int
    invited: int


@post("/communities/{community_id:uuid}/roster", media_type="application/json", status_code=200,
      responses=problem_responses(400, 401, 403, 404, 422, 429), tags=["members"])  # fmt: skip
async def roster_api(
    request: Request,
    facilitation: NamedDependency[Membership],
    viewer: NamedDependency[Viewer],
    db_session: NamedDependency[AsyncSession],
    postman: NamedDependency[Postman],
    secret: NamedDependency[bytes],
    apply: FromQuery[bool] = False,
    deactivate_missing: FromQuery[bool] = False,
) -> RosterOut:
    """Send the CSV file as the body (text/csv, UTF-8). Without apply=true nothing changes."""
    try:
        planned = await roster.plan(db_session, facilitation.community_id, roster.read_rows(await request.body()))
    except roster.RosterRefused as exc:
        raise InvalidInput({"file": str(exc)}) from None
    invited: list[tuple[Membership, str]] = []
    if apply:
        invited = await roster.apply_and_record(db_session, facilitation.community_id, planned, deactivate_missing, viewer.email)
        await signin.count_invitations(db_session, secret, facilitation.community_id, viewer.person_id, len(invited))
        await db_session.commit()
        for membership, token in invited:
            await postman.invitation(membership, token, viewer.name, i18n.current_language())
    return RosterOut(
        applied=apply,
        new=[row.email for row in planned.new],
        changed_team=[RosterChange(row.email, before, row.team) for row, before in planned.changed_team],
        unchanged=len(planned.unchanged),
        errors=[RosterRowError(line, value, why) for line, value, why in planned.errors],
        missing=planned.missing,
        deactivated=len(planned.missing) if apply and deactivate_missing else 0,
        invited=len(invited),
    )
