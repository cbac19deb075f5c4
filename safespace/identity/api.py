"""JSON API (/api/v1) over the same services as the pages: communities, teams, members."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Literal

import msgspec
from litestar import Controller, Router, get, patch, post
from litestar.di import NamedDependency
from litestar.exceptions import NotFoundException
from litestar.params import FromPath, JSONBody
from sqlalchemy.ext.asyncio import AsyncSession

from safespace import i18n
from safespace.audit import entries as audit
from safespace.errors import InvalidInput, Refused
from safespace.i18n import gettext as _
from safespace.identity import members, services, signin
from safespace.identity.mail import Postman
from safespace.identity.models import Community, Membership, Team
from safespace.identity.roster_pages import roster_api
from safespace.settings import Settings
from safespace.web.errors import handle_invalid_input, handle_refused, problem, problem_responses
from safespace.web.guards import community_routes, may_create_communities
from safespace.web.session import Viewer

# --- schemas --------------------------------------------------------------------------------


class CommunityOut(msgspec.Struct):
    id: uuid.UUID
    name: str
    vision: str
    min_group_size: int
    comment_threshold: int
    time_zone: str
    created_at: datetime
    role: str

    @classmethod
    def of(cls, community: Community, role: str) -> CommunityOut:
        return cls(
            community.id, community.name, community.vision, community.min_group_size,
            community.comment_threshold, community.time_zone, community.created_at, role,
        )


class CommunityIn(msgspec.Struct, forbid_unknown_fields=True):
    name: str
    vision: str = ""
    min_group_size: int | None = None  # None: the installation's default
    comment_threshold: int | None = None  # None: 10, or k when k is larger
    time_zone: str = "UTC"


class CommunityPatch(msgspec.Struct, forbid_unknown_fields=True):
    name: str | None = None
    vision: str | None = None
    min_group_size: int | None = None
    comment_threshold: int | None = None
    time_zone: str | None = None


class TeamOut(msgspec.Struct):
    id: uuid.UUID
    name: str

    @classmethod
    def of(cls, team: Team) -> TeamOut:
        return cls(team.id, team.name)


class TeamIn(msgspec.Struct, forbid_unknown_fields=True):
    name: str


class MemberOut(msgspec.Struct):
    id: uuid.UUID
    email: str
    display_name: str
    team: TeamOut | None
    role: str
    status: str

    @classmethod
    def of(cls, m: Membership) -> MemberOut:
        # Until they accept, an invitee's name is not this community's to see: it was set for
        # another community, and showing it would tell an inviter that the address has an account.
        name = m.person.display_name if m.accepted else ""
        return cls(m.id, m.person.email, name, TeamOut.of(m.team) if m.team else None, m.role, m.status)


class InviteIn(msgspec.Struct, forbid_unknown_fields=True):
    addresses: list[str] | str
    team_id: uuid.UUID | None = None


class InviteOut(msgspec.Struct):
    invited: list[MemberOut]
    already_members: list[str]
    invalid: list[str]
    not_mailed: list[str]  # invited, but the mail server refused the invitation: invite them again later


class MemberPatch(msgspec.Struct, forbid_unknown_fields=True):
    status: Literal["active", "deactivated"] | None = None
    role: Literal["member", "facilitator"] | None = None
    team_id: uuid.UUID | None | msgspec.UnsetType = msgspec.UNSET


# --- routes ---------------------------------------------------------------------------------


class CommunitiesApi(Controller):
    path = "/communities"
    tags = ["communities"]

    @get("/", responses=problem_responses(401))
    async def list_communities(
        self, viewer: NamedDependency[Viewer], db_session: NamedDependency[AsyncSession]
    ) -> list[CommunityOut]:
        memberships = await members.memberships_of(db_session, viewer.person_id)
        return [CommunityOut.of(m.community, m.role) for m in memberships if m.status == "active"]

    @post("/", responses=problem_responses(400, 401, 403, 409, 422))
    async def create_community(
        self,
        data: JSONBody[CommunityIn],
        viewer: NamedDependency[Viewer],
        db_session: NamedDependency[AsyncSession],
        settings: NamedDependency[Settings],
    ) -> CommunityOut:
        may_create_communities(settings.community_creators)
        k = settings.default_min_group_size if data.min_group_size is None else data.min_group_size
        community = await services.create_community(
            db_session, viewer.person_id, data.name, data.vision, k, data.time_zone, data.comment_threshold
        )
        return CommunityOut.of(community, "facilitator")

    @get("/{community_id:uuid}", responses=problem_responses(400, 401, 404))
    async def get_community(self, membership: NamedDependency[Membership]) -> CommunityOut:
        return CommunityOut.of(membership.community, membership.role)

    @patch("/{community_id:uuid}", responses=problem_responses(400, 401, 403, 404, 409, 422))
    async def update_community(
        self,
        data: JSONBody[CommunityPatch],
        facilitation: NamedDependency[Membership],
        db_session: NamedDependency[AsyncSession],
    ) -> CommunityOut:
        c = facilitation.community
        before = audit.settings_of(c)
        await services.update_community(
            db_session,
            c,
            name=c.name if data.name is None else data.name,
            vision=c.vision if data.vision is None else data.vision,
            min_group_size=c.min_group_size if data.min_group_size is None else data.min_group_size,
            time_zone=c.time_zone if data.time_zone is None else data.time_zone,
            comment_threshold=data.comment_threshold,
        )
        await audit.settings_changed(db_session, c, facilitation.person.email, before)
        return CommunityOut.of(c, facilitation.role)

    @get("/{community_id:uuid}/teams", responses=problem_responses(400, 401, 403, 404))
    async def list_teams(
        self, facilitation: NamedDependency[Membership], db_session: NamedDependency[AsyncSession]
    ) -> list[TeamOut]:
        return [TeamOut.of(t) for t in await services.teams_of(db_session, facilitation.community_id)]

    @post("/{community_id:uuid}/teams", responses=problem_responses(400, 401, 403, 404, 409, 422))
    async def create_team(
        self,
        data: JSONBody[TeamIn],
        facilitation: NamedDependency[Membership],
        db_session: NamedDependency[AsyncSession],
    ) -> TeamOut:
        return TeamOut.of(await services.create_team(db_session, facilitation.community_id, data.name))

    @patch("/{community_id:uuid}/teams/{team_id:uuid}", responses=problem_responses(400, 401, 403, 404, 409, 422))
    async def rename_team(
        self,
        team_id: FromPath[uuid.UUID],
        data: JSONBody[TeamIn],
        facilitation: NamedDependency[Membership],
        db_session: NamedDependency[AsyncSession],
    ) -> TeamOut:
        try:
            team = await services.rename_team(db_session, facilitation.community_id, team_id, data.name)
        except InvalidInput as exc:
            if "team" in exc.errors:
                raise NotFoundException(exc.errors["team"]) from None
            raise
        return TeamOut.of(team)

    @get("/{community_id:uuid}/members", responses=problem_responses(400, 401, 403, 404))
    async def list_members(
        self, facilitation: NamedDependency[Membership], db_session: NamedDependency[AsyncSession]
    ) -> list[MemberOut]:
        return [MemberOut.of(m) for m in await members.roster(db_session, facilitation.community_id)]

    @post("/{community_id:uuid}/members", responses=problem_responses(400, 401, 403, 404, 409, 422, 429))
    async def invite_members(
        self,
        data: JSONBody[InviteIn],
        facilitation: NamedDependency[Membership],
        viewer: NamedDependency[Viewer],
        db_session: NamedDependency[AsyncSession],
        postman: NamedDependency[Postman],
        secret: NamedDependency[bytes],
    ) -> InviteOut:
        result = await members.invite(db_session, facilitation.community_id, data.addresses, data.team_id)
        # Over the day's limit: a 429 problem (handle_too_many_invitations), nothing written.
        await signin.count_invitations(db_session, secret, facilitation.community_id, viewer.person_id, len(result.invited))
        tokens = [
            await signin.issue_link(db_session, m.person_id, m.community_id, ttl=signin.INVITATION_LINK_TTL)
            for m in result.invited
        ]
        await db_session.commit()
        not_mailed = [
            membership.person.email
            for membership, token in zip(result.invited, tokens, strict=True)
            if not await postman.invitation(membership, token, viewer.name, i18n.current_language())
        ]
        return InviteOut([MemberOut.of(m) for m in result.invited], result.already_members, result.invalid, not_mailed)

    @patch("/{community_id:uuid}/members/{membership_id:uuid}", responses=problem_responses(400, 401, 403, 404, 409, 422))
    async def change_member(
        self,
        membership_id: FromPath[uuid.UUID],
        data: JSONBody[MemberPatch],
        facilitation: NamedDependency[Membership],
        db_session: NamedDependency[AsyncSession],
    ) -> MemberOut:
        changes = {"status": data.status, "role": data.role}
        if data.team_id is not msgspec.UNSET:
            changes["team_id"] = data.team_id
        try:
            member = await members.change_member(db_session, facilitation.community_id, membership_id, **changes)
        except LookupError:
            raise NotFoundException(_("That person is not a member of this community.")) from None
        await audit.member_changed(db_session, facilitation.community_id, facilitation.person.email, member.person.email, status=data.status, role=data.role)
        return MemberOut.of(member)


api_router = Router(
    path="/api/v1",
    route_handlers=[CommunitiesApi, roster_api],
    dependencies=community_routes(),
    exception_handlers={
        InvalidInput: handle_invalid_input,
        Refused: handle_refused,
        signin.TooManyInvitations: lambda _request, exc: problem(429, _("Too many invitations today"), str(exc)),
    },
)
