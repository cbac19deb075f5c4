"""Pages for failure stories: the wall, sharing (with the identifying-details warning), My story."""

from __future__ import annotations

from typing import Any

from litestar import Controller, Request, get, post
from litestar.di import NamedDependency, Provide
from litestar.params import FromQuery, URLEncodedBody
from litestar.response import Template
from sqlalchemy.ext.asyncio import AsyncSession

from safespace.i18n import gettext as _
from safespace.identity import signin
from safespace.identity.models import Membership
from safespace.identity.services import InvalidInput
from safespace.privacy.crypto import Keyring
from safespace.settings import Settings
from safespace.stories import services
from safespace.web import form_text, page, provide_membership, provide_viewer

Form = URLEncodedBody[dict[str, Any]]
RECEIPT_ATTEMPTS = 10  # wrong receipt codes per client per 15 minutes


class StoriesController(Controller):
    path = "/c/{community_id:uuid}/stories"
    include_in_schema = False
    dependencies = {
        "viewer": Provide(provide_viewer, sync_to_thread=False),
        "membership": Provide(provide_membership),
    }

    @get("/")
    async def wall(
        self,
        membership: NamedDependency[Membership],
        db_session: NamedDependency[AsyncSession],
        keyring: NamedDependency[Keyring],
        tag: FromQuery[str] = "",
        q: FromQuery[str] = "",
    ) -> Template:
        stories = await services.wall(db_session, keyring, membership.community_id, tag or None, q or None)
        return page(
            "stories/wall.html", community=membership.community, stories=stories, tags=services.DEFAULT_TAGS, tag=tag, q=q
        )

    def _form(self, membership: Membership, status: int = 200, **context: Any) -> Template:
        context = {"values": {}, "errors": {}, "findings": []} | context
        return page(
            "stories/share.html", status_code=status, community=membership.community, tags=services.DEFAULT_TAGS, **context
        )

    @get("/new")
    async def new(self, membership: NamedDependency[Membership]) -> Template:
        return self._form(membership)

    @post("/")
    async def share(
        self,
        data: Form,
        membership: NamedDependency[Membership],
        db_session: NamedDependency[AsyncSession],
        keyring: NamedDependency[Keyring],
        settings: NamedDependency[Settings],
    ) -> Template:
        values = {name: form_text(data, name) for name in services.FIELDS} | {
            "tags": data.get("tags", []),
            "wants_advice": form_text(data, "wants_advice"),
        }
        try:
            text, tags, wants_advice = services.read_form(values)
        except InvalidInput as exc:
            return self._form(membership, 422, values=values, errors=exc.errors)
        findings = await services.identifying_details(db_session, membership.community_id, text)
        if findings and form_text(data, "confirmed") != "yes":
            # A server round trip: the warning works without JavaScript.
            return self._form(membership, 200, values=values, findings=findings)
        try:
            code = await services.share(
                db_session, keyring, membership, text, tags, wants_advice, settings.stories_per_week
            )
        except services.WeeklyLimit:
            message = _("You have shared %(n)s stories this week, the most a member may. Keep this one for next week.") % {
                "n": settings.stories_per_week
            }
            return self._form(membership, 429, values=values, errors={"form": message})
        return page("stories/receipt.html", community=membership.community, code=code)

    @get("/mine")
    async def mine_form(self, membership: NamedDependency[Membership]) -> Template:
        return page("stories/mine.html", community=membership.community, story=None, text=None, errors={})

    @post("/mine")
    async def mine(
        self,
        request: Request,
        data: Form,
        membership: NamedDependency[Membership],
        db_session: NamedDependency[AsyncSession],
        keyring: NamedDependency[Keyring],
        secret: NamedDependency[bytes],
    ) -> Template:
        community = membership.community
        client = request.client.host if request.client else "unknown"
        code = form_text(data, "code")
        limited = await signin.over_limit(db_session, signin.rate_key(secret, "receipt", client), RECEIPT_ATTEMPTS)
        await db_session.commit()  # the attempt counts even when the answer below is an error
        if limited:
            errors = {"code": _("Too many attempts. Wait 15 minutes, then try again.")}
            return page("stories/mine.html", status_code=429, community=community, story=None, text=None, errors=errors)
        story = await services.find_by_receipt(db_session, membership.community_id, code)
        if story is None:
            errors = {"code": _("No story matches this receipt code. Check it and try again.")}
            return page("stories/mine.html", status_code=404, community=community, story=None, text=None, errors=errors)
        if form_text(data, "action") == "withdraw":
            await services.withdraw(db_session, story)
            return page("stories/mine.html", community=community, story=None, text=None, errors={}, withdrawn=True)
        return page(
            "stories/mine.html", community=community, story=story, text=services.open_story(keyring, story), errors={}, code=code
        )

