"""The chat section of a community's settings: set or replace the URL, remove it, send a test."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from litestar import Controller, Request, post
from litestar.background_tasks import BackgroundTask
from litestar.di import NamedDependency
from litestar.params import URLEncodedBody
from litestar.response import Redirect
from sqlalchemy.ext.asyncio import AsyncSession

from safespace import clock
from safespace.chat import services
from safespace.errors import InvalidInput
from safespace.i18n import gettext as _
from safespace.identity.models import Membership
from safespace.privacy.crypto import Keyring
from safespace.web.guards import facilitator_routes
from safespace.web.pages import form_text, see_other
from safespace.web.session import Viewer, flash

SendChatPosts = Callable[..., Awaitable[int]]  # ChatDelivery.deliver_due with its sessionmaker and keyring


class ChatController(Controller):
    path = "/c/{community_id:uuid}/settings/chat"
    include_in_schema = False
    dependencies = facilitator_routes()

    @post("/", name="chat:set")
    async def set_url(
        self,
        request: Request,
        data: URLEncodedBody[dict[str, Any]],
        facilitation: NamedDependency[Membership],
        viewer: NamedDependency[Viewer],
        db_session: NamedDependency[AsyncSession],
        keyring: NamedDependency[Keyring],
    ) -> Redirect:
        """Set or replace the chat's URL. A refused URL is not shown back (it may hold a token)."""
        try:
            await services.set_channel(db_session, keyring, facilitation.community_id, form_text(data, "chat_url"),
                                       form_text(data, "chat_language"), clock.now())  # fmt: skip
        except InvalidInput as exc:
            await flash(db_session, viewer, exc.errors["chat_url"])
            return _to_settings(request, facilitation)
        await flash(db_session, viewer, _("The chat is set. Send a test message to check that it arrives."))
        return _to_settings(request, facilitation)

    @post("/remove", name="chat:remove")
    async def remove(
        self,
        request: Request,
        facilitation: NamedDependency[Membership],
        viewer: NamedDependency[Viewer],
        db_session: NamedDependency[AsyncSession],
    ) -> Redirect:
        await services.remove_channel(db_session, facilitation.community_id)
        await flash(db_session, viewer, _("The chat is removed; nothing more is posted to it."))
        return _to_settings(request, facilitation)

    @post("/test", name="chat:test")
    async def test(
        self,
        request: Request,
        facilitation: NamedDependency[Membership],
        viewer: NamedDependency[Viewer],
        db_session: NamedDependency[AsyncSession],
        send_chat_posts: NamedDependency[SendChatPosts],
    ) -> Redirect:
        """Note a test post and send it after the response: the request never waits on the chat."""
        if not await services.note_post(db_session, facilitation.community_id, "test", None, clock.now()):
            await flash(db_session, viewer, _("Set the chat's URL first."))
            return _to_settings(request, facilitation)
        await flash(db_session, viewer, _("A test message is on its way. Reload this page in a moment to see whether it arrived."))
        redirect = _to_settings(request, facilitation)
        redirect.background = BackgroundTask(send_chat_posts, community_id=facilitation.community_id)
        return redirect


def _to_settings(request: Request, facilitation: Membership) -> Redirect:
    return see_other(request.app.route_reverse("community:settings", community_id=facilitation.community_id) + "#chat")
