"""The facilitators' survey pages: create a survey, its schedule, pause, open or close a round
now; and their own instruments."""

from __future__ import annotations

import uuid
from typing import Any
from zoneinfo import ZoneInfo

from litestar import Controller, Request, get, post
from litestar.background_tasks import BackgroundTask
from litestar.di import NamedDependency, Provide
from litestar.exceptions import NotFoundException
from litestar.params import FromPath, URLEncodedBody
from litestar.response import Redirect, Template
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from safespace import clock, i18n, schedule
from safespace.audit import entries as audit
from safespace.chat import services as chat
from safespace.checkin.trend import kept_in_trend
from safespace.errors import InvalidInput, Refused
from safespace.i18n import gettext as _
from safespace.i18n import weekday_names
from safespace.identity.models import Membership
from safespace.privacy.crypto import Keyring
from safespace.pulse import lifecycle, services
from safespace.pulse.mail import RoundMails
from safespace.pulse.models import Round, Survey
from safespace.settings import Settings
from safespace.text import clean_text
from safespace.web.guards import facilitator_routes
from safespace.web.pages import form_text, page, see_other
from safespace.web.session import Viewer, flash
from safespace.webhooks import services as webhooks
from surveys.instrument import AGREEMENT, CHOICE, CHOICE_OPTIONS, ZERO_TO_TEN, InstrumentError, custom_instrument

Form = URLEncodedBody[dict[str, Any]]


async def provide_survey(
    survey_id: FromPath[uuid.UUID], facilitation: NamedDependency[Membership], db_session: NamedDependency[AsyncSession]
) -> Survey:
    """The survey of the path, in the facilitator's community; 404 otherwise."""
    try:
        return await services.survey_in(db_session, facilitation.community_id, survey_id)
    except LookupError:
        raise NotFoundException(_("There is no such survey in this community.")) from None


async def _open_round_of(db: AsyncSession, survey: Survey) -> Round | None:
    last = await services.last_round(db, survey.id)
    return last if last is not None and not last.closed else None


class SurveysController(Controller):
    """Facilitators create surveys, see their schedule, pause, change cadence, close early.
    One route per change; the survey of the path is the `survey` dependency."""

    path = "/c/{community_id:uuid}/surveys"
    include_in_schema = False
    dependencies = facilitator_routes() | {"survey": Provide(provide_survey)}

    async def _index(self, db: AsyncSession, facilitation: Membership, status: int = 200, **extra: Any) -> Template:
        community = facilitation.community
        today = clock.now().astimezone(ZoneInfo(community.time_zone)).date()
        context = {
            "values": {"every": "monthly", "weekday": "0", "day_of_month": "1", "open_days": "5", "start": today.isoformat()},
            "errors": {},
        } | extra
        return page(
            "pulse/surveys.html",
            status_code=status,
            community=community,
            surveys=await services.surveys_of(db, community.id),
            available=await services.available_instruments(db, community.id),
            weekdays=weekday_names(),
            language=i18n.current_language(),
            **context,
        )

    @get("/", name="surveys:index")
    async def index(self, facilitation: NamedDependency[Membership], db_session: NamedDependency[AsyncSession]) -> Template:
        return await self._index(db_session, facilitation)

    @post("/")
    async def create(
        self,
        request: Request,
        data: Form,
        facilitation: NamedDependency[Membership],
        viewer: NamedDependency[Viewer],
        db_session: NamedDependency[AsyncSession],
    ) -> Template | Redirect:
        chosen = data.get("instruments", [])
        chosen = chosen if isinstance(chosen, list) else [chosen]
        values = {key: form_text(data, key) for key in ("title", "every", "weekday", "day_of_month", "open_days", "start")}
        form = services.CadenceForm(values["every"], values["weekday"], values["day_of_month"], values["open_days"], values["start"])
        try:
            survey = await services.create_survey(
                db_session, facilitation.community_id, facilitation.community.time_zone, values["title"], chosen, form
            )
        except InvalidInput as exc:
            return await self._index(db_session, facilitation, 422, values=values | {"instruments": chosen}, errors=exc.errors)
        await audit.record(db_session, facilitation.community_id, viewer.email, "survey", f"created “{survey.title}”")
        await flash(db_session, viewer, _("Survey created. Rounds will open on their own, on the schedule below."))
        return _to_survey(request, survey)

    async def _survey_page(self, db: AsyncSession, facilitation: Membership, survey: Survey, status: int = 200, **extra: Any) -> Template:
        zone = ZoneInfo(facilitation.community.time_zone)
        rounds = await services.rounds_of(db, survey.id)  # newest first
        moment = clock.now()
        # What `tick` will do, computed by its own rule: the first may be due at its next pass.
        upcoming = lifecycle.planned_windows(survey, rounds[0] if rounds else None, moment)
        values = {k: str(v) for k, v in survey.cadence.items()}
        context = {"values": values, "errors": {}} | extra
        return page(
            "pulse/survey.html",
            status_code=status,
            community=facilitation.community,
            survey=survey,
            rounds=rounds,
            upcoming=upcoming,
            zone=zone,
            moment=moment,
            weekdays=weekday_names(),
            checkins=await kept_in_trend(db, survey.id, i18n.current_language(), zone),  # meeting check-ins kept in its trend
            **context,
        )

    @post("/private-mode")
    async def private_mode(
        self,
        request: Request,
        data: Form,
        facilitation: NamedDependency[Membership],
        viewer: NamedDependency[Viewer],
        db_session: NamedDependency[AsyncSession],
    ) -> Redirect:
        """Require answer tokens (private mode) for every round of the community, or not."""
        community = facilitation.community
        community.require_tokens = form_text(data, "require") == "yes"
        await flash(
            db_session,
            viewer,
            _("Answers are now accepted only in private mode.") if community.require_tokens
            else _("Answers are accepted in private mode and through the signed-in form."),
        )
        return see_other(request.app.route_reverse("surveys:index", community_id=community.id))

    @get("/{survey_id:uuid}", name="surveys:show")
    async def show(
        self, survey: NamedDependency[Survey], facilitation: NamedDependency[Membership], db_session: NamedDependency[AsyncSession]
    ) -> Template:
        return await self._survey_page(db_session, facilitation, survey)

    @post("/{survey_id:uuid}/pause", name="surveys:pause")
    async def pause(self, request: Request, survey: NamedDependency[Survey], viewer: NamedDependency[Viewer],
                    db_session: NamedDependency[AsyncSession]) -> Redirect:  # fmt: skip
        survey.paused = True
        await audit.record(db_session, survey.community_id, viewer.email, "survey", f"paused “{survey.title}”")
        await flash(db_session, viewer, _("Survey paused: no new rounds open until you resume it."))
        return _to_survey(request, survey)

    @post("/{survey_id:uuid}/resume", name="surveys:resume")
    async def resume(self, request: Request, survey: NamedDependency[Survey], viewer: NamedDependency[Viewer],
                     db_session: NamedDependency[AsyncSession]) -> Redirect:  # fmt: skip
        survey.paused = False
        await audit.record(db_session, survey.community_id, viewer.email, "survey", f"resumed “{survey.title}”")
        await flash(db_session, viewer, _("Survey resumed."))
        return _to_survey(request, survey)

    @post("/{survey_id:uuid}/schedule", name="surveys:schedule")
    async def change_schedule(
        self,
        request: Request,
        data: Form,
        survey: NamedDependency[Survey],
        facilitation: NamedDependency[Membership],
        viewer: NamedDependency[Viewer],
        db_session: NamedDependency[AsyncSession],
    ) -> Template | Redirect:
        values = {key: form_text(data, key) for key in ("every", "weekday", "day_of_month", "open_days", "start")}
        form = services.CadenceForm(values["every"], values["weekday"], values["day_of_month"], values["open_days"], values["start"])
        try:
            await services.change_cadence(db_session, survey, facilitation.community.time_zone, form)
        except InvalidInput as exc:
            return await self._survey_page(db_session, facilitation, survey, 422, values=values, errors=exc.errors)
        await audit.record(db_session, survey.community_id, viewer.email, "survey", f"schedule of “{survey.title}”: " + ", ".join(f"{k} {v}" for k, v in values.items() if v))
        await flash(db_session, viewer, _("Schedule changed. It applies from the next round on."))
        return _to_survey(request, survey)

    @get("/{survey_id:uuid}/close-round", name="surveys:confirm_close")
    async def confirm_close(
        self, request: Request, survey: NamedDependency[Survey], facilitation: NamedDependency[Membership],
        db_session: NamedDependency[AsyncSession],
    ) -> Template | Redirect:  # fmt: skip
        """Closing is final: a page that says so and asks once more (no script needed)."""
        open_round = await _open_round_of(db_session, survey)
        if open_round is None:
            return _to_survey(request, survey)
        return page("pulse/close_round.html", community=facilitation.community, survey=survey, round=open_round,
                    zone=ZoneInfo(facilitation.community.time_zone))  # fmt: skip

    @post("/{survey_id:uuid}/close-round", name="surveys:close_round")
    async def close_round(
        self,
        request: Request,
        survey: NamedDependency[Survey],
        viewer: NamedDependency[Viewer],
        db_session: NamedDependency[AsyncSession],
        keyring: NamedDependency[Keyring],
    ) -> Redirect:
        open_round = await _open_round_of(db_session, survey)
        if open_round is None:
            notice = _("There is no open round to close.")
        else:
            await audit.record(db_session, survey.community_id, viewer.email, "round-closed", f"round {open_round.number} of “{survey.title}”")
            if await lifecycle.close_round(db_session, keyring, open_round.id, clock.now()):
                await chat.note_post(db_session, survey.community_id, "results", open_round.id, clock.now())  # sent by the next tick
                await webhooks.note(db_session, survey.community_id, "round.closed", clock.now(), open_round.id)
            await db_session.commit()
            await lifecycle.forget_round_keys(db_session, keyring)
            await schedule.scrub(db_session)
            notice = _("Round closed. Its results are now final.")
        await flash(db_session, viewer, notice)
        return _to_survey(request, survey)


    @get("/{survey_id:uuid}/open-round", name="surveys:confirm_open")
    async def confirm_open(
        self, request: Request, survey: NamedDependency[Survey], facilitation: NamedDependency[Membership],
        viewer: NamedDependency[Viewer], db_session: NamedDependency[AsyncSession],
    ) -> Template | Redirect:  # fmt: skip
        """Opening mails every member: a page that says when it opens and closes, and asks once more."""
        last, moment = await services.last_round(db_session, survey.id), clock.now()
        try:
            window = lifecycle.on_demand_window(survey, last, moment)
        except Refused as exc:
            await flash(db_session, viewer, str(exc))
            return _to_survey(request, survey)
        following = [w for w in lifecycle.planned_windows(survey, last, moment, count=2) if w != window][:1]
        members = await services.active_members(db_session, survey.community_id)
        return page("pulse/open_round.html", community=facilitation.community, survey=survey, window=window,
                    scheduled=window.number > 0, following=following, members=members,
                    zone=ZoneInfo(facilitation.community.time_zone))  # fmt: skip

    @post("/{survey_id:uuid}/open-round", name="surveys:open_round")
    async def open_round(
        self,
        request: Request,
        survey: NamedDependency[Survey],
        viewer: NamedDependency[Viewer],
        db_session: NamedDependency[AsyncSession],
        keyring: NamedDependency[Keyring],
        settings: NamedDependency[Settings],
        send_round_mails: NamedDependency[RoundMails],
    ) -> Redirect:
        """Open a round now, outside the schedule, once; the next scheduled round keeps its date.
        Its invitations are noted with it, as `tick` notes them, and sent after the commit."""
        try:
            window = lifecycle.on_demand_window(survey, await services.last_round(db_session, survey.id), clock.now())
            async with db_session.begin_nested():  # the schedule may open one at the same moment
                round_ = await lifecycle.open_round(db_session, survey, window, keyring, settings.token_key_bits)
        except Refused as exc:
            await flash(db_session, viewer, str(exc))
            return _to_survey(request, survey)
        except IntegrityError:  # it did: its round has the number this one would have had
            await flash(db_session, viewer, _("The schedule opened a round at this moment; it is the open round below."))
            return _to_survey(request, survey)
        await audit.record(db_session, survey.community_id, viewer.email, "survey", f"round {round_.number} of “{survey.title}” opened now")
        mails = await lifecycle.note_mails(db_session, round_, "invitation", unanswered_only=False)
        await chat.note_post(db_session, survey.community_id, "invitation", round_.id, clock.now())  # sent by the next tick
        await webhooks.note(db_session, survey.community_id, "round.opened", clock.now(), round_.id)
        await flash(db_session, viewer, _("Round %(number)s is open; %(count)s invitations are on their way.", number=round_.number, count=len(mails)))
        await db_session.commit()
        redirect = _to_survey(request, survey)
        redirect.background = BackgroundTask(send_round_mails, mails)
        return redirect


def _scale_labels(data: Form, kind: str) -> list[str]:
    """What the builder's form names for the scale: a choice's options (option1..option10, blanks
    left out) or a 0..10 scale's two ends (low_label, high_label; both blank: the eNPS ends)."""
    if kind == CHOICE:
        return [clean_text(form_text(data, f"option{i}")) for i in range(1, CHOICE_OPTIONS[1] + 1)
                if clean_text(form_text(data, f"option{i}"))]  # fmt: skip
    if kind == ZERO_TO_TEN:
        ends = [clean_text(form_text(data, "low_label")), clean_text(form_text(data, "high_label"))]
        return ends if any(ends) else []
    return []


def _to_survey(request: Request, survey: Survey) -> Redirect:
    return see_other(request.app.route_reverse("surveys:show", community_id=survey.community_id, survey_id=survey.id))


class InstrumentsController(Controller):
    """Facilitators build their own instrument: agree-or-disagree statements (with reverse keys), 0 to 10
    questions or single-choice questions with their options, and one open question."""

    path = "/c/{community_id:uuid}/instruments"
    include_in_schema = False
    dependencies = facilitator_routes()
    ROWS = 10

    @get("/new")
    async def new(self, facilitation: NamedDependency[Membership]) -> Template:
        return page(
            "pulse/instrument_form.html", community=facilitation.community, values={"points": "5", "kind": AGREEMENT},
            errors={}, rows=self.ROWS, options=CHOICE_OPTIONS[1],
        )  # fmt: skip

    @post("/")
    async def create(
        self,
        request: Request,
        data: Form,
        facilitation: NamedDependency[Membership],
        viewer: NamedDependency[Viewer],
        db_session: NamedDependency[AsyncSession],
    ) -> Template | Redirect:
        values = {k: (v[-1] if isinstance(v, list) else v) for k, v in data.items()}
        items = [
            (f"q{i}", clean_text(form_text(data, f"item{i}")), bool(form_text(data, f"reverse{i}")))
            for i in range(1, self.ROWS + 1)
            if clean_text(form_text(data, f"item{i}"))
        ]
        name = clean_text(form_text(data, "name"))
        kind = form_text(data, "kind") or AGREEMENT  # forms from before kinds existed are agreement
        labels = _scale_labels(data, kind)
        too_long = (len(name) > 120 or any(len(text) > 300 for _k, text, _r in items) or len(form_text(data, "free_text")) > 300
                    or any(len(label) > 80 for label in labels))  # fmt: skip
        try:
            if too_long:
                raise ValueError(_("keep the name to 120 characters, each statement to 300 and each option or end to 80."))
            points = int(form_text(data, "points") or 0) if kind == AGREEMENT else 0
            key = "custom_" + uuid.uuid4().hex[:12]
            instrument = custom_instrument(
                key, name, points, items, form_text(data, "free_text") or None, i18n.current_language(), kind, labels
            )
        except (ValueError, InstrumentError) as exc:
            reason = exc.reason if isinstance(exc, InstrumentError) else str(exc)
            message = _("Check the instrument: %(reason)s") % {"reason": reason}
            if too_long:
                pass
            elif not name:
                message = _("Give the instrument a name.")
            elif not items:
                message = _("Write at least one statement.")
            elif kind == CHOICE and len(labels) < CHOICE_OPTIONS[0]:
                message = _("Give a single choice at least two options.")
            elif kind == ZERO_TO_TEN and len([end for end in labels if end]) == 1:
                message = _("Name both ends of the 0 to 10 scale, or neither.")
            elif kind != AGREEMENT and any(reverse for _k, _t, reverse in items):
                message = _("Only agree-or-disagree statements can be reversed; untick “reversed” for a 0 to 10 or single-choice question.")
            return page(
                "pulse/instrument_form.html",
                status_code=422,
                community=facilitation.community,
                values=values,
                errors={"instrument": message},
                rows=self.ROWS,
                options=CHOICE_OPTIONS[1],
            )
        await services.save_custom_instrument(db_session, facilitation.community_id, instrument)
        await audit.record(db_session, facilitation.community_id, viewer.email, "survey", f"instrument “{name}” created")
        await flash(db_session, viewer, _("Instrument saved. Choose it when you create a survey."))
        return see_other(request.app.route_reverse("surveys:index", community_id=facilitation.community_id))
