"""A facilitator's notification choices for one community: which kinds come by mail."""

from __future__ import annotations

from typing import Any

from litestar import Controller, Request, get, post
from litestar.di import NamedDependency
from litestar.params import URLEncodedBody
from litestar.response import Redirect, Template
from sqlalchemy.ext.asyncio import AsyncSession

from safespace.i18n import gettext as _
from safespace.identity.models import Membership
from safespace.notifications.models import KINDS
from safespace.notifications.noting import LOW_SHARE, choose_kinds, kinds_on
from safespace.web.guards import facilitator_routes
from safespace.web.pages import page, see_other
from safespace.web.session import Viewer, flash


class NotificationsController(Controller):
    include_in_schema = False
    path = "/c/{community_id:uuid}/notifications"
    dependencies = facilitator_routes()

    @get("/", name="notifications:show")
    async def show(self, facilitation: NamedDependency[Membership], db_session: NamedDependency[AsyncSession]) -> Template:
        on = await kinds_on(db_session, facilitation.person_id, facilitation.community_id)
        return page("notifications/settings.html", community=facilitation.community, kinds=KINDS, on=on,
                    low_share=round(LOW_SHARE * 100))  # fmt: skip

    @post("/", name="notifications:save")
    async def save(
        self,
        request: Request,
        data: URLEncodedBody[dict[str, Any]],
        facilitation: NamedDependency[Membership],
        viewer: NamedDependency[Viewer],
        db_session: NamedDependency[AsyncSession],
    ) -> Redirect:
        chosen = data.get("kinds", [])
        await choose_kinds(db_session, facilitation.person_id, facilitation.community_id,
                           set(chosen if isinstance(chosen, list) else [chosen]))  # fmt: skip
        await flash(db_session, viewer, _("Your notification choices are saved."))
        return see_other(request.app.route_reverse("notifications:show", community_id=facilitation.community_id))
