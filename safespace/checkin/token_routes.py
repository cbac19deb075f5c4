"""Check-in private mode over HTTP (checkin/tokens.py): the member's token (signed in), the key
published to anyone, the answer with a token and no session, and the live stream without one."""

from __future__ import annotations

import hmac

from litestar import Request, Response, Router, get, post
from litestar.channels import ChannelsPlugin
from litestar.di import NamedDependency, Provide
from litestar.params import FromPath, FromQuery, JSONBody
from litestar.response import ServerSentEvent
from sqlalchemy.ext.asyncio import AsyncSession

from safespace.checkin import live, services, tokens
from safespace.checkin.join_pages import _find, no_checkin
from safespace.checkin.models import CheckIn
from safespace.checkin.tokens import CheckInBlindRequest, CheckInRedemption, CheckInTokenKey
from safespace.errors import InvalidInput, Refused
from safespace.i18n import gettext as _
from safespace.privacy.crypto import Keyring
from safespace.privacy.token_keys import TokenRefused, b64url, from_b64url, refusal
from safespace.pulse.token_routes import PUBLISHED_PATH, sent_with_a_session
from safespace.settings import Settings
from safespace.web.errors import problem, problem_responses
from safespace.web.guards import provide_viewer
from surveys.tally import AnswerError

ANSWER_PATH = "/api/v1/checkin-answers"


def _refused(exc: Exception) -> Response:
    if isinstance(exc, TokenRefused):
        return problem(**refusal(exc, _("Token refused")))
    if isinstance(exc, InvalidInput):  # each field's message by its name, as the form shows them
        return problem(422, _("Some answers need attention"), " ".join(dict.fromkeys(exc.errors.values())), errors=exc.errors)
    if isinstance(exc, AnswerError):
        return problem(422, _("Not sent"), str(exc))
    return problem(409, _("Not sent"), str(exc))  # closed, or refused for this member


async def provide_joined(code: FromPath[str], request: Request, db_session: NamedDependency[AsyncSession]) -> CheckIn:
    checkin, _membership = await _find(db_session, code, provide_viewer(request).person_id)
    return checkin


@get("/api/v1/checkins/{code:str}/token-key", tags=["tokens"], responses=problem_responses(401, 404, 409))
async def checkin_token_key(
    checkin: NamedDependency[CheckIn],
    db_session: NamedDependency[AsyncSession],
    keyring: NamedDependency[Keyring],
    settings: NamedDependency[Settings],
) -> Response[CheckInTokenKey]:
    """The check-in's public key for private-mode tokens, made on first use."""
    if checkin.state != "open":
        return _refused(services.NotOpen(_("This check-in is closed; answers are no longer accepted.")))
    return Response(await tokens.key_for(db_session, keyring, checkin, settings.token_key_bits))


@post("/api/v1/checkins/{code:str}/token", tags=["tokens"], status_code=200, responses=problem_responses(400, 401, 404, 409))
async def checkin_token(
    request: Request,
    data: JSONBody[CheckInBlindRequest],
    checkin: NamedDependency[CheckIn],
    db_session: NamedDependency[AsyncSession],
    keyring: NamedDependency[Keyring],
) -> Response[dict[str, str]]:
    """Sign a member's blinded check-in token: at most one, and one more for another browser."""
    try:
        signature = await tokens.issue(
            db_session, keyring, checkin, provide_viewer(request).person_id, data.key_id, from_b64url(data.blinded_msg, "blinded token")
        )
    except (TokenRefused, Refused) as exc:
        await db_session.rollback()
        return _refused(exc)
    return Response({"blind_sig": b64url(signature)})


@get(f"{PUBLISHED_PATH}/checkins/{{code:str}}", tags=["tokens"], responses=problem_responses(400))
async def published_checkin_keys(code: FromPath[str], db_session: NamedDependency[AsyncSession]) -> list[CheckInTokenKey]:
    """The key of the check-in with this code, to anyone without a session (app.py: ANONYMOUS):
    the browser checks that the key it was given signed in is this one. Empty for an unknown code."""
    return await tokens.published_keys(db_session, services.normal_code(code) or "")


@post(ANSWER_PATH, tags=["tokens"], status_code=201, responses=problem_responses(400, 404, 409, 422))
async def redeem_checkin(
    request: Request,
    data: JSONBody[CheckInRedemption],
    db_session: NamedDependency[AsyncSession],
    keyring: NamedDependency[Keyring],
    channels: NamedDependency[ChannelsPlugin],
) -> Response[dict[str, object]]:
    """A check-in answer with a token and nothing else; with its receipt, a change of answer."""
    if refused := sent_with_a_session(request):
        return refused
    try:
        checkin, receipt, count = await tokens.redeem(db_session, keyring, data)
    except (TokenRefused, Refused, InvalidInput, AnswerError) as exc:
        await db_session.rollback()
        return _refused(exc)
    await db_session.commit()  # counted before anyone hears of it
    if count is not None:  # a change of answer publishes nothing
        live.publish(channels, checkin, live.state_of(checkin, count))
    return Response({"receipt": receipt, "counted": True}, status_code=201)


@get(live.EVENTS_PATH.replace("{code}", "{code:str}"), tags=["tokens"], include_in_schema=False)
async def anonymous_events(
    code: FromPath[str],
    db_session: NamedDependency[AsyncSession],
    secret: NamedDependency[bytes],
    channels: NamedDependency[ChannelsPlugin],
    checkin_hub: NamedDependency[live.Hub],
    key: FromQuery[str] = "",  # none: nothing opens
) -> ServerSentEvent:
    """The members' page's live count, opened with the page's stream key and no session."""
    checkin = await services.by_code(db_session, services.normal_code(code) or "")
    if checkin is None or not hmac.compare_digest(live.events_key(secret, checkin), key):
        raise no_checkin()
    await db_session.close()  # a stream may last the meeting: it reads with the hub's own short sessions
    return ServerSentEvent(live.events(checkin, channels, checkin_hub))


checkin_token_router = Router(
    path="/", route_handlers=[checkin_token_key, checkin_token], dependencies={"checkin": Provide(provide_joined)}
)
anonymous_checkin_routes = [published_checkin_keys, redeem_checkin, anonymous_events]
ANONYMOUS_PATHS = [f"^{ANSWER_PATH}$", "^" + live.EVENTS_PATH.replace("{code}", "[^/]+") + "$"]
