"""Facilitators' insights pages and exports: the trend, one round, the teams. (Vitality, objectives
and the members' summary: community_pages.py.)

Every number comes from the insights *_figures modules (released aggregates, through surveys.disclosure).
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from typing import Any

from litestar import Controller, Request, Response, get, post
from litestar.di import NamedDependency, Provide
from litestar.exceptions import NotFoundException
from litestar.params import FromPath, FromQuery, URLEncodedBody
from litestar.response import Redirect, Template
from markupsafe import Markup
from sqlalchemy.ext.asyncio import AsyncSession

from safespace import clock, i18n
from safespace.audit import entries as audit
from safespace.errors import InvalidInput
from safespace.i18n import gettext as _
from safespace.identity.models import Community, Membership
from safespace.insights import actions, exports, round_page, team_figures, trend_figures, views
from safespace.insights.trend_figures import TREND_STATES
from safespace.privacy.crypto import Keyring
from safespace.pulse import results as pulse_results
from safespace.pulse import services as pulse
from safespace.pulse.models import Round, Survey
from safespace.pulse.results import comments_shown, round_result
from safespace.web.guards import facilitator_place, facilitator_routes, no_community, provide_facilitation, request_reads, request_session
from safespace.web.pages import form_text, page, see_other
from safespace.web.session import Viewer, flash

Form = URLEncodedBody[dict[str, Any]]


async def survey_or_404(db: AsyncSession, community: Community, survey_id: uuid.UUID | None) -> tuple[list[Survey], Survey | None]:
    surveys = await pulse.surveys_of(db, community.id)
    if survey_id is None:
        return surveys, surveys[0] if surveys else None
    chosen = next((s for s in surveys if s.id == survey_id), None)
    if chosen is None:
        raise _no_survey()
    return surveys, chosen


def _no_survey() -> NotFoundException:
    return NotFoundException(_("There is no such survey in this community."))


async def provide_round(
    round_id: FromPath[uuid.UUID], facilitation: NamedDependency[Membership], db_session: NamedDependency[AsyncSession]
) -> Round:
    """The round of the path, in the facilitator's community; 404 otherwise."""
    try:
        return await pulse.round_in(db_session, facilitation.community_id, round_id)
    except LookupError:
        raise NotFoundException(_("There is no such round in this community.")) from None


def _limit(period: str | None) -> int | None:
    return None if period == "all" else 52 if period == "52" else trend_figures.TREND_ROUNDS


# Rendered parts of the trend page, per process and bounded, keyed by everything they are drawn
# from; nothing of the viewer is in them (the navigation, notice and CSRF field are base.html's),
# and the open round's card, which moves with every answer, is rendered on each visit.
# - The charts and round lists (insights/_trend_sections.html), per survey, trend revision,
#   period, language, k and time zone (rounds are dated in it): they change only with the
#   revision (Survey.trend_revision, bumped when a round closes, a note changes, or a meeting
#   check-in is kept in or leaves the trend: checkin/lifecycle.py decide), so a
#   facilitator's next visit reads one row instead of every round again.
# - The heading, tabs and survey picker (insights/_trend_head.html): most of what was left of
#   rendering the page once the sections were kept.
_SECTIONS: dict[tuple, Markup] = {}
_HEADS: dict[tuple, Markup] = {}
_KEPT = 512  # entries per cache; a full cache starts again


def _kept(cache: dict[tuple, Markup], key: tuple, render: Callable[[], str]) -> Markup:
    if key not in cache:
        html = Markup(render())
        if len(cache) >= _KEPT:
            cache.clear()
        cache[key] = html
    return cache[key]


def _render(request: Request, template: str, **context: Any) -> str:
    return request.app.template_engine.get_template(template).render(**context)


async def _trend_sections(request: Request, community: trend_figures.CommunityFacts, survey: trend_figures.SurveyState, limit: int | None) -> Markup:
    language = i18n.current_language()
    key = (survey.id, survey.trend_revision, limit, language, community.min_group_size, community.time_zone)
    if key in _SECTIONS:
        return _SECTIONS[key]
    # Drawn anew (a round closed, a note changed, another period or language): the ORM objects,
    # from the request's session.
    db = request_session(request)
    found, chosen = await db.get(Community, community.id), await db.get(Survey, survey.id)
    if found is None or chosen is None:  # deleted since the reads: as if it never was
        raise _no_survey()
    trend = await trend_figures.survey_trend(db, found, chosen, language, limit, meetings=True)
    charts = [(t, views.trend_charts(f"t{n}", t, community.min_group_size), trend_figures.trend_places(t)) for n, t in enumerate(trend.instruments)]
    return _kept(_SECTIONS, key, lambda: _render(request, "insights/_trend_sections.html", community=community, charts=charts))


class InsightsController(Controller):
    """Trend, round results and teams: aggregates only, for facilitators (vitality and objectives:
    community_pages.py). The round of the path is the `round_` dependency."""

    path = "/c/{community_id:uuid}/insights"
    include_in_schema = False
    dependencies = facilitator_routes() | {"round_": Provide(provide_round)}

    # --- trend ---

    @get("/")
    async def trend(
        self,
        request: Request,
        community_id: FromPath[uuid.UUID],
        survey: FromQuery[uuid.UUID | None] = None,
        period: FromQuery[str | None] = None,
    ) -> Template:
        # Every visit: the facilitator's place from the session, then one statement on a bare
        # connection, shared with concurrent visits (trend_figures.TrendStates); the charts are kept
        # per version of what they show. No dependency: no ORM session unless charts are drawn.
        facilitator_place(request, community_id)
        state = await request.app.state[TREND_STATES].read(community_id)
        if state is None:  # deleted since the session was read
            raise no_community()
        community, surveys = state.community, state.surveys
        chosen = surveys[0] if surveys and survey is None else next((s for s in surveys if s.id == survey), None)
        if survey is not None and chosen is None:
            raise _no_survey()
        period = period if period in ("52", "all") else str(trend_figures.TREND_ROUNDS)
        language = i18n.current_language()
        head_key = (community, language, tuple((s.id, s.title) for s in surveys), chosen.id if chosen else None, period)
        context = {"community": community, "surveys": surveys, "survey": chosen, "period": period}
        return page(
            "insights/trend.html",
            head=_kept(_HEADS, head_key, lambda: _render(request, "insights/_trend_head.html", **context)),
            sections=await _trend_sections(request, community, chosen, _limit(period)) if chosen else None,
            open_round=chosen.open_round if chosen else None,
            **context,
        )

    @get(["/trend.csv", "/trend.json"])
    async def trend_export(
        self,
        request: Request,
        facilitation: NamedDependency[Membership],
        db_session: NamedDependency[AsyncSession],
        survey: FromQuery[uuid.UUID],
    ) -> Response:
        _surveys, chosen = await survey_or_404(db_session, facilitation.community, survey)
        trend = await trend_figures.survey_trend(db_session, facilitation.community, chosen, i18n.current_language(), None, meetings=True)
        await audit.downloaded(request, db_session, "trend")
        return exports.export(request, "trend", exports.TREND_HEADER, exports.trend_rows(trend), trend)

    # --- one round ---

    async def _round_context(
        self, db: AsyncSession, keyring: Keyring, community: Community, round_: Round, comments: str | None = None
    ) -> dict:
        survey = await pulse.survey_in(db, community.id, round_.survey_id)
        language = i18n.current_language()
        result = await round_result(db, keyring, round_, language, clock.now(), comments_shown(comments))
        grids = (
            [await team_figures.round_team_grid(db, round_, i, language) for i in pulse.round_instruments(round_)]
            if result.instruments
            else []
        )
        share_charts = [
            views.share_chart(f"shares{n}", instrument, round_.min_group_size) for n, instrument in enumerate(result.instruments)
        ]
        notes = (await trend_figures.notes_by_round(db, [round_.id])).get(round_.id, [])
        answering = await actions.round_actions(db, community, round_) if round_.closed else []
        return {
            "summary": await actions.round_summary(db, community, round_, answering),
            "round_actions": answering,
            "status_name": actions.status_name,
            "community": community,
            "survey": survey,
            "round": round_,
            "result": result,
            "share_charts": share_charts,
            "team_charts": [views.team_heatmap(f"teams{n}", g, round_.min_group_size) for n, g in enumerate(grids) if g.rows],
            "notes": notes,
            "day": views.day_label,
            "zone_day": lambda moment: views.day_label(moment.astimezone(views.zone(community)).date()),
        }

    @get("/rounds/{round_id:uuid}", name="insights:round")
    async def round_page(
        self,
        request: Request,
        community_id: FromPath[uuid.UUID],
        round_id: FromPath[uuid.UUID],
        keyring: NamedDependency[Keyring],
        comments: FromQuery[str | None] = None,
    ) -> Template:
        # A closed round: the facilitator's place from the session, one statement for the page's
        # version, the rest kept (round_page.py). No dependency: no ORM session unless it is drawn.
        facilitator_place(request, community_id)
        reads = request_reads(request)
        key = await round_page.closed_round_key(reads, community_id, round_id)
        if key is None:  # open, scheduled, or not here: drawn on every visit
            db = request_session(request)
            facilitation = await provide_facilitation(community_id, request, db)
            round_ = await provide_round(round_id, facilitation, db)
            context = await self._round_context(db, keyring, facilitation.community, round_, comments)
            return page("insights/round.html", values={}, errors={}, **context)

        async def context() -> dict[str, Any]:
            db = request_session(request)
            facilitation = await provide_facilitation(community_id, request, db)
            round_ = await provide_round(round_id, facilitation, db)
            found = await self._round_context(db, keyring, facilitation.community, round_, comments)
            return found | {"request": request}

        template = request.app.template_engine.get_template("insights/round.html")
        key = (*key, i18n.current_language(), pulse_results.comments_shown(comments))
        kept = await round_page.kept_blocks(key, template, context)
        return page("insights/round.html", kept=kept)

    @get("/rounds/{round_id:uuid}/report")
    async def round_report(
        self,
        round_: NamedDependency[Round],
        facilitation: NamedDependency[Membership],
        db_session: NamedDependency[AsyncSession],
        keyring: NamedDependency[Keyring],
    ) -> Template:
        context = await self._round_context(db_session, keyring, facilitation.community, round_, "all")
        return page("insights/report.html", **context)

    @get(["/rounds/{round_id:uuid}/results.csv", "/rounds/{round_id:uuid}/results.json"])
    async def round_export(
        self,
        request: Request,
        round_: NamedDependency[Round],
        facilitation: NamedDependency[Membership],
        db_session: NamedDependency[AsyncSession],
        keyring: NamedDependency[Keyring],
    ) -> Response:
        result = await round_result(db_session, keyring, round_, i18n.current_language(), clock.now())
        await audit.downloaded(request, db_session, f"round {round_.number} results")
        return exports.export(request, f"round-{round_.number}", exports.RESULT_HEADER, exports.result_rows(result), result)

    @get(["/rounds/{round_id:uuid}/teams.csv", "/rounds/{round_id:uuid}/teams.json"])
    async def round_teams_export(
        self, request: Request, round_: NamedDependency[Round], db_session: NamedDependency[AsyncSession]
    ) -> Response:
        grids = await self._grids(db_session, round_)
        rows = [(g.title,) + row for g in grids for row in exports.team_rows(g)]
        await audit.downloaded(request, db_session, f"round {round_.number} teams")
        return exports.export(request, "teams", ("grid",) + exports.TEAMS_HEADER, rows, grids)

    async def _grids(self, db: AsyncSession, round_: Round) -> list[team_figures.TeamGrid]:
        if not round_.closed:
            return []
        return [await team_figures.round_team_grid(db, round_, i, i18n.current_language()) for i in pulse.round_instruments(round_)]

    @post("/rounds/{round_id:uuid}/notes")
    async def add_note(
        self,
        request: Request,
        round_: NamedDependency[Round],
        data: Form,
        facilitation: NamedDependency[Membership],
        viewer: NamedDependency[Viewer],
        db_session: NamedDependency[AsyncSession],
        keyring: NamedDependency[Keyring],
    ) -> Template | Redirect:
        community = facilitation.community
        values = {"note": form_text(data, "note")}
        try:
            await trend_figures.add_note(db_session, round_, values["note"])
        except InvalidInput as exc:
            context = await self._round_context(db_session, keyring, community, round_)
            return page("insights/round.html", status_code=422, values=values, errors=exc.errors, **context)
        await flash(db_session, viewer, _("Note pinned to round %(number)s.", number=round_.number))
        return _to_round(request, round_)

    @post("/rounds/{round_id:uuid}/notes/{note_id:uuid}/delete")
    async def delete_note(
        self,
        request: Request,
        round_: NamedDependency[Round],
        note_id: FromPath[uuid.UUID],
        viewer: NamedDependency[Viewer],
        db_session: NamedDependency[AsyncSession],
    ) -> Redirect:
        if not await trend_figures.delete_note(db_session, round_, note_id):
            raise NotFoundException(_("There is no such note."))
        await flash(db_session, viewer, _("Note removed."))
        return _to_round(request, round_)

    # --- teams ---

    @get("/teams")
    async def teams(
        self,
        facilitation: NamedDependency[Membership],
        db_session: NamedDependency[AsyncSession],
        survey: FromQuery[uuid.UUID | None] = None,
    ) -> Template:
        community = facilitation.community
        language = i18n.current_language()
        surveys, chosen = await survey_or_404(db_session, community, survey)
        grids = []
        latest = None
        if chosen:
            closed = await pulse_results.closed_rounds(db_session, chosen.id, 1)
            latest = closed[-1] if closed else None
            if latest:
                grids += [await team_figures.round_team_grid(db_session, latest, i, language) for i in pulse.round_instruments(latest)]
                grids += [
                    await team_figures.team_trend_grid(db_session, community, chosen, i, language)
                    for i in pulse.round_instruments(latest)
                ]
        k = latest.min_group_size if latest else community.min_group_size
        return page(
            "insights/teams.html",
            community=community,
            surveys=surveys,
            survey=chosen,
            latest=latest,
            charts=[views.team_heatmap(f"grid{n}", g, k) for n, g in enumerate(grids) if g.rows],
        )


def _to_round(request: Request, round_: Round) -> Redirect:
    return see_other(request.app.route_reverse("insights:round", community_id=round_.community_id, round_id=round_.id))
