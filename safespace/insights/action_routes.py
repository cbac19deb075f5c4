"""Facilitators' actions: plan one from a result, keep its log, follow its statement afterwards."""

from __future__ import annotations

import uuid
from typing import Any

from litestar import Controller, Request, Response, get, post
from litestar.background_tasks import BackgroundTask
from litestar.di import NamedDependency, Provide
from litestar.exceptions import NotFoundException
from litestar.params import FromPath, FromQuery, URLEncodedBody
from litestar.response import Redirect, Template
from sqlalchemy.ext.asyncio import AsyncSession

from safespace import clock
from safespace.audit import entries as audit
from safespace.chat import services as chat
from safespace.errors import InvalidInput, Refused
from safespace.i18n import gettext as _
from safespace.identity.models import Community, Membership
from safespace.insights import actions, exports
from safespace.insights.controllers import provide_round
from safespace.insights.models import ACTION_STATUSES
from safespace.privacy.crypto import Keyring
from safespace.pulse.lifecycle import note_mails
from safespace.pulse.mail import RoundMails
from safespace.pulse.models import Round
from safespace.web.guards import facilitator_routes
from safespace.web.pages import form_text, page, see_other
from safespace.web.session import Viewer, flash
from safespace.webhooks import services as webhooks

Form = URLEncodedBody[dict[str, Any]]
FIELDS = ("title", "owner", "due_on", "round", "instrument", "item")


def _no_action() -> NotFoundException:
    return NotFoundException(_("There is no such action in this community."))


class ActionsController(Controller):
    path = "/c/{community_id:uuid}/insights/actions"
    include_in_schema = False
    dependencies = facilitator_routes() | {"round_": Provide(provide_round)}

    async def _list(
        self, db: AsyncSession, community: Community, status: str | None, instrument: str | None,
        code: int = 200, **extra: Any,
    ) -> Template:  # fmt: skip
        status = status if status in ACTION_STATUSES else None
        every = await actions.actions(db, community)
        shown = [a for a in every if (status is None or a.status == status) and (instrument is None or a.instrument == instrument)]
        instruments = sorted({(a.instrument, a.instrument_name or a.instrument) for a in every if a.instrument})
        context = {"values": {}, "errors": {}, "about": None} | extra
        return page(
            "insights/actions.html", status_code=code, community=community, actions=shown, total=len(every),
            status=status, instrument=instrument, instruments=instruments,
            statuses=[(s, actions.status_name(s)) for s in ACTION_STATUSES], **context,
        )  # fmt: skip

    @get("/", name="actions:list")
    async def index(
        self, facilitation: NamedDependency[Membership], db_session: NamedDependency[AsyncSession],
        status: FromQuery[str | None] = None, instrument: FromQuery[str | None] = None,
        round: FromQuery[str | None] = None, item: FromQuery[str | None] = None,
    ) -> Template:  # fmt: skip
        """The list, and the form to plan one; `round`, `instrument`, `item`: the result it answers
        (the "Plan an action" link beside a result)."""
        community = facilitation.community
        about = None
        if round:
            try:
                about = await actions.subject(db_session, community, round, instrument or "", item or "")
            except LookupError:
                raise NotFoundException(_("There is no such result to act on.")) from None
        values = {"round": round or "", "instrument": instrument or "", "item": item or ""} if about else {}
        return await self._list(db_session, community, status, None if about else instrument, values=values, about=about)

    @post("/", name="actions:create")
    async def create(
        self, request: Request, data: Form, facilitation: NamedDependency[Membership], viewer: NamedDependency[Viewer],
        db_session: NamedDependency[AsyncSession],
    ) -> Template | Redirect:  # fmt: skip
        community = facilitation.community
        values = {key: form_text(data, key) for key in FIELDS}
        try:
            about = await actions.subject(db_session, community, values["round"], values["instrument"], values["item"])
        except LookupError:
            raise NotFoundException(_("There is no such result to act on.")) from None
        try:
            action = await actions.create_action(
                db_session, community, title=values["title"], owner=values["owner"], due_on=values["due_on"], about=about
            )
        except InvalidInput as exc:
            return await self._list(db_session, community, None, None, 422, values=values, errors=exc.errors, about=about)
        await flash(db_session, viewer, _("Action planned. Members see it on “Our results”."))
        return _to_action(request, community.id, action.id)

    @get("/{action_id:uuid}", name="actions:show")
    async def show(
        self, action_id: FromPath[uuid.UUID], facilitation: NamedDependency[Membership],
        db_session: NamedDependency[AsyncSession], keyring: NamedDependency[Keyring],
    ) -> Template:  # fmt: skip
        return await self._show(db_session, keyring, facilitation.community, action_id)

    async def _show(
        self, db: AsyncSession, keyring: Keyring, community: Community, action_id: uuid.UUID, code: int = 200, **extra: Any
    ) -> Template:
        # This action only: the follow-up reads every later round's results.
        found = next(iter(await actions.actions(db, community, action_id=action_id, keyring=keyring, with_log=True)), None)
        if found is None:
            raise _no_action()
        context = {"values": {"status": found.status}, "errors": {}} | extra
        return page("insights/action.html", status_code=code, community=community, action=found,
                    statuses=[(s, actions.status_name(s)) for s in ACTION_STATUSES], **context)  # fmt: skip

    @post("/{action_id:uuid}", name="actions:update")
    async def update(
        self, request: Request, data: Form, action_id: FromPath[uuid.UUID], facilitation: NamedDependency[Membership],
        viewer: NamedDependency[Viewer], db_session: NamedDependency[AsyncSession], keyring: NamedDependency[Keyring],
    ) -> Template | Redirect:  # fmt: skip
        community = facilitation.community
        values = {key: form_text(data, key) for key in ("status", "text")}
        try:
            await actions.update_action(db_session, community, action_id, status=values["status"], text=values["text"])
        except LookupError:
            raise _no_action() from None
        except InvalidInput as exc:
            return await self._show(db_session, keyring, community, action_id, 422, values=values, errors=exc.errors)
        await flash(db_session, viewer, _("Action updated."))
        return _to_action(request, community.id, action_id)

    @get(["/export.csv", "/export.json"], name="actions:export")
    async def export(
        self, request: Request, facilitation: NamedDependency[Membership], db_session: NamedDependency[AsyncSession],
        status: FromQuery[str | None] = None,
    ) -> Response:  # fmt: skip
        rows = await actions.actions(db_session, facilitation.community, status=status if status in ACTION_STATUSES else None)
        await audit.downloaded(request, db_session, "actions")
        return exports.export(request, "actions", exports.ACTIONS_HEADER, exports.action_rows(rows), rows)

    @post("/summaries/{round_id:uuid}", name="actions:publish")
    async def publish(
        self, request: Request, data: Form, round_: NamedDependency[Round], facilitation: NamedDependency[Membership],
        viewer: NamedDependency[Viewer], db_session: NamedDependency[AsyncSession],
        send_round_mails: NamedDependency[RoundMails],
    ) -> Redirect:  # fmt: skip
        """Publish a closed round's "you said, we did" and mail it to every active member, in their
        language, after the commit (the mails are noted with it, as round invitations are)."""
        community = facilitation.community
        back = request.app.route_reverse("insights:round", community_id=community.id, round_id=round_.id)
        try:
            await actions.publish_summary(db_session, community, round_, form_text(data, "summary"))
        except (Refused, InvalidInput) as exc:
            message = " ".join(exc.errors.values()) if isinstance(exc, InvalidInput) else str(exc)
            await flash(db_session, viewer, message)
            return see_other(f"{back}#summary")
        mails = await note_mails(db_session, round_, "summary", unanswered_only=False)
        await chat.note_post(db_session, community.id, "summary", round_.id, clock.now())  # where the community has a chat
        await webhooks.note(db_session, community.id, "action.published", clock.now(), round_.id)  # sent by the next tick
        await flash(db_session, viewer, _("Published. %(count)s members get it by mail.", count=len(mails)))
        await db_session.commit()
        redirect = see_other(f"{back}#summary")
        redirect.background = BackgroundTask(send_round_mails, mails)
        return redirect


def _to_action(request: Request, community_id: uuid.UUID, action_id: uuid.UUID) -> Redirect:
    return see_other(request.app.route_reverse("actions:show", community_id=community_id, action_id=action_id))
