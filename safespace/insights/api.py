"""JSON API for facilitators' insights: the same released figures as the pages (P1–P3)."""

from __future__ import annotations

import uuid

from litestar import Router, get
from litestar.di import NamedDependency, Provide
from litestar.params import FromQuery
from sqlalchemy.ext.asyncio import AsyncSession

from safespace import i18n
from safespace.identity.members import roster
from safespace.identity.models import Membership
from safespace.insights import actions, objective_figures, team_figures, trend_figures, vitality_figures
from safespace.insights.controllers import provide_round, survey_or_404
from safespace.pulse.models import Round
from safespace.pulse.services import round_instruments
from safespace.web.errors import problem_responses
from safespace.web.guards import facilitator_routes

PATH = "/communities/{community_id:uuid}/insights"
READ = problem_responses(400, 401, 403, 404)


@get(f"{PATH}/trend", tags=["insights"], responses=READ)
async def trend(
    survey: FromQuery[uuid.UUID],
    facilitation: NamedDependency[Membership],
    db_session: NamedDependency[AsyncSession],
) -> trend_figures.SurveyTrend:
    """A survey's closed rounds: scale score with 95% interval, favourable share, response rate,
    significant changes and notes, and the meeting check-ins kept in it (`checkins`, kind
    "meeting_checkin"), as the trend page and its JSON export show them. Rounds and check-ins below
    k carry `empty_because` instead of numbers."""
    _surveys, chosen = await survey_or_404(db_session, facilitation.community, survey)
    return await trend_figures.survey_trend(db_session, facilitation.community, chosen, i18n.current_language(), None, meetings=True)


@get(f"{PATH}/rounds/{{round_id:uuid}}/teams", tags=["insights"], responses=READ)
async def round_teams(
    round_: NamedDependency[Round],
    db_session: NamedDependency[AsyncSession],
) -> list[team_figures.TeamGrid]:
    """Teams × statements of a closed round, with complementary suppression; empty while open."""
    if not round_.closed:
        return []
    return [await team_figures.round_team_grid(db_session, round_, i, i18n.current_language()) for i in round_instruments(round_)]


@get(f"{PATH}/vitality", tags=["insights"], responses=READ)
async def vitality(facilitation: NamedDependency[Membership], db_session: NamedDependency[AsyncSession]) -> vitality_figures.Vitality:
    """Response rate and members over rounds, stories, replies and reactions per month, the five keys."""
    members = sum(1 for m in await roster(db_session, facilitation.community_id) if m.status == "active")
    return await vitality_figures.vitality(db_session, facilitation.community, members, i18n.current_language())


@get(f"{PATH}/objectives", tags=["insights"], responses=READ)
async def objectives(
    facilitation: NamedDependency[Membership], db_session: NamedDependency[AsyncSession]
) -> list[objective_figures.ObjectiveView]:
    """The community's objectives with their current released value, progress and status."""
    return await objective_figures.objectives(db_session, facilitation.community)


@get(f"{PATH}/actions", tags=["insights"], responses=READ)
async def action_list(
    facilitation: NamedDependency[Membership], db_session: NamedDependency[AsyncSession], status: FromQuery[str | None] = None
) -> list[actions.ActionView]:
    """The community's actions, newest first, with their log; `status` filters (planned, in_progress, done, dropped)."""
    return await actions.actions(db_session, facilitation.community, status=status or None, with_log=True)


insights_api = Router(
    path="/api/v1",
    route_handlers=[trend, round_teams, vitality, objectives, action_list],
    dependencies=facilitator_routes() | {"round_": Provide(provide_round)},
)
