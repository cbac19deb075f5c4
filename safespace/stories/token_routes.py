"""HTTP side of story and reply tokens: a key and a blind signature (signed in), then the story or
reply itself with the token and no session (app.py: ANONYMOUS; cookies refused, nothing logged)."""

from __future__ import annotations

import uuid

import msgspec
from litestar import Request, Response, Router, get, post
from litestar.di import NamedDependency
from litestar.openapi.datastructures import ResponseSpec
from litestar.params import FromPath, FromQuery, JSONBody
from sqlalchemy.ext.asyncio import AsyncSession

from safespace.errors import InvalidInput
from safespace.i18n import gettext as _
from safespace.identity.models import Membership
from safespace.privacy import token_keys
from safespace.privacy.crypto import Keyring
from safespace.privacy.token_keys import TokenRefused, b64url, from_b64url
from safespace.settings import Settings
from safespace.stories import services, tokens
from safespace.stories.controllers import finding_labels
from safespace.stories.tokens import ReplyRedemption, StoryRedemption, StoryTokenKey
from safespace.web.errors import problem, problem_responses
from safespace.web.guards import member_routes
from safespace.web.session import SESSION_COOKIE

STORY_PATH, REPLY_PATH = "/api/v1/stories", "/api/v1/replies"


class StoryBlindRequest(msgspec.Struct, forbid_unknown_fields=True):
    key_id: uuid.UUID
    blinded_msg: str


class Receipt(msgspec.Struct):
    receipt: str  # shown once: the author's only way back to the story


class Finding(msgspec.Struct):
    label: str
    # What matched, for patterns (an email, a phone number, a web address, a date). None for a
    # member's name: echoing which word matched the roster would answer "is X a member?".
    text: str | None


class Findings(msgspec.Struct):
    findings: list[Finding]


def _problem(exc: Exception) -> Response:
    if isinstance(exc, TokenRefused):
        return problem(**token_keys.refusal(exc, _("Token refused")))
    if isinstance(exc, services.WeeklyLimit):
        return problem(429, _("Weekly limit"), _("You have taken this week's tokens already. Keep this one for next week."))
    if isinstance(exc, InvalidInput):
        return problem(422, _("Check the text"), next(iter(exc.errors.values())), errors=exc.errors)
    raise exc


def _with_cookie(request: Request) -> Response | None:
    if SESSION_COOKIE in request.cookies:
        return problem(400, _("Sent with a session"), _("Send this without cookies, so it cannot be paired with you."))
    return None


@get("/api/v1/communities/{community_id:uuid}/story-tokens/key", tags=["tokens"], responses=problem_responses(400, 401, 404))
async def story_token_key(
    membership: NamedDependency[Membership],
    db_session: NamedDependency[AsyncSession],
    keyring: NamedDependency[Keyring],
    settings: NamedDependency[Settings],
    kind: FromQuery[str] = "story",
) -> Response[StoryTokenKey]:
    """This week's public key for story (or reply) tokens of the community."""
    try:
        return Response(await tokens.key_for(db_session, keyring, membership.community_id, kind, settings.token_key_bits))
    except TokenRefused as exc:
        return _problem(exc)


@post("/api/v1/communities/{community_id:uuid}/story-tokens", tags=["tokens"], status_code=200, responses=problem_responses(400, 401, 403, 404, 409, 429))
async def story_token(
    data: JSONBody[StoryBlindRequest],
    membership: NamedDependency[Membership],
    db_session: NamedDependency[AsyncSession],
    keyring: NamedDependency[Keyring],
    settings: NamedDependency[Settings],
    secret: NamedDependency[bytes],
) -> Response[dict[str, str]]:
    """Sign a blinded story or reply token; counts the member's weekly quota."""
    try:
        signature = await tokens.issue(
            db_session, keyring, secret, membership, data.key_id, from_b64url(data.blinded_msg, "blinded token"),
            settings.stories_per_week,
        )  # fmt: skip
    except (TokenRefused, services.WeeklyLimit) as exc:
        await db_session.rollback()
        return _problem(exc)
    return Response({"blind_sig": b64url(signature)})


@get("/api/v1/token-keys/communities/{community_id:uuid}", tags=["tokens"], responses=problem_responses(400, 404))
async def published_story_keys(community_id: FromPath[uuid.UUID], db_session: NamedDependency[AsyncSession]) -> list[StoryTokenKey]:
    """This week's story and reply keys of a community, served to anyone without a session
    (app.py: ANONYMOUS): the browser checks the key it was given signed in is among them."""
    return await tokens.published_keys(db_session, community_id)


@post(
    STORY_PATH,
    tags=["tokens"],
    status_code=201,
    responses=problem_responses(400, 404, 409, 422, 429)
    | {200: ResponseSpec(Findings, description="Nothing stored: the text may point to someone (the findings say where)")},
)
async def redeem_story(
    request: Request,
    data: JSONBody[StoryRedemption],
    db_session: NamedDependency[AsyncSession],
    keyring: NamedDependency[Keyring],
    secret: NamedDependency[bytes],
) -> Response[Receipt]:
    """A story with a token and nothing else. 200 with findings when it may point to someone."""
    if refused := _with_cookie(request):
        return refused
    try:
        code, findings = await tokens.redeem_story(db_session, keyring, secret, data)
    except (TokenRefused, InvalidInput) as exc:
        await db_session.rollback()
        return _problem(exc)
    if code is None:
        labels = finding_labels()
        kinds = list(dict.fromkeys(f.kind for f in findings))  # each kind once, names without the name
        shown = [Finding(labels[f.kind], f.text) for f in findings if f.kind != "name"]
        return Response(Findings(([Finding(labels["name"], None)] if "name" in kinds else []) + shown), status_code=200)
    return Response(Receipt(code), status_code=201)


@post(REPLY_PATH, tags=["tokens"], status_code=201, responses=problem_responses(400, 404, 409, 422))
async def redeem_reply(
    request: Request, data: JSONBody[ReplyRedemption], db_session: NamedDependency[AsyncSession], keyring: NamedDependency[Keyring]
) -> Response[dict[str, bool]]:
    """A reply with a token and nothing else; it goes out with the community's next batch."""
    if refused := _with_cookie(request):
        return refused
    try:
        await tokens.redeem_reply(db_session, keyring, data)
    except (TokenRefused, InvalidInput) as exc:
        await db_session.rollback()
        return _problem(exc)
    return Response({"stored": True}, status_code=201)


story_token_router = Router(path="/", route_handlers=[story_token_key, story_token], dependencies=member_routes())
anonymous_story_routes = [redeem_story, redeem_reply, published_story_keys]
