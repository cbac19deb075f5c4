"""The members' side of a check-in: /checkin/CODE (answer, "counted", the reveal) and its live
event stream. Any signed-in member of the check-in's community; anyone else finds nothing."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from typing import Any

import msgspec
from litestar import Controller, Request, get, post
from litestar.channels import ChannelsPlugin
from litestar.datastructures import Cookie
from litestar.di import NamedDependency, Provide
from litestar.exceptions import NotFoundException
from litestar.params import FromPath, FromQuery, URLEncodedBody
from litestar.response import Redirect, ServerSentEvent, ServerSentEventMessage, Template
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from safespace import clock, i18n
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
SKIP = "skip"


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


def read_form(instrument, form: dict[str, str]) -> dict[str, int | None]:  # noqa: ANN001
    """The radio buttons as an answer set; InvalidInput names each statement left unanswered."""
    answers: dict[str, int | None] = {}
    errors = {}
    for item in instrument.items:
        value = form.get(f"a.{item.key}", "")
        if value == SKIP:
            answers[item.key] = None
        elif value.isdigit() and 1 <= int(value) <= instrument.scale.points:
            answers[item.key] = int(value)
        else:
            errors[f"a.{item.key}"] = _("Choose an answer, or “Prefer not to answer”.")
    if errors:
        raise InvalidInput(errors)
    return answers


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
        self, request: Request, db: AsyncSession, keyring: Keyring, checkin: CheckIn, person_id: uuid.UUID,
        status: int = 200, **extra: Any,
    ) -> Template:  # fmt: skip
        joined = await db.scalar(
            select(CheckInParticipation.receipt_hash).where(
                CheckInParticipation.checkin_id == checkin.id, CheckInParticipation.person_id == person_id
            )
        )
        receipt = answering.open_receipt(keyring, checkin, person_id, request.cookies.get(answering.receipt_cookie(checkin)))
        if receipt is not None and (joined is None or answering.nonce_hash(receipt.nonce) != joined):
            receipt = None  # an older receipt: it cannot change the answer
        values = {f"a.{k}": (SKIP if v is None else str(v)) for k, v in (receipt.answers if receipt else {}).items()}
        count = await services.answered(db, checkin.id)
        return page(
            "checkin/answer.html",
            status_code=status,
            checkin=checkin,
            instrument=services.instrument_of(checkin),
            language=i18n.current_language(),
            counted=joined is not None,
            can_change=receipt is not None,
            live_state=live.state_of(checkin, count),
            result=await revealed_result(db, keyring, checkin, i18n.current_language()),
            values=values | extra.pop("values", {}),
            errors=extra.pop("errors", {}),
            **extra,
        )

    @get("/{code:str}", name="checkin:join")
    async def join(
        self, request: Request, checkin: NamedDependency[CheckIn], viewer: NamedDependency[Viewer],
        db_session: NamedDependency[AsyncSession], keyring: NamedDependency[Keyring],
    ) -> Template:  # fmt: skip
        return await self._page(request, db_session, keyring, checkin, viewer.person_id)

    @post("/{code:str}", name="checkin:answer")
    async def answer(
        self, request: Request, data: Form, checkin: NamedDependency[CheckIn], viewer: NamedDependency[Viewer],
        db_session: NamedDependency[AsyncSession], keyring: NamedDependency[Keyring],
        channels: NamedDependency[ChannelsPlugin], settings: NamedDependency[Settings],
    ) -> Template | Redirect:  # fmt: skip
        form = {k: form_text(data, k) for k in data}
        instrument = services.instrument_of(checkin)
        cookie_name = answering.receipt_cookie(checkin)
        try:
            answers = read_form(instrument, form)
            receipt, count = await answering.answer(
                db_session, keyring, checkin, viewer.person_id, answers, form.get("comment", ""), request.cookies.get(cookie_name)
            )
        except (InvalidInput, AnswerError) as refusal:
            errors = refusal.errors if isinstance(refusal, InvalidInput) else {"form": str(refusal)}
            return await self._page(request, db_session, keyring, checkin, viewer.person_id, 422, values=form, errors=errors)
        except (services.NotOpen, answering.AnsweredElsewhere) as refusal:
            return await self._page(request, db_session, keyring, checkin, viewer.person_id, 409, refusal=str(refusal))
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
        checkin_id, closes_at = checkin.id, checkin.closes_at

        async def current() -> live.LiveState:
            async with checkin_hub.sessionmaker() as db:
                found = await db.get(CheckIn, checkin_id)
                if found is None:  # deleted meanwhile (with its community): answers are closed
                    return live.LiveState(state="closed", count=None)
                return live.state_of(found, await services.answered(db, checkin_id))

        async def stream() -> AsyncIterator[ServerSentEventMessage]:
            async with channels.start_subscription(live.channel(checkin_id)) as subscriber:
                state = await current()  # subscribed first, read second: an update between the two is not lost
                highest = state.count or 0
                yield ServerSentEventMessage(data=msgspec.json.encode(state).decode(), event="state")
                if state.state != "open":
                    return
                updates: asyncio.Queue[bytes] = asyncio.Queue()
                async with subscriber.run_in_background(updates.put, join=False):
                    while True:
                        # Past its time the check-in closes at the schedule's next pass, which on
                        # SQLite (or from cron) cannot tell this process: the stream then reads the
                        # state itself every few seconds until it has closed.
                        wait = max((closes_at - clock.now()).total_seconds(), 0) + live.POLL_AFTER_DUE_SECONDS
                        try:
                            update = msgspec.json.decode(await asyncio.wait_for(updates.get(), wait), type=live.LiveState)
                        except TimeoutError:
                            update = await current()
                            if update.state == "open" and clock.now() < closes_at + live.POLL_AFTER_DUE_FOR:
                                continue
                            if update.state == "open":
                                return  # no schedule has run since: the page's next load says so
                        if update.state == "open" and (update.count or 0) <= highest:
                            continue  # two processes' updates may cross: the count only grows
                        highest = max(highest, update.count or 0)
                        yield ServerSentEventMessage(data=msgspec.json.encode(update).decode(), event="state")
                        if update.state != "open":
                            return

        return ServerSentEvent(stream())
