"""Pages for failure stories: the wall, sharing (with the identifying-details warning), My story."""

from __future__ import annotations

import uuid
from collections.abc import Awaitable
from typing import Annotated, Any

from litestar import Controller, Request, get, post
from litestar.di import NamedDependency
from litestar.exceptions import NotFoundException
from litestar.params import FromPath, FromQuery, QueryParameter, URLEncodedBody
from litestar.response import Redirect, Template
from sqlalchemy.ext.asyncio import AsyncSession

from safespace import i18n, ratelimit
from safespace.errors import InvalidInput
from safespace.i18n import gettext as _
from safespace.i18n import weekday_names
from safespace.identity.models import Community, Membership
from safespace.privacy.crypto import Keyring
from safespace.pulse import services as pulse
from safespace.settings import Settings
from safespace.stories import moderation, services, tokens
from safespace.stories.models import Story
from safespace.web.guards import facilitator_routes, member_routes
from safespace.web.pages import form_text, page, see_other
from safespace.web.session import Viewer, flash, language_for

Form = URLEncodedBody[dict[str, Any]]
# Wrong receipt codes per 15 minutes. A code whose first group (the locator) names a story is
# counted against that story, so guessing at one story stops after 10 tries whoever and wherever
# the guesser is; a code that names no story is counted against the client's address. So someone
# guessing behind the same office NAT never locks the real author out (their code names their
# story), and scrypt (tens of ms, 16 MiB) runs at most RECEIPT_ATTEMPTS times per story and
# RECEIPT_CHECKS times in all per window.
RECEIPT_ATTEMPTS = 10
RECEIPT_CHECKS = 500
CHECKS_PER_WINDOW = 200  # identifying-details checks per member per 15 minutes (about one per keystroke pause)


async def private_mode(db: AsyncSession, membership: Membership) -> dict[str, Any]:
    """What the stories pages need for private mode: this week's published keys, and the open
    rounds whose answer tokens the page takes ahead of use (templates/_private.html)."""
    return {
        "story_keys": await tokens.published_keys(db, membership.community_id),
        "open_rounds": await pulse.open_rounds_for(db, membership.community_id, membership.person_id),
    }


class StoriesController(Controller):
    path = "/c/{community_id:uuid}/stories"
    include_in_schema = False
    dependencies = member_routes()

    @get("/")
    async def wall(
        self,
        membership: NamedDependency[Membership],
        db_session: NamedDependency[AsyncSession],
        keyring: NamedDependency[Keyring],
        secret: NamedDependency[bytes],
        tag: FromQuery[str] = "",
        q: FromQuery[str] = "",
        sent: FromQuery[str] = "",
        page_number: Annotated[int, QueryParameter(name="page", ge=1, le=100_000)] = 1,
    ) -> Template:
        shown = await services.wall(db_session, keyring, membership.community_id, tag or None, q or None, page_number)
        stories = shown.stories
        ids = [item.story.id for item in stories]
        return page(
            "stories/wall.html",
            community=membership.community,
            membership=membership,
            stories=stories,
            replies=await services.released_replies(db_session, keyring, ids),
            reactions=await services.reaction_counts(db_session, ids),
            pressed=await services.own_reactions(db_session, secret, membership.person_id, ids),
            kinds=reaction_labels(),
            tags=moderation.community_tags(membership.community),
            tag=tag,
            q=q,
            page_number=shown.page,
            more=shown.more,
            notice=sent_notice(sent),
            **(await private_mode(db_session, membership)),
        )

    async def _released(self, db: AsyncSession, membership: Membership, story_id: uuid.UUID):  # noqa: ANN202
        try:
            return await services.released_story(db, membership.community_id, story_id)
        except LookupError:
            raise NotFoundException(_("There is no such story here.")) from None

    @post("/{story_id:uuid}/react")
    async def react(
        self,
        story_id: FromPath[uuid.UUID],
        data: Form,
        membership: NamedDependency[Membership],
        db_session: NamedDependency[AsyncSession],
        secret: NamedDependency[bytes],
    ) -> Redirect:
        story = await self._released(db_session, membership, story_id)
        try:
            await services.toggle_reaction(db_session, secret, membership.person_id, story, form_text(data, "kind"))
        except InvalidInput as exc:
            raise NotFoundException(next(iter(exc.errors.values()))) from None
        return see_other(f"/c/{membership.community_id}/stories#s-{story_id}")

    @post("/{story_id:uuid}/flag")
    async def flag(
        self,
        story_id: FromPath[uuid.UUID],
        data: Form,
        membership: NamedDependency[Membership],
        db_session: NamedDependency[AsyncSession],
        secret: NamedDependency[bytes],
    ) -> Redirect:
        story = await self._released(db_session, membership, story_id)
        community_id = membership.community_id
        try:
            reply_id = uuid.UUID(form_text(data, "reply")) if form_text(data, "reply") else None
            await moderation.flag(db_session, secret, membership.person_id, story, reply_id)
        except (ValueError, LookupError):
            raise NotFoundException(_("There is no such reply here.")) from None
        # No notice row: a write tied to the member in this transaction would pair them with the report.
        return see_other(f"/c/{community_id}/stories?sent=report#s-{story_id}")

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
        story_id: FromPath[uuid.UUID],
        data: Form,
        membership: NamedDependency[Membership],
        db_session: NamedDependency[AsyncSession],
        keyring: NamedDependency[Keyring],
    ) -> Redirect:
        story = await self._released(db_session, membership, story_id)
        community_id = membership.community_id
        try:
            await services.reply(db_session, keyring, story, form_text(data, "reply"))
        except InvalidInput:
            return see_other(f"/c/{community_id}/stories?sent=empty#s-{story_id}")
        # No notice row (see flag): the page says thanks from the address alone.
        return see_other(f"/c/{community_id}/stories?sent=reply#s-{story_id}")

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


RECEIPT_PATH = "/stories/mine"
EDIT_CHECKS = 10  # identifying-details checks per story per 15 minutes when its author edits it


class ReceiptController(Controller):
    """My story, with the receipt code alone: no session is read (app.py: ANONYMOUS), so opening,
    editing or withdrawing a story pairs it with no one. A browser with JavaScript sends the code
    with no cookie at all (static/mine.js); without it, the cookie goes along unread."""

    path = RECEIPT_PATH
    include_in_schema = False

    @get("/")
    async def form(self, request: Request) -> Template:
        i18n.set_language(language_for(request))
        return page("stories/mine.html", community=None, story=None, text=None, errors={})

    @post("/", name="receipt:open")
    async def open(
        self, request: Request, data: Form, db_session: NamedDependency[AsyncSession], keyring: NamedDependency[Keyring],
        secret: NamedDependency[bytes],
    ) -> Template:  # fmt: skip
        found = await _story_by_code(request, data, db_session, secret)
        if isinstance(found, Template):
            return found
        return await _story_page(db_session, keyring, *found)

    @post("/withdraw", name="receipt:withdraw")
    async def withdraw(
        self, request: Request, data: Form, db_session: NamedDependency[AsyncSession], keyring: NamedDependency[Keyring],
        secret: NamedDependency[bytes],
    ) -> Template:  # fmt: skip
        """Withdrawing deletes the story for good: a first press asks once more, on a page that
        works without script; the second (confirmed=yes) deletes."""
        found = await _story_by_code(request, data, db_session, secret)
        if isinstance(found, Template):
            return found
        story, community, code = found
        if form_text(data, "confirmed") != "yes":
            return page("stories/mine.html", community=community, story=story, text=services.open_story(keyring, story),
                        code=code, errors={}, confirm_withdraw=True)  # fmt: skip
        await services.withdraw(db_session, story)
        return page("stories/mine.html", community=community, story=None, text=None, errors={}, withdrawn=True)

    @post("/edit", name="receipt:edit")
    async def edit(
        self, request: Request, data: Form, db_session: NamedDependency[AsyncSession], keyring: NamedDependency[Keyring],
        secret: NamedDependency[bytes],
    ) -> Template:  # fmt: skip
        found = await _story_by_code(request, data, db_session, secret)
        if isinstance(found, Template):
            return found
        story, community, code = found
        values = {name: form_text(data, name) for name in services.FIELDS}
        try:
            text, _tags, _advice = services.read_form(values, moderation.community_tags(community))
        except InvalidInput as exc:
            return page("stories/mine.html", status_code=422, community=community, story=None, text=None, errors=exc.errors)
        if form_text(data, "confirmed") != "yes":
            if await ratelimit.over_limit(db_session, ratelimit.rate_key(secret, "story-edit-check", str(story.id)), EDIT_CHECKS):
                errors = {"code": _("Too many attempts. Wait 15 minutes, then try again.")}
                return page("stories/mine.html", status_code=429, community=community, story=None, text=None, errors=errors)
            findings = await services.identifying_details(db_session, community.id, text)
            if findings:
                # The same warning as when sharing: the edit is not saved until the writer confirms.
                return page("stories/mine.html", story=story, text=text, replies=[], reactions={}, kinds=reaction_labels(),
                            errors={}, findings=findings, labels=finding_labels(), community=community, code=code)  # fmt: skip
        await services.edit(db_session, keyring, story, text, community.moderate_stories)
        saved = _("Your changes are saved. They wait for a facilitator's review before they are shown.") if community.moderate_stories \
            else _("Your changes are saved.")  # fmt: skip
        return await _story_page(db_session, keyring, story, community, code, saved=saved)


async def _story_by_code(request: Request, data: dict, db: AsyncSession, secret: bytes) -> tuple[Story, Community, str] | Template:
    """The story of the receipt code sent, or the page that says why not (a wrong code, too many
    tries). Wrong codes are counted per story locator and per client, and all checks together."""
    # Sent with no cookie from a page with JavaScript: the page says its language in the form.
    chosen = form_text(data, "lang")
    i18n.set_language(chosen if chosen in i18n.LANGUAGES else language_for(request))
    client = request.client.host if request.client else "unknown"
    code = form_text(data, "code")
    candidates = await services.receipt_candidates(db, code)
    if candidates:
        key = ratelimit.rate_key(secret, "receipt-story", candidates[0].receipt_locator)
    else:
        key = ratelimit.rate_key(secret, "receipt", client)
    checks = ratelimit.rate_key(secret, "receipt-checks", "all")
    if await ratelimit.attempts(db, key) >= RECEIPT_ATTEMPTS or (
        candidates and await ratelimit.attempts(db, checks) >= RECEIPT_CHECKS
    ):
        errors = {"code": _("Too many attempts. Wait 15 minutes, then try again.")}
        return page("stories/mine.html", status_code=429, community=None, story=None, text=None, errors=errors)
    story = await services.find_by_receipt(candidates, code)
    if story is None:
        await ratelimit.over_limit(db, key, RECEIPT_ATTEMPTS)  # only wrong codes count
        if candidates:
            await ratelimit.over_limit(db, checks, RECEIPT_CHECKS)
        await db.commit()
        errors = {"code": _("No story matches this receipt code. Check it and try again.")}
        return page("stories/mine.html", status_code=404, community=None, story=None, text=None, errors=errors)
    return story, await db.get_one(Community, story.community_id), code


async def _story_page(db: AsyncSession, keyring: Keyring, story: Story, community: Community, code: str, saved: str | None = None) -> Template:
    return page(
        "stories/mine.html",
        community=community,
        code=code,
        story=story,
        text=services.open_story(keyring, story),
        replies=(await services.released_replies(db, keyring, [story.id])).get(story.id, []),
        reactions=(await services.reaction_counts(db, [story.id])).get(story.id, {}),
        kinds=reaction_labels(),
        errors={},
        saved=saved,
    )


class ReviewController(Controller):
    """Facilitators read stories waiting for review (text only) and approve or decline them."""

    path = "/c/{community_id:uuid}/stories/review"
    include_in_schema = False
    dependencies = facilitator_routes()

    @get("/", name="review:queue")
    async def queue(
        self,
        facilitation: NamedDependency[Membership],
        db_session: NamedDependency[AsyncSession],
        keyring: NamedDependency[Keyring],
        settings: NamedDependency[Settings],
    ) -> Template:
        community = facilitation.community
        months, per_tag = await moderation.activity(db_session, community.id)
        return page(
            "stories/review.html",
            community=community,
            waiting=await moderation.review_queue(db_session, keyring, community.id),
            flagged=await moderation.flagged(db_session, keyring, community.id),
            tags="\n".join(moderation.community_tags(community)),
            months=months,
            per_tag=per_tag,
            release_weekday=settings.story_release_weekday if community.story_release_weekday is None
            else community.story_release_weekday,
            release_hour=settings.story_release_hour if community.story_release_hour is None else community.story_release_hour,
            weekdays=weekday_names(),
            errors={},
        )

    # One route per decision. A refused input (a bad hour, too many topics, a reason too long)
    # comes back as a notice on the review page, like every other outcome here.

    @post("/moderation/on", name="review:moderation_on")
    async def moderation_on(self, request: Request, facilitation: NamedDependency[Membership], viewer: NamedDependency[Viewer],
                            db_session: NamedDependency[AsyncSession]) -> Redirect:  # fmt: skip
        facilitation.community.moderate_stories = True
        await flash(db_session, viewer, _("Stories now wait for a facilitator's approval."))
        return _to_review(request, facilitation)

    @post("/moderation/off", name="review:moderation_off")
    async def moderation_off(self, request: Request, facilitation: NamedDependency[Membership], viewer: NamedDependency[Viewer],
                             db_session: NamedDependency[AsyncSession]) -> Redirect:  # fmt: skip
        facilitation.community.moderate_stories = False
        await flash(db_session, viewer, _("Stories now go straight to the next batch."))
        return _to_review(request, facilitation)

    @post("/release-time", name="review:release_time")
    async def release_time(self, request: Request, data: Form, facilitation: NamedDependency[Membership],
                           viewer: NamedDependency[Viewer], db_session: NamedDependency[AsyncSession]) -> Redirect:  # fmt: skip
        change = moderation.set_release(db_session, facilitation.community, form_text(data, "weekday"), form_text(data, "hour"))
        return await _decided(request, facilitation, viewer, db_session, change, _("Weekly release time saved."))

    @post("/topics", name="review:topics")
    async def topics(self, request: Request, data: Form, facilitation: NamedDependency[Membership],
                     viewer: NamedDependency[Viewer], db_session: NamedDependency[AsyncSession]) -> Redirect:  # fmt: skip
        change = moderation.set_tags(db_session, facilitation.community, str(data.get("tags", "")))
        return await _decided(request, facilitation, viewer, db_session, change, _("Topics saved."))

    @post("/hide", name="review:hide")
    async def hide(self, request: Request, data: Form, facilitation: NamedDependency[Membership],
                   viewer: NamedDependency[Viewer], db_session: NamedDependency[AsyncSession]) -> Redirect:  # fmt: skip
        story_id, reply_id = _reported(data)
        change = moderation.hide(db_session, facilitation.community_id, story_id, reply_id, form_text(data, "reason"))
        return await _decided(request, facilitation, viewer, db_session, change, _("Hidden from every page."), _("There is no such story here."))

    @post("/dismiss", name="review:dismiss")
    async def dismiss(self, request: Request, data: Form, facilitation: NamedDependency[Membership],
                      viewer: NamedDependency[Viewer], db_session: NamedDependency[AsyncSession]) -> Redirect:  # fmt: skip
        story_id, reply_id = _reported(data)
        change = moderation.dismiss_flags(db_session, facilitation.community_id, story_id, reply_id)
        return await _decided(request, facilitation, viewer, db_session, change, _("Reports dismissed."), _("There is no such story here."))

    @post("/approve", name="review:approve")
    async def approve(self, request: Request, data: Form, facilitation: NamedDependency[Membership],
                      viewer: NamedDependency[Viewer], db_session: NamedDependency[AsyncSession]) -> Redirect:  # fmt: skip
        change = moderation.moderate(db_session, facilitation.community_id, _story_id(data), True, form_text(data, "reason"))
        return await _decided(request, facilitation, viewer, db_session, change, _("Approved: it goes out with the next batch."),
                              _("There is no such story waiting for review."))  # fmt: skip

    @post("/decline", name="review:decline")
    async def decline(self, request: Request, data: Form, facilitation: NamedDependency[Membership],
                      viewer: NamedDependency[Viewer], db_session: NamedDependency[AsyncSession]) -> Redirect:  # fmt: skip
        change = moderation.moderate(db_session, facilitation.community_id, _story_id(data), False, form_text(data, "reason"))
        return await _decided(request, facilitation, viewer, db_session, change,
                              _("Declined. The author sees your reason with their receipt code."),
                              _("There is no such story waiting for review."))  # fmt: skip


def _to_review(request: Request, facilitation: Membership) -> Redirect:
    return see_other(request.app.route_reverse("review:queue", community_id=facilitation.community_id))


def _story_id(data: dict) -> uuid.UUID:
    try:
        return uuid.UUID(form_text(data, "story"))
    except ValueError:
        raise NotFoundException(_("There is no such story here.")) from None


def _reported(data: dict) -> tuple[uuid.UUID, uuid.UUID | None]:
    """The story, and the reply if the report is about one."""
    try:
        return _story_id(data), uuid.UUID(form_text(data, "reply")) if form_text(data, "reply") else None
    except ValueError:
        raise NotFoundException(_("There is no such story here.")) from None


async def _decided(
    request: Request, facilitation: Membership, viewer: Viewer, db: AsyncSession, change: Awaitable[object], done: str,
    missing: str = "",
) -> Redirect:  # fmt: skip
    """Awaits the change: its notice on success, the refusal's words as an error notice, 404 for a
    story that is not (or no longer) in this community's queue."""
    try:
        await change
    except LookupError:
        raise NotFoundException(missing or _("There is no such story here.")) from None
    except InvalidInput as exc:
        await flash(db, viewer, next(iter(exc.errors.values())), "error")
        return _to_review(request, facilitation)
    await flash(db, viewer, done)
    return _to_review(request, facilitation)


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

