"""JSON API for pulse results: the same rules as the pages (P1–P3)."""

from __future__ import annotations

import uuid

from litestar import Router, get
from litestar.di import NamedDependency
from litestar.exceptions import NotFoundException
from litestar.params import FromPath
from sqlalchemy.ext.asyncio import AsyncSession

from safespace import clock, i18n
from safespace.identity.models import Membership
from safespace.privacy.crypto import Keyring
from safespace.pulse import services
from safespace.pulse.results import RoundResult, round_result
from safespace.web.errors import problem_responses
from safespace.web.guards import member_routes


@get("/communities/{community_id:uuid}/rounds/{round_id:uuid}/results", tags=["pulse"], responses=problem_responses(400, 401, 404))
async def round_results(
    round_id: FromPath[uuid.UUID],
    membership: NamedDependency[Membership],
    db_session: NamedDependency[AsyncSession],
    keyring: NamedDependency[Keyring],
) -> RoundResult:
    """A round's results: only a response rate while open; scores only after close and with k answers."""
    try:
        round_ = await services.round_in(db_session, membership.community_id, round_id)
    except LookupError:
        raise NotFoundException(i18n.gettext("There is no such round in this community.")) from None
    return await round_result(db_session, keyring, round_, i18n.current_language(), clock.now())


pulse_api = Router(
    path="/api/v1",
    route_handlers=[round_results],
    dependencies=member_routes(),
)
