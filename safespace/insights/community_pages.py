"""Community-wide insights: vitality and objectives for facilitators, and the members' summary of
released results. Every number comes from the insights *_figures modules (released aggregates,
through surveys.disclosure)."""

from __future__ import annotations

import uuid
from typing import Any

from litestar import Controller, Request, Response, get, post
from litestar.di import NamedDependency
from litestar.exceptions import NotFoundException
from litestar.params import FromPath, URLEncodedBody
from litestar.response import Redirect, Template
from sqlalchemy.ext.asyncio import AsyncSession

from safespace import i18n
from safespace.audit import entries as audit
from safespace.errors import InvalidInput
from safespace.i18n import gettext as _
from safespace.identity.members import roster
from safespace.identity.models import Community, Membership
from safespace.insights import actions, exports, objective_figures, trend_figures, views, vitality_figures
from safespace.insights.objective_figures import METRICS, metric_name
from safespace.insights.reasons import reason_text
from safespace.pulse import services as pulse
from safespace.web.guards import facilitator_routes, member_routes
from safespace.web.pages import form_text, page, see_other
from safespace.web.session import Viewer, flash

Form = URLEncodedBody[dict[str, Any]]


class VitalityController(Controller):
    """Community vitality from released figures: the page and its export."""

    path = "/c/{community_id:uuid}/insights"
    include_in_schema = False
    dependencies = facilitator_routes()

    async def _vitality(self, db: AsyncSession, community: Community) -> vitality_figures.Vitality:
        members = sum(1 for m in await roster(db, community.id) if m.status == "active")
        return await vitality_figures.vitality(db, community, members, i18n.current_language())

    @get("/vitality")
    async def vitality(self, facilitation: NamedDependency[Membership], db_session: NamedDependency[AsyncSession]) -> Template:
        community = facilitation.community
        result = await self._vitality(db_session, community)
        return page(
            "insights/vitality.html",
            community=community,
            vitality=result,
            charts=views.vitality_charts(result, community.min_group_size),
        )

    @get(["/vitality.csv", "/vitality.json"])
    async def vitality_export(
        self, request: Request, facilitation: NamedDependency[Membership], db_session: NamedDependency[AsyncSession]
    ) -> Response:
        result = await self._vitality(db_session, facilitation.community)
        await audit.downloaded(request, db_session, "vitality")
        return exports.export(request, "vitality", exports.VITALITY_HEADER, exports.vitality_rows(result), result)



class ObjectivesController(Controller):
    """Objectives judged against released figures: list, add, remove, export."""

    path = "/c/{community_id:uuid}/insights"
    include_in_schema = False
    dependencies = facilitator_routes()

    async def _objectives_page(self, db: AsyncSession, community: Community, status: int = 200, **extra: Any) -> Template:
        context = {"values": {"metric": "psychological_safety", "direction": "raise"}, "errors": {}} | extra
        return page(
            "insights/objectives.html",
            status_code=status,
            community=community,
            objectives=await objective_figures.objectives(db, community),
            metrics=[(m, metric_name(m)) for m in METRICS],
            **context,
        )

    @get("/objectives", name="insights:objectives")
    async def objectives(self, facilitation: NamedDependency[Membership], db_session: NamedDependency[AsyncSession]) -> Template:
        return await self._objectives_page(db_session, facilitation.community)

    @post("/objectives")
    async def add_objective(
        self,
        request: Request,
        data: Form,
        facilitation: NamedDependency[Membership],
        viewer: NamedDependency[Viewer],
        db_session: NamedDependency[AsyncSession],
    ) -> Template | Redirect:
        community = facilitation.community
        values = {key: form_text(data, key) for key in ("title", "metric", "direction", "target", "baseline", "due_on")}
        try:
            await objective_figures.add_objective(db_session, community, **values)
        except InvalidInput as exc:
            return await self._objectives_page(db_session, community, 422, values=values, errors=exc.errors)
        await flash(db_session, viewer, _("Objective added."))
        return see_other(request.app.route_reverse("insights:objectives", community_id=community.id))

    @post("/objectives/{objective_id:uuid}/delete")
    async def delete_objective(
        self,
        request: Request,
        objective_id: FromPath[uuid.UUID],
        facilitation: NamedDependency[Membership],
        viewer: NamedDependency[Viewer],
        db_session: NamedDependency[AsyncSession],
    ) -> Redirect:
        community = facilitation.community
        if not await objective_figures.delete_objective(db_session, community, objective_id):
            raise NotFoundException(_("There is no such objective."))
        await flash(db_session, viewer, _("Objective removed."))
        return see_other(request.app.route_reverse("insights:objectives", community_id=community.id))

    @get(["/objectives.csv", "/objectives.json"])
    async def objectives_export(
        self, request: Request, facilitation: NamedDependency[Membership], db_session: NamedDependency[AsyncSession]
    ) -> Response:
        rows = await objective_figures.objectives(db_session, facilitation.community)
        await audit.downloaded(request, db_session, "objectives")
        return exports.export(request, "objectives", exports.OBJECTIVES_HEADER, exports.objective_rows(rows), rows)


class SummaryController(Controller):
    """What every member may see: the community's released results, the same numbers, same rules."""

    path = "/c/{community_id:uuid}/summary"
    include_in_schema = False
    dependencies = member_routes()

    @get("/")
    async def summary(self, membership: NamedDependency[Membership], db_session: NamedDependency[AsyncSession]) -> Template:
        community = membership.community
        language = i18n.current_language()
        trends = []
        for n, survey in enumerate(await pulse.surveys_of(db_session, community.id)):
            trend = await trend_figures.survey_trend(db_session, community, survey, language)
            trends.append(
                (trend, [(t, views.trend_charts(f"s{n}-{m}", t, community.min_group_size, with_notes=False)) for m, t in enumerate(trend.instruments)])
            )
        return page(
            "insights/summary.html",
            community=community,
            membership=membership,
            trends=trends,
            objectives=await objective_figures.objectives(db_session, community),
            # "You said, we did": what the community is doing about its results (dropped ones left out).
            actions=[a for a in await actions.actions(db_session, community, with_log=True) if a.status != "dropped"],
            status_name=actions.status_name,
            reason_text=reason_text,
        )
