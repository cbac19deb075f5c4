"""Check-in pages: the facilitator's (start, show the code, reveal, keep or discard) and the
members' (open the code, answer, see "counted" and the live count, see the reveal)."""

from __future__ import annotations

import uuid
from typing import Any
from zoneinfo import ZoneInfo

import segno
from litestar import Controller, Request, get, post
from litestar.channels import ChannelsPlugin
from litestar.di import NamedDependency, Provide
from litestar.exceptions import NotFoundException
from litestar.params import FromPath, URLEncodedBody
from litestar.response import Redirect, Template
from markupsafe import Markup
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from safespace import clock, i18n, schedule
from safespace.checkin import lifecycle, live, services
from safespace.checkin.models import CheckIn
from safespace.checkin.results import revealed_result
from safespace.errors import InvalidInput, Refused
from safespace.i18n import gettext as _
from safespace.identity.models import Membership
from safespace.privacy.crypto import Keyring
from safespace.pulse.models import Survey
from safespace.settings import Settings
from safespace.web.guards import facilitator_routes
from safespace.web.pages import form_text, page, see_other

Form = URLEncodedBody[dict[str, Any]]


def join_url(settings: Settings, checkin: CheckIn) -> str:
    return f"{settings.base_url}/checkin/{checkin.code}"


def qr_svg(url: str) -> Markup:
    """The join address as a QR code, drawn here as SVG (no image service learns the code)."""
    return Markup(segno.make(url, error="m").svg_inline(scale=5, border=2, svgclass="qr", dark="#000", light="#fff"))


async def provide_checkin(
    checkin_id: FromPath[uuid.UUID], facilitation: NamedDependency[Membership], db_session: NamedDependency[AsyncSession]
) -> CheckIn:
    found = await services.in_community(db_session, facilitation.community_id, checkin_id)
    if found is None:
        raise NotFoundException(_("There is no such check-in in this community."))
    return found


async def _surveys(db: AsyncSession, community_id: uuid.UUID) -> list[Survey]:
    return list(await db.scalars(select(Survey).where(Survey.community_id == community_id).order_by(Survey.title)))


class CheckInsController(Controller):
    """The facilitator's side, under the community."""

    path = "/c/{community_id:uuid}/checkins"
    include_in_schema = False
    dependencies = facilitator_routes() | {"checkin": Provide(provide_checkin)}

    async def _start_page(self, db: AsyncSession, membership: Membership, status: int = 200, **extra: Any) -> Template:
        choices = await services.statement_choices(db, membership.community_id)
        language = i18n.current_language()
        grouped: dict[str, list[tuple[str, str]]] = {}
        for ref, (instrument, item_key) in choices.items():
            grouped.setdefault(instrument.name.get(language), []).append((ref, instrument.item(item_key).text.get(language)))
        context = {"errors": {}, "values": {}, "chosen": []} | extra
        return page(
            "checkin/start.html",
            status_code=status,
            community=membership.community,
            grouped=grouped,
            checkins=await services.of_community(db, membership.community_id),
            **context,
        )

    @get("/", name="checkins:index")
    async def index(self, facilitation: NamedDependency[Membership], db_session: NamedDependency[AsyncSession]) -> Template:
        return await self._start_page(db_session, facilitation)

    @post("/", name="checkins:start")
    async def start(
        self,
        request: Request,
        data: Form,
        facilitation: NamedDependency[Membership],
        db_session: NamedDependency[AsyncSession],
        settings: NamedDependency[Settings],
    ) -> Template | Redirect:
        refs = data.get("statement", [])
        refs = refs if isinstance(refs, list) else [refs]
        values = {name: form_text(data, name) for name in ("question", "points", "prompt")}
        try:
            points = int(values["points"] or 5)
            choices = await services.statement_choices(db_session, facilitation.community_id)
            instrument = services.checkin_instrument(choices, refs, values["question"], points, i18n.current_language())
            checkin = await services.start(
                db_session, facilitation.community, instrument, values["prompt"], clock.now(), settings.checkin_close_minutes / 60
            )
        except InvalidInput as refusal:
            return await self._start_page(db_session, facilitation, 422, errors=refusal.errors, values=values, chosen=refs)
        except ValueError:
            return await self._start_page(db_session, facilitation, 422, errors={"points": _("Choose a 5- or 7-point scale.")}, values=values, chosen=refs)
        return see_other(request.app.route_reverse("checkins:show", community_id=facilitation.community_id, checkin_id=checkin.id))

    @get("/{checkin_id:uuid}", name="checkins:show")
    async def show(
        self,
        checkin: NamedDependency[CheckIn],
        facilitation: NamedDependency[Membership],
        db_session: NamedDependency[AsyncSession],
        settings: NamedDependency[Settings],
        keyring: NamedDependency[Keyring],
    ) -> Template:
        return await self._show(db_session, facilitation, checkin, settings, keyring)

    async def _show(
        self, db: AsyncSession, membership: Membership, checkin: CheckIn, settings: Settings, keyring: Keyring,
        status: int = 200, error: str | None = None,
    ) -> Template:  # fmt: skip
        url = join_url(settings, checkin)
        count = await services.answered(db, checkin.id)
        return page(
            "checkin/show.html",
            status_code=status,
            community=membership.community,
            checkin=checkin,
            instrument=services.instrument_of(checkin),
            language=i18n.current_language(),
            join_url=url,
            closes=checkin.closes_at.astimezone(ZoneInfo(membership.community.time_zone)),
            qr=qr_svg(url),
            live_state=live.state_of(checkin, count),
            result=await revealed_result(db, keyring, checkin, i18n.current_language()),
            surveys=await _surveys(db, membership.community_id),
            error=error,
        )

    @post("/{checkin_id:uuid}/reveal", name="checkins:reveal")
    async def reveal(
        self,
        request: Request,
        checkin: NamedDependency[CheckIn],
        facilitation: NamedDependency[Membership],
        db_session: NamedDependency[AsyncSession],
        settings: NamedDependency[Settings],
        keyring: NamedDependency[Keyring],
        channels: NamedDependency[ChannelsPlugin],
    ) -> Template | Redirect:
        was_open = checkin.state == "open"
        try:
            await lifecycle.reveal(db_session, keyring, checkin.id)
        except services.TooFew as refusal:
            return await self._show(db_session, facilitation, checkin, settings, keyring, 409, str(refusal))
        await db_session.commit()
        if was_open:
            lifecycle.forget_key(keyring, checkin.id)
        live.publish(channels, checkin, live.state_of(checkin, await services.answered(db_session, checkin.id)))
        if was_open:  # after the room has heard: the closed ledger's old pages
            await schedule.scrub(db_session, schedule.CHECKIN_ANSWER_TABLES)
        return see_other(request.app.route_reverse("checkins:show", community_id=facilitation.community_id, checkin_id=checkin.id))

    @post("/{checkin_id:uuid}/close", name="checkins:close")
    async def close(
        self,
        request: Request,
        checkin: NamedDependency[CheckIn],
        facilitation: NamedDependency[Membership],
        db_session: NamedDependency[AsyncSession],
        keyring: NamedDependency[Keyring],
        channels: NamedDependency[ChannelsPlugin],
    ) -> Redirect:
        """Stop answers without revealing (below k: nothing is ever shown)."""
        if await lifecycle.close(db_session, keyring, checkin.id):
            await db_session.commit()
            lifecycle.forget_key(keyring, checkin.id)
            await db_session.refresh(checkin)
            live.publish(channels, checkin, live.state_of(checkin, await services.answered(db_session, checkin.id)))
            await schedule.scrub(db_session, schedule.CHECKIN_ANSWER_TABLES)  # after the room has heard: the closed ledger's old pages
        return see_other(request.app.route_reverse("checkins:show", community_id=facilitation.community_id, checkin_id=checkin.id))

    @post("/{checkin_id:uuid}/outcome", name="checkins:outcome")
    async def outcome(
        self,
        request: Request,
        data: Form,
        checkin: NamedDependency[CheckIn],
        facilitation: NamedDependency[Membership],
        db_session: NamedDependency[AsyncSession],
        settings: NamedDependency[Settings],
        keyring: NamedDependency[Keyring],
    ) -> Template | Redirect:
        choice = form_text(data, "outcome")
        survey_id = None
        if choice == "trend":
            wanted = form_text(data, "survey")
            surveys = {str(s.id): s for s in await _surveys(db_session, facilitation.community_id)}
            if wanted not in surveys:
                return await self._show(db_session, facilitation, checkin, settings, keyring, 422, _("Choose the survey whose trend this check-in joins."))
            survey_id = surveys[wanted].id
        elif choice != "discarded":
            return await self._show(db_session, facilitation, checkin, settings, keyring, 422, _("Choose whether to keep this check-in or discard it."))
        try:
            await lifecycle.decide(db_session, checkin, choice, survey_id)
        except Refused as refusal:
            return await self._show(db_session, facilitation, checkin, settings, keyring, 409, str(refusal))
        return see_other(request.app.route_reverse("checkins:show", community_id=facilitation.community_id, checkin_id=checkin.id))
