"""HTTP side of answer tokens: fetch a key and a blind signature (signed in), redeem (anonymous).

The redeem route is excluded from the session middleware and from CSRF (app.py: ANONYMOUS):
a cookie that arrives with it is never read, and nothing about the request is logged (P7).
"""

from __future__ import annotations

import uuid

import msgspec
from litestar import Request, Response, Router, get, post
from litestar.di import NamedDependency
from litestar.exceptions import NotFoundException
from litestar.params import FromPath, JSONBody
from sqlalchemy.ext.asyncio import AsyncSession

from safespace.errors import InvalidInput
from safespace.i18n import gettext as _
from safespace.identity.models import Membership
from safespace.privacy import token_keys
from safespace.privacy.crypto import Keyring
from safespace.privacy.token_keys import TokenRefused, b64url
from safespace.pulse import services, tokens
from safespace.pulse.token_queue import Issuance, IssuanceQueue, WrongKey
from safespace.pulse.tokens import PublishedKey, Redemption
from safespace.settings import Settings
from safespace.web.errors import problem, problem_responses
from safespace.web.guards import member_routes, provide_viewer, request_session, require_membership
from safespace.web.session import SESSION_COOKIE

REDEEM_PATH = "/api/v1/answers"
PUBLISHED_PATH = "/api/v1/token-keys"  # every token key, for anyone, without a session


class BlindRequest(msgspec.Struct, forbid_unknown_fields=True):
    key_id: uuid.UUID
    blinded_msg: str  # base64url


class BlindSignature(msgspec.Struct):
    blind_sig: str  # base64url


def _refused(exc: Exception) -> Response:
    if isinstance(exc, TokenRefused):
        return problem(**token_keys.refusal(exc, _("Token refused")))
    if isinstance(exc, services.AlreadyAnswered):
        return problem(409, _("Already answered"), _("You have already answered this round with the signed-in form."))
    if isinstance(exc, tokens.TokensUsedUp):
        return problem(
            409,
            _("Tokens taken"),
            _("This round's answer tokens are in two other browsers: answer in one of them. If you already have, thank you."),
        )
    if isinstance(exc, services.RoundNotOpen):
        return problem(409, _("Round not open"), _("This round is closed; answers are no longer accepted."))
    if isinstance(exc, InvalidInput):
        return problem(422, _("Check your answers"), _("Some answers are not on the scale."), errors=exc.errors)
    raise exc


@get("/api/v1/communities/{community_id:uuid}/rounds/{round_id:uuid}/token-key", tags=["tokens"], responses=problem_responses(400, 401, 404, 409))
async def token_key(
    round_id: FromPath[uuid.UUID],
    membership: NamedDependency[Membership],
    db_session: NamedDependency[AsyncSession],
    keyring: NamedDependency[Keyring],
    settings: NamedDependency[Settings],
) -> Response[PublishedKey]:
    """The public key (JWK and fingerprint) the member blinds their answer token for."""
    try:
        return Response(await tokens.key_for_member(db_session, keyring, membership, round_id, settings.token_key_bits))
    except LookupError:
        raise NotFoundException(_("There is no such round in this community.")) from None
    except services.RoundNotOpen as exc:
        return _refused(exc)


@get("/api/v1/communities/{community_id:uuid}/rounds/{round_id:uuid}/keys", tags=["tokens"], responses=problem_responses(400, 401, 404))
async def round_keys(
    round_id: FromPath[uuid.UUID], membership: NamedDependency[Membership], db_session: NamedDependency[AsyncSession]
) -> list[PublishedKey]:
    """Every answer-token key of a round, so members can check they were all given the same one."""
    try:
        await services.round_in(db_session, membership.community_id, round_id)
    except LookupError:
        raise NotFoundException(_("There is no such round in this community.")) from None
    return await tokens.published_keys(db_session, round_id)


@post("/api/v1/communities/{community_id:uuid}/rounds/{round_id:uuid}/token", tags=["tokens"], status_code=200, responses=problem_responses(400, 401, 403, 404, 409))
async def blind_token(
    request: Request,
    community_id: FromPath[uuid.UUID],
    round_id: FromPath[uuid.UUID],
    data: JSONBody[BlindRequest],
    issuances: NamedDependency[IssuanceQueue],
) -> Response[BlindSignature]:
    """Sign a blinded token: the member joins the round's ledger; one token per member and round."""
    # One dependency, as the answer POST: the viewer comes from the request, and the batch checks
    # active memberships in one query for all its issuances (pulse/token_queue.py).
    viewer = provide_viewer(request)
    try:
        signature = await issuances.issue(Issuance(community_id, viewer.person_id, round_id, data.key_id, data.blinded_msg))
    except LookupError:
        await require_membership(request_session(request), viewer.person_id, community_id)  # strangers: "no community"
        raise NotFoundException(_("There is no such round in this community.")) from None
    except WrongKey:
        return _refused(TokenRefused(_("This key is not the one for you in this round; reload the page."), 409))
    except (TokenRefused, services.AlreadyAnswered, tokens.TokensUsedUp, services.RoundNotOpen) as exc:
        return _refused(exc)
    return Response(BlindSignature(blind_sig=b64url(signature)))


@get(f"{PUBLISHED_PATH}/rounds/{{round_id:uuid}}", tags=["tokens"], responses=problem_responses(400, 404))
async def published_round_keys(round_id: FromPath[uuid.UUID], db_session: NamedDependency[AsyncSession]) -> list[PublishedKey]:
    """Every answer-token key of a round, served to anyone without a session (app.py: ANONYMOUS).

    The browser checks that the key it was given while signed in is one of these before it
    blinds: a key made for one member alone would not be here. An unknown round has no keys.
    """
    return await tokens.published_keys(db_session, round_id)


def sent_with_a_session(request: Request) -> Response | None:
    """The refusal of an answer with a token that came with the session cookie (round and check-in
    answers). The browser sends it with credentials "omit"; a cookie here means a client that would
    pair the answer with a session. Refused rather than ignored, so it is noticed."""
    if SESSION_COOKIE in request.cookies:
        return problem(400, _("Sent with a session"), _("Answers with a token must be sent without cookies, so they cannot be paired with you."))
    return None


@post(REDEEM_PATH, tags=["tokens"], status_code=201, responses=problem_responses(400, 404, 409, 422))
async def redeem(
    request: Request, data: JSONBody[Redemption], db_session: NamedDependency[AsyncSession], keyring: NamedDependency[Keyring]
) -> Response[dict[str, bool]]:
    """Answers with a token and nothing else: no session, no name. Refused with a session cookie."""
    if refused := sent_with_a_session(request):
        return refused
    try:
        await tokens.redeem(db_session, keyring, data)
    except (TokenRefused, services.RoundNotOpen, InvalidInput) as exc:
        await db_session.rollback()
        return _refused(exc)
    return Response({"counted": True}, status_code=201)


token_router = Router(path="/", route_handlers=[token_key, round_keys, blind_token], dependencies=member_routes())
