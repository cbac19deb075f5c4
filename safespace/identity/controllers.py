"""HTML pages for profiles, communities, teams and members."""

from __future__ import annotations

import logging
import uuid
from typing import Any

from litestar import Controller, Request, get, post
from litestar.di import NamedDependency, Provide
from litestar.exceptions import NotFoundException
from litestar.params import FromPath, FromQuery, URLEncodedBody
from litestar.response import Redirect, Template
from sqlalchemy.ext.asyncio import AsyncSession

from safespace import clock, i18n, retention
from safespace.audit import entries as audit
from safespace.chat import services as chat_services
from safespace.errors import InvalidInput, Refused
from safespace.i18n import gettext as _
from safespace.identity import account, members, services, signin
from safespace.identity.mail import Postman
from safespace.identity.models import Community, Membership
from safespace.settings import Settings
from safespace.web.guards import community_routes, may_create_communities, provide_viewer
from safespace.web.pages import form_text, page, see_other
from safespace.web.paths import local_path
from safespace.web.session import Viewer, flash, forget_session_cookies
from surveys.disclosure import DEFAULT_COMMENT_THRESHOLD

log = logging.getLogger(__name__)


Form = URLEncodedBody[dict[str, Any]]


class ProfileController(Controller):
    include_in_schema = False
    path = "/profile"
    dependencies = {"viewer": Provide(provide_viewer, sync_to_thread=False)}

    @get("/")
    async def show(self, viewer: NamedDependency[Viewer]) -> Template:
        values = {"display_name": viewer.display_name, "language": viewer.language or ""}
        return page("identity/profile.html", values=values, errors={})

    @post("/")
    async def save(
        self,
        request: Request,
        data: Form,
        viewer: NamedDependency[Viewer],
        db_session: NamedDependency[AsyncSession],
    ) -> Template | Redirect:
        values = {"display_name": form_text(data, "display_name"), "language": form_text(data, "language")}
        try:
            await services.update_profile(db_session, viewer.person_id, **values)
        except InvalidInput as exc:
            return page("identity/profile.html", status_code=422, values=values, errors=exc.errors)
        i18n.set_language(values["language"] or i18n.negotiate(request.headers.get("accept-language")))
        await flash(db_session, viewer, _("Your profile is saved."))
        return see_other("/profile")

    @post("/delete", name="profile:delete")
    async def delete_account(
        self, request: Request, data: Form, viewer: NamedDependency[Viewer], db_session: NamedDependency[AsyncSession]
    ) -> Template:
        """Delete the signed-in person's account (identity/account.py says what goes and what stays)."""
        typed = form_text(data, "confirm_email")
        values = {"display_name": viewer.display_name, "language": viewer.language or "", "confirm_email": typed}
        try:
            await account.delete_account(db_session, viewer.person_id, typed)
        except InvalidInput as exc:
            return page("identity/profile.html", status_code=422, values=values, errors=exc.errors)
        except Refused as exc:
            return page("identity/profile.html", status_code=409, values=values, errors={"confirm_email": str(exc)})
        request.scope["user"] = None  # the page is drawn signed out: the session went with the account
        response = page("identity/account_deleted.html")
        forget_session_cookies(response)
        return response

    @post("/language", name="profile:language")
    async def choose_language(self, data: Form, viewer: NamedDependency[Viewer], db_session: NamedDependency[AsyncSession]) -> Redirect:
        """The language links at the foot of every signed-in page: back to the page they were on."""
        try:
            await services.choose_language(db_session, viewer.person_id, form_text(data, "language"))
        except InvalidInput as exc:
            raise NotFoundException(next(iter(exc.errors.values()))) from None
        return see_other(local_path(form_text(data, "next")) or "/")


COMMUNITY_FIELDS = ("name", "vision", "min_group_size", "comment_threshold", "time_zone")
COMMUNITY_DEFAULTS = {"name": "", "vision": "", "time_zone": "UTC", "comment_threshold": DEFAULT_COMMENT_THRESHOLD}


class CommunitiesController(Controller):
    include_in_schema = False
    path = "/communities"
    dependencies = {"viewer": Provide(provide_viewer, sync_to_thread=False)}

    @get("/")
    async def index(
        self, viewer: NamedDependency[Viewer], db_session: NamedDependency[AsyncSession], settings: NamedDependency[Settings]
    ) -> Template:
        memberships = await members.memberships_of(db_session, viewer.person_id)
        return page("identity/communities.html", memberships=memberships, may_create=settings.community_creators == "anyone")

    @post("/{community_id:uuid}/accept")
    async def accept(
        self,
        request: Request,
        community_id: FromPath[uuid.UUID],
        viewer: NamedDependency[Viewer],
        db_session: NamedDependency[AsyncSession],
    ) -> Redirect:
        """A signed-in person accepts an invitation they can see on their communities page."""
        if not await members.accept_invitation(db_session, viewer.person_id, community_id):
            raise NotFoundException(_("There is no invitation to this community for you."))
        return see_other(request.app.route_reverse("community:home", community_id=community_id))

    @get("/new")
    async def new(self, settings: NamedDependency[Settings], viewer: NamedDependency[Viewer]) -> Template:
        # `viewer` is asked for only to require a session: a controller's dependency guards only
        # the handlers that name it, and signed out this form could never be sent.
        may_create_communities(settings.community_creators)
        k = settings.default_min_group_size
        values = COMMUNITY_DEFAULTS | {"min_group_size": k, "comment_threshold": max(k, DEFAULT_COMMENT_THRESHOLD)}
        return page("identity/community_form.html", values=values, errors={}, community=None)

    @post("/")
    async def create(
        self,
        request: Request,
        data: Form,
        viewer: NamedDependency[Viewer],
        db_session: NamedDependency[AsyncSession],
        settings: NamedDependency[Settings],
    ) -> Template | Redirect:
        may_create_communities(settings.community_creators)
        values = {key: form_text(data, key) for key in COMMUNITY_FIELDS}
        try:
            community = await services.create_community(db_session, viewer.person_id, **values)
        except InvalidInput as exc:
            return page("identity/community_form.html", status_code=422, values=values, errors=exc.errors, community=None)
        await signin.remember_community(db_session, viewer.session_id, viewer.person_id, community.id)
        await flash(db_session, viewer, _("Your community is ready. Add teams, then invite members."))
        return see_other(request.app.route_reverse("community:teams", community_id=community.id))


class CommunityController(Controller):
    """One community's pages; every route checks membership (404 for strangers)."""

    include_in_schema = False

    path = "/c/{community_id:uuid}"
    dependencies = community_routes()

    # --- settings ---

    @get("/settings", name="community:settings")
    async def settings_form(self, facilitation: NamedDependency[Membership], db_session: NamedDependency[AsyncSession]) -> Template:
        c = facilitation.community
        return await _settings_page(db_session, c, {key: getattr(c, key) for key in COMMUNITY_FIELDS})

    @post("/settings/retention", name="retention:set")
    async def set_retention(
        self,
        request: Request,
        data: Form,
        facilitation: NamedDependency[Membership],
        viewer: NamedDependency[Viewer],
        db_session: NamedDependency[AsyncSession],
    ) -> Template | Redirect:
        """Set how long results and stories are kept. Where that would delete something at the next
        pass, the page first says how much and asks again: nothing deleted can be brought back."""
        c = facilitation.community
        try:
            days = retention.parse_days(form_text(data, "retention_days"))
        except InvalidInput as exc:
            await flash(db_session, viewer, exc.errors["retention_days"])
            return see_other(request.app.route_reverse("community:settings", community_id=c.id) + "#retention")
        due = await retention.due(db_session, c, days, clock.now()) if days else retention.Expired()
        if due and form_text(data, "confirm") != "yes":
            values = {key: getattr(c, key) for key in COMMUNITY_FIELDS}
            return await _settings_page(db_session, c, values, asked={"asked": days, "asked_due": due})
        if await retention.set_days(db_session, c, days, viewer.email):
            await flash(db_session, viewer, _("Kept for %(days)d days from now on.", days=days) if days else _("Results and stories are kept until someone deletes them."))
        return see_other(request.app.route_reverse("community:settings", community_id=c.id) + "#retention")

    @post("/settings")
    async def save_settings(
        self,
        request: Request,
        data: Form,
        facilitation: NamedDependency[Membership],
        viewer: NamedDependency[Viewer],
        db_session: NamedDependency[AsyncSession],
    ) -> Template | Redirect:
        c = facilitation.community
        values = {key: form_text(data, key) for key in COMMUNITY_FIELDS}
        before = audit.settings_of(c)
        try:
            await services.update_community(db_session, c, **values)
        except InvalidInput as exc:
            return await _settings_page(db_session, c, values, exc.errors, status=422)
        await audit.settings_changed(db_session, c, viewer.email, before)
        await flash(db_session, viewer, _("Community settings saved."))
        return see_other(request.app.route_reverse("community:settings", community_id=c.id))

    # --- teams ---

    async def _teams_page(self, db: AsyncSession, membership: Membership, status: int = 200, **extra: Any) -> Template:
        teams = await services.teams_of(db, membership.community_id)
        roster = await members.roster(db, membership.community_id)
        counts = {team.id: sum(1 for m in roster if m.team_id == team.id and m.status != "deactivated") for team in teams}
        context = {"values": {}, "errors": {}, "rename_errors": {}} | extra
        return page(
            "identity/teams.html", status_code=status, community=membership.community, teams=teams, counts=counts, **context
        )

    @get("/teams", name="community:teams")
    async def teams(self, facilitation: NamedDependency[Membership], db_session: NamedDependency[AsyncSession]) -> Template:
        return await self._teams_page(db_session, facilitation)

    @post("/teams")
    async def create_team(
        self,
        request: Request,
        data: Form,
        facilitation: NamedDependency[Membership],
        viewer: NamedDependency[Viewer],
        db_session: NamedDependency[AsyncSession],
    ) -> Template | Redirect:
        name = form_text(data, "name")
        try:
            team = await services.create_team(db_session, facilitation.community_id, name)
        except InvalidInput as exc:
            return await self._teams_page(db_session, facilitation, 422, values={"name": name}, errors=exc.errors)
        await flash(db_session, viewer, _("Team “%(name)s” added.") % {"name": team.name})
        return see_other(request.app.route_reverse("community:teams", community_id=facilitation.community_id))

    @post("/teams/{team_id:uuid}")
    async def rename_team(
        self,
        request: Request,
        team_id: FromPath[uuid.UUID],
        data: Form,
        facilitation: NamedDependency[Membership],
        viewer: NamedDependency[Viewer],
        db_session: NamedDependency[AsyncSession],
    ) -> Template | Redirect:
        name = form_text(data, "name")
        try:
            await services.rename_team(db_session, facilitation.community_id, team_id, name)
        except InvalidInput as exc:  # raised before anything changed
            if "team" in exc.errors:
                raise NotFoundException(exc.errors["team"]) from None
            errors = {str(team_id): exc.errors["name"]}
            return await self._teams_page(db_session, facilitation, 422, rename_errors=errors)
        await flash(db_session, viewer, _("Team renamed to “%(name)s”.") % {"name": " ".join(name.split())})
        return see_other(request.app.route_reverse("community:teams", community_id=facilitation.community_id))

    # --- members ---

    async def _members_page(
        self, db: AsyncSession, membership: Membership, status: int = 200, **extra: Any
    ) -> Template:
        context = {"values": {}, "errors": {}, "invalid": [], "show": "all"} | extra
        listed = await members.roster(db, membership.community_id)
        if context["show"] in ("invited", "active", "deactivated"):
            listed = [m for m in listed if m.status == context["show"]]
        return page(
            "identity/members.html",
            status_code=status,
            community=membership.community,
            me=membership,
            members=listed,
            teams=await services.teams_of(db, membership.community_id),
            **context,
        )

    @get("/members", name="community:members")
    async def members(
        self,
        facilitation: NamedDependency[Membership],
        db_session: NamedDependency[AsyncSession],
        show: FromQuery[str] = "all",
    ) -> Template:
        return await self._members_page(db_session, facilitation, show=show)

    @post("/members")
    async def invite(
        self,
        request: Request,
        data: Form,
        facilitation: NamedDependency[Membership],
        viewer: NamedDependency[Viewer],
        db_session: NamedDependency[AsyncSession],
        postman: NamedDependency[Postman],
        secret: NamedDependency[bytes],
    ) -> Template | Redirect:
        values = {"addresses": str(data.get("addresses", "")), "team": form_text(data, "team")}
        try:
            result = await members.invite(db_session, facilitation.community_id, values["addresses"], values["team"])
            await signin.count_invitations(db_session, secret, facilitation.community_id, viewer.person_id, len(result.invited))
        except InvalidInput as exc:
            return await self._members_page(db_session, facilitation, 422, values=values, errors=exc.errors)
        except signin.TooManyInvitations as exc:
            await db_session.rollback()  # none of these invitations
            await db_session.refresh(facilitation)
            await db_session.refresh(facilitation, ["community"])
            return await self._members_page(db_session, facilitation, 429, values=values, errors={"addresses": str(exc)})
        tokens = [
            await signin.issue_link(db_session, m.person_id, m.community_id, ttl=signin.INVITATION_LINK_TTL)
            for m in result.invited
        ]
        await db_session.commit()  # invitations exist before the mails that announce them
        language = i18n.current_language()
        sent = [
            await postman.invitation(m, t, viewer.name, language) for m, t in zip(result.invited, tokens, strict=True)
        ]
        notice = i18n.ngettext("%(num)d invitation sent.", "%(num)d invitations sent.", sum(sent))
        if result.already_members:
            notice += " " + i18n.ngettext(
                "%(num)d address was already a member and was left as it is.",
                "%(num)d addresses were already members and were left as they are.",
                len(result.already_members),
            )
        if not all(sent):
            notice += " " + _("Some invitations could not be mailed; check the mail settings and invite them again.")
        kind = "success" if all(sent) else "warning"
        if result.invalid:
            # Keep the bad entries in the box so they can be fixed and sent again.
            return await self._members_page(
                db_session,
                facilitation,
                422,
                values={"addresses": "\n".join(result.invalid), "team": values["team"]},
                errors={"addresses": _("These entries are not email addresses; nothing was done with them.")},
                invalid=result.invalid,
                notice={"message": notice, "kind": kind} if result.invited or result.already_members else None,
            )
        await flash(db_session, viewer, notice, kind)
        return see_other(request.app.route_reverse("community:members", community_id=facilitation.community_id))

    @post("/members/{membership_id:uuid}")
    async def change_member(
        self,
        request: Request,
        membership_id: FromPath[uuid.UUID],
        data: Form,
        facilitation: NamedDependency[Membership],
        viewer: NamedDependency[Viewer],
        db_session: NamedDependency[AsyncSession],
    ) -> Redirect:
        community_id = facilitation.community_id  # plain value: a rollback below expires the ORM objects
        action = form_text(data, "action")
        changes: dict[str, Any] = {
            "deactivate": {"status": "deactivated"},
            "reactivate": {"status": "active"},
            "make_facilitator": {"role": "facilitator"},
            "make_member": {"role": "member"},
            "move": {"team_id": form_text(data, "team") or None},
        }.get(action, {})
        if not changes:
            raise NotFoundException(_("That action is not available here."))
        try:
            member = await members.change_member(db_session, facilitation.community_id, membership_id, **changes)
        except LookupError:
            raise NotFoundException(_("That person is not a member of this community.")) from None
        except (Refused, InvalidInput) as exc:
            await db_session.rollback()
            message = str(exc) if isinstance(exc, Refused) else next(iter(exc.errors.values()))
            await flash(db_session, viewer, message, "error")
            return see_other(request.app.route_reverse("community:members", community_id=community_id))
        await audit.member_changed(db_session, community_id, viewer.email, member.person.email, status=changes.get("status"), role=changes.get("role"))
        await flash(db_session, viewer, _("Saved the change for %(who)s.") % {"who": member.person.email})
        return see_other(request.app.route_reverse("community:members", community_id=community_id))


async def _settings_page(
    db: AsyncSession,
    community: Community,
    values: dict[str, Any],
    errors: dict[str, str] | None = None,
    status: int = 200,
    asked: dict[str, Any] | None = None,
) -> Template:
    """The settings page with its chat and retention sections. The retention section holds the age
    chosen, what the next pass deletes under it, the choices, and (`asked`) an age waiting to be confirmed."""
    days = await retention.days_of(db, community.id)
    due = await retention.due(db, community, days, clock.now()) if days else retention.Expired()
    kept = {"days": days, "due": due, "choices": retention.CHOICES, "asked": None} | (asked or {})
    chat = await chat_services.channel_view(db, community)
    return page(
        "identity/community_form.html", status_code=status, values=values, errors=errors or {}, community=community, chat=chat, retention=kept
    )
