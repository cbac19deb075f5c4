"""Facilitators' review page: stories waiting (text only), reports, topics, the release time."""

from __future__ import annotations

import uuid
from collections.abc import Awaitable
from typing import Any

from litestar import Controller, Request, get, post
from litestar.di import NamedDependency
from litestar.exceptions import NotFoundException
from litestar.params import URLEncodedBody
from litestar.response import Redirect, Template
from sqlalchemy.ext.asyncio import AsyncSession

from safespace.audit import entries as audit
from safespace.errors import InvalidInput
from safespace.i18n import gettext as _
from safespace.i18n import weekday_names
from safespace.identity.models import Membership
from safespace.privacy.crypto import Keyring
from safespace.settings import Settings
from safespace.stories import moderation
from safespace.web.guards import facilitator_routes
from safespace.web.pages import form_text, page, see_other
from safespace.web.session import Viewer, flash

Form = URLEncodedBody[dict[str, Any]]


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
        await audit.record(db_session, facilitation.community_id, viewer.email, "moderation", "moderation on")
        await flash(db_session, viewer, _("Stories now wait for a facilitator's approval."))
        return _to_review(request, facilitation)

    @post("/moderation/off", name="review:moderation_off")
    async def moderation_off(self, request: Request, facilitation: NamedDependency[Membership], viewer: NamedDependency[Viewer],
                             db_session: NamedDependency[AsyncSession]) -> Redirect:  # fmt: skip
        facilitation.community.moderate_stories = False
        await audit.record(db_session, facilitation.community_id, viewer.email, "moderation", "moderation off")
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
    # The decision (hide, dismiss, approve, decline, release-time, topics), never who wrote the story: nobody knows.
    await audit.record(db, facilitation.community_id, viewer.email, "moderation", request.url.path.rsplit("/", 1)[-1])
    await flash(db, viewer, done)
    return _to_review(request, facilitation)
