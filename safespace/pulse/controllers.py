"""HTML pages: answering a round and its results (the facilitators' survey pages: survey_pages.py)."""

from __future__ import annotations

import uuid
from typing import Any
from zoneinfo import ZoneInfo

from litestar import Controller, Request, get, post
from litestar.di import NamedDependency, Provide
from litestar.exceptions import NotFoundException
from litestar.params import FromPath, FromQuery, URLEncodedBody
from litestar.response import Redirect, Template
from sqlalchemy.ext.asyncio import AsyncSession

from safespace import clock, i18n
from safespace.errors import InvalidInput
from safespace.i18n import gettext as _
from safespace.identity.models import Membership
from safespace.insights import actions
from safespace.privacy.crypto import Keyring
from safespace.pulse import answer_page, answering, services
from safespace.pulse.group_commit import AnswerQueue
from safespace.pulse.models import Round
from safespace.pulse.results import comments_shown, round_result
from safespace.web.guards import member_place, member_routes, provide_viewer, request_reads, request_session, require_membership
from safespace.web.pages import Kept, page, render_blocks, see_other
from safespace.web.session import notice

Form = URLEncodedBody[dict[str, Any]]


def _single_values(data: dict[str, Any]) -> dict[str, str]:
    return {k: (v[-1] if isinstance(v, list) else v) for k, v in data.items()}


def _refusal(refusal: Exception, form: dict[str, str]) -> tuple[int, dict[str, Any]]:
    """The answer page's status and context for an answer that was not counted."""
    if isinstance(refusal, InvalidInput):
        return 422, {"values": form, "errors": refusal.errors}
    if isinstance(refusal, services.RoundNotOpen):
        return 409, {"errors": {"round": _("This round is closed; answers are no longer accepted.")}}
    if isinstance(refusal, services.TokensRequired):
        message = _("This community accepts answers only in private mode, which needs JavaScript. Nothing was saved.")
        return 409, {"values": form, "errors": {"mode": message}}
    return 409, {}  # already answered: the page says so


async def provide_round(
    round_id: FromPath[uuid.UUID], membership: NamedDependency[Membership], db_session: NamedDependency[AsyncSession]
) -> Round:
    """The round of the path, in the member's community; 404 otherwise."""
    try:
        return await services.round_in(db_session, membership.community_id, round_id)
    except LookupError:
        raise NotFoundException(_("There is no such round in this community.")) from None


class PulseController(Controller):
    """Answering and results, for every active member of the community. The round of the path is
    the `round_` dependency, except for the answer POST, whose batch finds the round itself."""

    path = "/c/{community_id:uuid}/rounds"
    include_in_schema = False
    dependencies = member_routes() | {"round_": Provide(provide_round)}

    async def _answer_page(
        self, db: AsyncSession, membership: Membership, round_: Round, status: int = 200, **extra: Any
    ) -> Template:
        survey = await services.survey_in(db, membership.community_id, round_.survey_id)
        state = await services.state_of(db, round_.id, membership.person_id)
        zone = ZoneInfo(membership.community.time_zone)
        context = {"values": {}, "errors": {}} | extra
        return page(
            "pulse/answer.html",
            status_code=status,
            community=membership.community,
            round=round_,
            survey=survey,
            instruments=services.round_instruments(round_),
            open=services.is_open(round_, clock.now()),
            state=state,
            closes=round_.closes_at.astimezone(zone),
            language=i18n.current_language(),
            **context,
        )

    @get("/{round_id:uuid}")
    async def answer_form(self, request: Request, community_id: FromPath[uuid.UUID], round_id: FromPath[uuid.UUID]) -> Template:
        # The member's place from the session, one statement, and the form kept (answer_page.py):
        # no ORM session.
        member_place(request, community_id)
        found = await answer_page.read(request_reads(request), community_id, round_id, provide_viewer(request).person_id)
        if found is None:
            raise NotFoundException(_("There is no such round in this community."))
        is_open, language = services.is_open(found.round, clock.now()), i18n.current_language()  # type: ignore[arg-type]

        def render() -> Kept:
            return render_blocks(request.app.template_engine.get_template("pulse/answer.html"), {
                "community": found.community, "round": found.round, "survey": found.survey, "state": found.state,
                "instruments": services.round_instruments(found.round),  # type: ignore[arg-type]
                "open": is_open, "closes": found.round.closes_at.astimezone(ZoneInfo(found.community.time_zone)),
                "language": language, "values": {}, "errors": {},
            })  # fmt: skip

        kept = answer_page.kept_blocks(found, is_open, language, render)
        return page("pulse/answer.html", kept=kept)

    @post("/{round_id:uuid}")
    async def answer(
        self,
        request: Request,
        community_id: FromPath[uuid.UUID],
        round_id: FromPath[uuid.UUID],
        data: Form,
        answer_queue: NamedDependency[AnswerQueue],
    ) -> Template | Redirect:
        # One dependency: the viewer comes from the request, and the database session only for a
        # refusal's page. No `membership` either: the batch checks active memberships in one
        # query for all its answers.
        viewer = provide_viewer(request)
        form = _single_values(data)
        thanks = notice(_("Thank you. Your answers were added to the totals; nothing links them to you."))
        try:
            # Counted and committed when this returns, together with the answers that arrived
            # meanwhile (pulse/group_commit.py); the thank-you notice is set in that transaction.
            await answer_queue.submit(answering.Answer(community_id, viewer.person_id, round_id, form, (viewer.session_id, thanks)))
        except LookupError:
            await require_membership(request_session(request), viewer.person_id, community_id)  # strangers: "no community"
            raise NotFoundException(_("There is no such round in this community.")) from None
        except (InvalidInput, services.RoundNotOpen, services.AlreadyAnswered, services.TokensRequired) as refusal:
            db_session = request_session(request)
            membership = await require_membership(db_session, viewer.person_id, community_id)
            status, context = _refusal(refusal, form)
            round_ = await provide_round(round_id, membership, db_session)
            return await self._answer_page(db_session, membership, round_, status, **context)
        return see_other(request.app.route_reverse("community:home", community_id=community_id))

    @get("/{round_id:uuid}/results")
    async def results(
        self,
        round_: NamedDependency[Round],
        membership: NamedDependency[Membership],
        db_session: NamedDependency[AsyncSession],
        keyring: NamedDependency[Keyring],
        comments: FromQuery[str | None] = None,
    ) -> Template:
        survey = await services.survey_in(db_session, membership.community_id, round_.survey_id)
        result = await round_result(db_session, keyring, round_, i18n.current_language(), clock.now(), comments_shown(comments))
        zone = ZoneInfo(membership.community.time_zone)
        return page(
            "pulse/results.html",
            community=membership.community,
            membership=membership,
            survey=survey,
            round=round_,
            result=result,
            opens=round_.opens_at.astimezone(zone),
            closes=round_.closes_at.astimezone(zone),
            summary=await actions.round_summary(db_session, membership.community, round_),
            status_name=actions.status_name,
        )
