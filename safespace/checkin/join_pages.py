"""The members' side of a check-in: /checkin/CODE (answer, "counted", the reveal) and its live
event stream. Any signed-in member of the check-in's community; anyone else finds nothing."""

from __future__ import annotations

import uuid
from typing import Any

from litestar import Controller, Request, get, post
from litestar.channels import ChannelsPlugin
from litestar.datastructures import Cookie
from litestar.di import NamedDependency, Provide
from litestar.exceptions import NotFoundException
from litestar.params import FromPath, FromQuery, URLEncodedBody
from litestar.response import Redirect, ServerSentEvent, Template
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from safespace import i18n
from safespace.checkin import answering, live, services
from safespace.checkin.models import CheckIn, CheckInParticipation
from safespace.checkin.results import revealed_result
from safespace.errors import InvalidInput
from safespace.i18n import gettext as _
from safespace.identity.members import active_membership
from safespace.identity.models import Membership
from safespace.privacy.crypto import Keyring
from safespace.settings import Settings
from safespace.web.guards import provide_viewer
from safespace.web.pages import form_text, page, see_other
from safespace.web.session import Viewer
from surveys.tally import AnswerError

Form = URLEncodedBody[dict[str, Any]]


def no_checkin() -> NotFoundException:
    # The same for a wrong code and for someone outside the community: a code proves nothing.
    return NotFoundException(_("There is no check-in with this code for you. Check the code, or ask the facilitator."))


async def _find(db: AsyncSession, code: str, person_id: uuid.UUID) -> tuple[CheckIn, Membership]:
    checkin = await services.by_code(db, code)
    if checkin is None:
        raise no_checkin()
    membership = await active_membership(db, person_id, checkin.community_id)
    if membership is None:
        raise no_checkin()
    return checkin, membership


async def provide_joined(code: FromPath[str], viewer: NamedDependency[Viewer], db_session: NamedDependency[AsyncSession]) -> CheckIn:
    checkin, _membership = await _find(db_session, code, viewer.person_id)
    return checkin


class JoinController(Controller):
    path = "/checkin"
    include_in_schema = False
    dependencies = {"viewer": Provide(provide_viewer, sync_to_thread=False), "checkin": Provide(provide_joined)}

    @get("/", name="checkin:enter")
    async def enter(self, request: Request, viewer: NamedDependency[Viewer], code: FromQuery[str | None] = None) -> Template | Redirect:
        """A form to type the code (for those who did not scan the QR code)."""
        if code and services.normal_code(code):
            return see_other(request.app.route_reverse("checkin:join", code=services.normal_code(code)))
        return page("checkin/enter.html")

    async def _page(
        self, request: Request, db: AsyncSession, keyring: Keyring, secret: bytes, checkin: CheckIn, person_id: uuid.UUID,
        status: int = 200, **extra: Any,
    ) -> Template:  # fmt: skip
        ledger = (
            await db.execute(
                select(CheckInParticipation.receipt_hash, CheckInParticipation.tokens).where(
                    CheckInParticipation.checkin_id == checkin.id, CheckInParticipation.person_id == person_id
                )
            )
        ).one_or_none()
        joined = ledger.receipt_hash if ledger is not None else None
        receipt = answering.open_receipt(keyring, checkin, person_id, request.cookies.get(answering.receipt_cookie(checkin)))
        if receipt is not None and (joined is None or answering.nonce_hash(receipt.nonce) != joined):
            receipt = None  # an older receipt: it cannot change the answer
        values = {f"a.{k}": (answering.SKIP if v is None else str(v)) for k, v in (receipt.answers if receipt else {}).items()}
        count = await services.answered(db, checkin.id)
        return page(
            "checkin/answer.html",
            status_code=status,
            checkin=checkin,
            instrument=services.instrument_of(checkin),
            language=i18n.current_language(),
            counted=joined is not None,
            can_change=receipt is not None,
            tokens_taken=ledger.tokens if ledger is not None and joined is None else 0,  # private mode, elsewhere or here
            events_url=live.EVENTS_PATH.format(code=checkin.code) + f"?key={live.events_key(secret, checkin)}",
            live_state=live.state_of(checkin, count),
            result=await revealed_result(db, keyring, checkin, i18n.current_language()),
            values=values | extra.pop("values", {}),
            errors=extra.pop("errors", {}),
            **extra,
        )

    @get("/{code:str}", name="checkin:join")
    async def join(
        self, request: Request, checkin: NamedDependency[CheckIn], viewer: NamedDependency[Viewer],
        db_session: NamedDependency[AsyncSession], keyring: NamedDependency[Keyring], secret: NamedDependency[bytes],
    ) -> Template:  # fmt: skip
        return await self._page(request, db_session, keyring, secret, checkin, viewer.person_id)

    @post("/{code:str}", name="checkin:answer")
    async def answer(
        self, request: Request, data: Form, checkin: NamedDependency[CheckIn], viewer: NamedDependency[Viewer],
        db_session: NamedDependency[AsyncSession], keyring: NamedDependency[Keyring],
        channels: NamedDependency[ChannelsPlugin], settings: NamedDependency[Settings], secret: NamedDependency[bytes],
    ) -> Template | Redirect:  # fmt: skip
        form = {k: form_text(data, k) for k in data}
        instrument = services.instrument_of(checkin)
        cookie_name = answering.receipt_cookie(checkin)
        try:
            answers = answering.read_form(instrument, form)
            receipt, count = await answering.answer(
                db_session, keyring, checkin, viewer.person_id, answers, form.get("comment", ""), request.cookies.get(cookie_name)
            )
        except (InvalidInput, AnswerError) as refusal:
            errors = refusal.errors if isinstance(refusal, InvalidInput) else {"form": str(refusal)}
            return await self._page(request, db_session, keyring, secret, checkin, viewer.person_id, 422, values=form, errors=errors)
        except (services.NotOpen, answering.AnsweredElsewhere, answering.TookToken) as refusal:
            return await self._page(request, db_session, keyring, secret, checkin, viewer.person_id, 409, refusal=str(refusal))
        await db_session.commit()  # counted before anyone hears of it
        if count is not None:  # a change of answer publishes nothing
            live.publish(channels, checkin, live.state_of(checkin, count))
        remaining = max(int((checkin.closes_at - checkin.opened_at).total_seconds()), 60)
        cookie = Cookie(
            key=cookie_name, value=receipt, path=f"/checkin/{checkin.code}", httponly=True, samesite="strict",
            secure=settings.secure_cookies, max_age=remaining,
        )  # fmt: skip
        return Redirect(f"/checkin/{checkin.code}", status_code=303, cookies=[cookie])

    @get("/{code:str}/events", name="checkin:events")
    async def events(self, checkin: NamedDependency[CheckIn], channels: NamedDependency[ChannelsPlugin], checkin_hub: NamedDependency[live.Hub]) -> ServerSentEvent:
        """The live count and state, as server-sent events: what the page shows, nothing more."""
        return ServerSentEvent(live.events(checkin, channels, checkin_hub))
