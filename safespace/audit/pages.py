"""The audit log's page and CSV export, for the community's facilitators only."""

from __future__ import annotations

from litestar import Controller, Request, Response, get
from litestar.di import NamedDependency
from litestar.params import FromQuery
from litestar.response import Template
from sqlalchemy.ext.asyncio import AsyncSession

from safespace.audit import entries
from safespace.identity.models import Membership
from safespace.web.guards import facilitator_routes
from safespace.web.pages import page


class AuditController(Controller):
    include_in_schema = False
    path = "/c/{community_id:uuid}/audit"
    dependencies = facilitator_routes()

    @get("/", name="audit:log")
    async def log(self, facilitation: NamedDependency[Membership], db_session: NamedDependency[AsyncSession], p: FromQuery[int] = 1) -> Template:
        rows, number, pages = await entries.page_of(db_session, facilitation.community_id, p)
        return page("audit/log.html", community=facilitation.community, entries=rows, page_number=number, pages=pages)

    @get("/export.csv", name="audit:csv")
    async def export(self, request: Request, facilitation: NamedDependency[Membership], db_session: NamedDependency[AsyncSession]) -> Response:
        text = await entries.as_csv(db_session, facilitation.community_id)
        await entries.downloaded(request, db_session, "audit log")
        headers = {"Content-Disposition": 'attachment; filename="audit-log.csv"'}
        return Response(text, media_type="text/csv; charset=utf-8", headers=headers)
