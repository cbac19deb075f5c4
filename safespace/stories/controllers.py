"""Pages for failure stories: the wall, sharing (with the identifying-details warning), reactions,
replies and reports. My story with a receipt: receipt_pages.py; facilitators' review: review_pages.py."""

from __future__ import annotations

import uuid
from typing import Annotated, Any

from litestar import Controller, Request, get, post
from litestar.di import NamedDependency, Provide
from litestar.exceptions import NotFoundException
from litestar.params import FromPath, FromQuery, QueryParameter, URLEncodedBody
from litestar.response import Redirect, Template
from sqlalchemy.ext.asyncio import AsyncSession

from safespace import clock, i18n, ratelimit
from safespace.errors import InvalidInput
from safespace.i18n import gettext as _
from safespace.identity.models import Membership
from safespace.privacy.crypto import Keyring
from safespace.pulse import services as pulse
from safespace.settings import Settings
from safespace.stories import moderation, responses, services, tokens, wall_page
from safespace.stories.models import Story
from safespace.web.guards import member_place, member_routes, no_community, request_reads, request_session
from safespace.web.pages import csrf_input, form_text, page, see_other

Form = URLEncodedBody[dict[str, Any]]
CHECKS_PER_WINDOW = 200  # identifying-details checks per member per 15 minutes (about one per keystroke pause)


async def private_mode(db: AsyncSession, membership: Membership) -> dict[str, Any]:
    """What the stories pages need for private mode: this week's published keys, and the open
    rounds whose answer tokens the page takes ahead of use (templates/_private.html)."""
    return {
        "story_keys": await tokens.published_keys(db, membership.community_id),
        "open_rounds": await pulse.open_rounds_for(db, membership.community_id, membership.person_id),
    }


async def provide_story(
    story_id: FromPath[uuid.UUID], membership: NamedDependency[Membership], db_session: NamedDependency[AsyncSession]
) -> Story:
    """The released story of the path, in the member's community; 404 otherwise."""
    try:
        return await services.released_story(db_session, membership.community_id, story_id)
    except LookupError:
        raise NotFoundException(_("There is no such story here.")) from None


def _to_wall(request: Request, story: Story, sent: str = "") -> Redirect:
    """Back to the story on the wall; `sent` names the notice the wall shows (sent_notice)."""
    wall = request.app.route_reverse("stories:wall", community_id=story.community_id)
    return see_other(f"{wall}{'?sent=' + sent if sent else ''}#s-{story.id}")


class StoriesController(Controller):
    """The wall, sharing, reactions, replies and reports, for every active member. The released
    story of the path is the `story` dependency."""

    path = "/c/{community_id:uuid}/stories"
    include_in_schema = False
    dependencies = member_routes() | {"story": Provide(provide_story)}

    @get("/", name="stories:wall")
    async def wall(
        self,
        request: Request,
        community_id: FromPath[uuid.UUID],
        keyring: NamedDependency[Keyring],
        secret: NamedDependency[bytes],
        tag: FromQuery[str] = "",
        q: FromQuery[str] = "",
        sent: FromQuery[str] = "",
        page_number: Annotated[int, QueryParameter(name="page", ge=1, le=100_000)] = 1,
    ) -> Template:
        # The member's place from the session, then a few index reads on bare connections; the
        # content is kept for unfiltered pages, with slots for what is the viewer's (wall_page.py).
        place = member_place(request, community_id)
        reads = request_reads(request)
        community = await wall_page.community(reads, community_id, clock.now())
        if community is None:  # deleted since the session was read
            raise no_community()

        def render(rows: list[Any], more: bool, replies: dict, counts: dict, shown_page: int) -> str:
            stories, texts = wall_page.opened(keyring, rows, replies)
            return request.app.template_engine.get_template("stories/_wall_content.html").render(
                community=community, role=place.role, stories=stories, replies=texts, reactions=counts,
                pressed=wall_page.pressed_slot, csrf_input=wall_page.slot(wall_page.CSRF), kinds=reaction_labels(),
                tags=community.tags, tag=tag, q=q, page_number=shown_page, more=more,
            )  # fmt: skip

        if tag or q:  # chosen by their decrypted text: read through the request's session, never kept
            shown = await services.wall(request_session(request), keyring, community_id, tag or None, q or None, page_number)
            rows = [item.story for item in shown.stories]
            counts = await wall_page.counts(reads, [row.id for row in rows])
            replies = await wall_page.replies(reads, [row.id for row in rows])
            content = wall_page.Rendered.of(render(rows, shown.more, replies, counts, shown.page), counts)
        else:
            # Kept under the community as read, its wall revision included: a kept page is used
            # without reading its stories, and any change to them brings a new revision.
            key = (community, page_number, i18n.current_language(), place.role)
            content = wall_page.kept(key)
            if content is None:  # the page with its counts and replies in one statement
                rows, more, replies = await wall_page.page_stories(reads, community_id, page_number)
                counts = wall_page.page_counts(rows)
                content = wall_page.keep(key, wall_page.Rendered.of(render(rows, more, replies, counts, page_number), counts))
        pressed, open_rounds = await wall_page.own_state(reads, secret, community_id, request.user.person_id, content.reacted)
        return page(
            "stories/wall.html",
            community=community,
            content=content.filled(csrf_input(request), pressed),
            open_rounds=open_rounds,
            notice=sent_notice(sent),
        )

    @post("/{story_id:uuid}/react")
    async def react(
        self,
        request: Request,
        story: NamedDependency[Story],
        data: Form,
        membership: NamedDependency[Membership],
        db_session: NamedDependency[AsyncSession],
        secret: NamedDependency[bytes],
    ) -> Redirect:
        try:
            await responses.toggle_reaction(db_session, secret, membership.person_id, story, form_text(data, "kind"))
        except InvalidInput as exc:
            raise NotFoundException(next(iter(exc.errors.values()))) from None
        return _to_wall(request, story)

    @post("/{story_id:uuid}/flag")
    async def flag(
        self,
        request: Request,
        story: NamedDependency[Story],
        data: Form,
        membership: NamedDependency[Membership],
        db_session: NamedDependency[AsyncSession],
        secret: NamedDependency[bytes],
    ) -> Redirect:
        try:
            reply_id = uuid.UUID(form_text(data, "reply")) if form_text(data, "reply") else None
            await moderation.flag(db_session, secret, membership.person_id, story, reply_id)
        except (ValueError, LookupError):
            raise NotFoundException(_("There is no such reply here.")) from None
        # No notice row: a write tied to the member in this transaction would pair them with the report.
        return _to_wall(request, story, "report")

    @post("/check", media_type="application/json")
    async def check(
        self,
        data: Form,
        membership: NamedDependency[Membership],
        db_session: NamedDependency[AsyncSession],
        secret: NamedDependency[bytes],
    ) -> dict[str, list[dict[str, str]]]:
        """The identifying-details check while the member types (the page works without it).

        Limited per member: it says whether a word is a member's name, so unlimited it would let
        someone read the roster by guessing.
        """
        key = ratelimit.rate_key(secret, "story-check", str(membership.person_id))
        if await ratelimit.over_limit(db_session, key, CHECKS_PER_WINDOW):
            return {"findings": []}
        values = {name: form_text(data, name) for name in services.FIELDS}
        text = services.StoryText(**{k: v[:5000] for k, v in values.items()})
        findings = await services.identifying_details(db_session, membership.community_id, text)
        labels = finding_labels()
        return {"findings": [{"label": labels[f.kind], "text": f.text} for f in findings]}

    @post("/{story_id:uuid}/reply")
    async def reply(
        self,
        request: Request,
        story: NamedDependency[Story],
        data: Form,
        membership: NamedDependency[Membership],
        db_session: NamedDependency[AsyncSession],
        keyring: NamedDependency[Keyring],
    ) -> Redirect:
        try:
            await responses.reply(db_session, keyring, story, form_text(data, "reply"))
        except InvalidInput:
            return _to_wall(request, story, "empty")
        # No notice row (see flag): the page says thanks from the address alone.
        return _to_wall(request, story, "reply")

    async def _form(self, db: AsyncSession, membership: Membership, status: int = 200, **context: Any) -> Template:
        context = {"values": {}, "errors": {}, "findings": []} | context
        return page(
            "stories/share.html",
            status_code=status,
            community=membership.community,
            tags=moderation.community_tags(membership.community),
            **(await private_mode(db, membership)),
            **context,
        )

    @get("/new")
    async def new(self, membership: NamedDependency[Membership], db_session: NamedDependency[AsyncSession]) -> Template:
        return await self._form(db_session, membership)

    @post("/")
    async def share(
        self,
        data: Form,
        membership: NamedDependency[Membership],
        db_session: NamedDependency[AsyncSession],
        keyring: NamedDependency[Keyring],
        settings: NamedDependency[Settings],
        secret: NamedDependency[bytes],
    ) -> Template:
        values = {name: form_text(data, name) for name in services.FIELDS} | {
            "tags": data.get("tags", []),
            "wants_advice": form_text(data, "wants_advice"),
        }
        try:
            text, tags, wants_advice = services.read_form(values, moderation.community_tags(membership.community))
        except InvalidInput as exc:
            return await self._form(db_session, membership, 422, values=values, errors=exc.errors)
        findings = await services.identifying_details(db_session, membership.community_id, text)
        if findings and form_text(data, "confirmed") != "yes":
            # A server round trip: the warning works without JavaScript.
            return await self._form(db_session, membership, 200, values=values, findings=findings)
        try:
            code = await services.share(
                db_session,
                keyring,
                membership,
                text,
                tags,
                wants_advice,
                settings.stories_per_week,
                secret,
                moderated=membership.community.moderate_stories,
            )
        except services.WeeklyLimit:
            message = _("You have shared %(n)s stories this week, the most a member may. Keep this one for next week.") % {
                "n": settings.stories_per_week
            }
            return await self._form(db_session, membership, 429, values=values, errors={"form": message})
        return page("stories/receipt.html", community=membership.community, code=code)

    @get("/mine")
    async def mine_form(self, membership: NamedDependency[Membership]) -> Template:
        # The code goes to RECEIPT_PATH, not here: opening one's story must not pair the session
        # with it (ReceiptController; static/mine.js sends it with no cookie, after the quiet window).
        return page("stories/mine.html", community=membership.community, story=None, text=None, errors={}, signed_in=True)


def sent_notice(sent: str) -> dict[str, str] | None:
    notices = {
        "reply": (_("Thank you. Your reply goes out with the next batch, without your name."), "success"),
        "report": (_("Thank you. A facilitator will look at it; nobody sees who reported it."), "success"),
        "empty": (_("Write a reply first."), "error"),
    }
    if sent not in notices:
        return None
    message, kind = notices[sent]
    return {"message": message, "kind": kind}


def finding_labels() -> dict[str, str]:
    return {
        "name": _("a member's name"),
        "email": _("an email address"),
        "phone": _("a phone number"),
        "url": _("a web address"),
        "date": _("an exact date"),
    }


def reaction_labels() -> dict[str, str]:
    return {"been_there": _("I've been there"), "helps_me": _("This helps me"), "thank_you": _("Thank you for sharing")}

