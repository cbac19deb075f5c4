"""A community's home page, the first page a member sees: the rounds open for them (their answer
keys made beforehand, so that taking a token never happens at Send), the latest results, and
where to go next. It draws from identity, pulse and stories, so it belongs to none of them."""

from __future__ import annotations

from zoneinfo import ZoneInfo

from litestar import Controller, get
from litestar.di import NamedDependency
from litestar.response import Template
from sqlalchemy.ext.asyncio import AsyncSession

from safespace.identity import services as identity
from safespace.identity import signin
from safespace.identity.models import Membership
from safespace.privacy.crypto import Keyring
from safespace.pulse import services as pulse
from safespace.pulse import tokens
from safespace.settings import Settings
from safespace.web.guards import member_routes
from safespace.web.pages import page
from safespace.web.session import Viewer


class HomeController(Controller):
    """/c/{community_id}: for its members (404 for strangers)."""

    include_in_schema = False
    path = "/c/{community_id:uuid}"
    dependencies = member_routes()

    @get("/", name="community:home")
    async def home(
        self,
        membership: NamedDependency[Membership],
        viewer: NamedDependency[Viewer],
        db_session: NamedDependency[AsyncSession],
        keyring: NamedDependency[Keyring],
        settings: NamedDependency[Settings],
    ) -> Template:
        open_rounds = await pulse.open_rounds_for(db_session, membership.community_id, membership.person_id)
        for item in open_rounds:  # the viewer's answer-token key exists before the list below is drawn
            await tokens.key_for_member(db_session, keyring, membership, item.round.id, settings.token_key_bits)
        if viewer.community_id != membership.community_id:
            await signin.remember_community(db_session, viewer.session_id, viewer.person_id, membership.community_id)
        zone = ZoneInfo(membership.community.time_zone)
        return page(
            "home.html",
            membership=membership,
            community=membership.community,
            open_rounds=open_rounds,
            keys={item.round.id: await tokens.published_keys(db_session, item.round.id) for item in open_rounds},
            team_names={str(t.id): t.name for t in await identity.teams_of(db_session, membership.community_id)},
            closed_rounds=await pulse.recent_closed_rounds(db_session, membership.community_id),
            zone=zone,
        )
