"""Dependencies and guards: the request's session, the viewer, membership and facilitation."""

from __future__ import annotations

import uuid

# A private name, but no public accessor exists for the request's session; the version is pinned.
from litestar import Request
from litestar.di import NamedDependency, Provide
from litestar.exceptions import (
    NotAuthorizedException,
    NotFoundException,
    PermissionDeniedException,
)
from litestar.params import FromPath
from sqlalchemy.ext.asyncio import AsyncSession

from safespace import i18n
from safespace.db.engine import Reads
from safespace.identity.members import active_membership
from safespace.identity.models import Membership
from safespace.web.session import Place, Viewer

DATABASE_STATE_KEY = "database"  # app.state: the SQLAlchemy plugin's config (create_app)
READS_STATE_KEY = "reads"  # app.state: the app's db.engine.Reads, for every-visit reads on bare connections


def request_session(request: Request) -> AsyncSession:
    """The request's database session, made on first use: the one `db_session` injects, committed
    or rolled back and closed when the response is sent. For a route that needs the database
    only on some paths (a dependency is made for every request, and several at once cost an
    anyio task group)."""
    return request.app.state[DATABASE_STATE_KEY].provide_session(request.app.state, request.scope)


def request_reads(request: Request) -> Reads:
    return request.app.state[READS_STATE_KEY]


def provide_viewer(request: Request) -> Viewer:
    if request.user is None:
        raise NotAuthorizedException(i18n.gettext("Sign in to continue."))
    return request.user


async def provide_membership(
    community_id: FromPath[uuid.UUID], request: Request, db_session: NamedDependency[AsyncSession]
) -> Membership:
    """The viewer's active membership here. Any other community is 'not found', not 'forbidden'."""
    return await require_membership(db_session, provide_viewer(request).person_id, community_id)


async def require_membership(db: AsyncSession, person_id: uuid.UUID, community_id: uuid.UUID) -> Membership:
    membership = await active_membership(db, person_id, community_id)
    if membership is None:
        raise no_community()
    return membership


def no_community() -> NotFoundException:
    return NotFoundException(i18n.gettext("There is no community at this address."))


def _facilitators_only(role: str) -> None:
    if role != "facilitator":
        raise PermissionDeniedException(i18n.gettext("Only the community's facilitators can do this."))


async def provide_facilitation(
    community_id: FromPath[uuid.UUID], request: Request, db_session: NamedDependency[AsyncSession]
) -> Membership:
    membership = await provide_membership(community_id, request, db_session)
    _facilitators_only(membership.role)
    return membership


def facilitator_place(request: Request, community_id: uuid.UUID) -> Place:
    """provide_facilitation's check, answered from the viewer's places: the active memberships
    read with the session at the start of this request. No query and no Membership object, for
    a page that needs nothing more of the membership (the trend page, on every visit)."""
    place = member_place(request, community_id)
    _facilitators_only(place.role)
    return place


def member_place(request: Request, community_id: uuid.UUID) -> Place:
    """provide_membership's check, answered from the viewer's places (see facilitator_place)."""
    place = next((p for p in provide_viewer(request).places if p.community_id == community_id), None)
    if place is None:
        raise no_community()
    return place


def member_routes() -> dict[str, Provide]:
    """Dependencies of routes under a community for any active member (404 for strangers)."""
    return {"viewer": Provide(provide_viewer, sync_to_thread=False), "membership": Provide(provide_membership)}


def facilitator_routes() -> dict[str, Provide]:
    """Dependencies of routes under a community for its facilitators (403 for members)."""
    return {"viewer": Provide(provide_viewer, sync_to_thread=False), "facilitation": Provide(provide_facilitation)}


def community_routes() -> dict[str, Provide]:
    """Both, for controllers that mix member and facilitator routes."""
    return member_routes() | facilitator_routes()


def may_create_communities(creators: str) -> None:
    """SAFESPACE_COMMUNITY_CREATORS: "anyone" signed in, or "operators" (the CLI) only."""
    if creators != "anyone":
        raise PermissionDeniedException(i18n.gettext("On this Safespace, communities are started by the people who run it. Ask them to start one for you."))
