"""The facilitators' webhooks page: register an endpoint, rotate its secret, remove it, send a
test event, and see the last deliveries. A secret is shown once, in the answer to the request
that made it (never in a notice: those are stored with the session)."""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import urlsplit

from litestar import Controller, Request, get, post
from litestar.background_tasks import BackgroundTask
from litestar.di import NamedDependency
from litestar.exceptions import NotFoundException
from litestar.params import FromPath, URLEncodedBody
from litestar.response import Redirect, Template
from sqlalchemy.ext.asyncio import AsyncSession

from safespace import clock
from safespace.audit import entries as audit
from safespace.errors import InvalidInput, Refused
from safespace.i18n import gettext as _
from safespace.identity.models import Membership
from safespace.privacy.crypto import Keyring
from safespace.settings import Settings
from safespace.web.guards import facilitator_routes
from safespace.web.pages import form_text, page, see_other
from safespace.web.session import Viewer, flash
from safespace.webhooks import services
from safespace.webhooks.models import EVENTS, WebhookEndpoint

SendWebhooks = Callable[..., Awaitable[int]]  # WebhookSender.deliver_due with its sessionmaker and keyring


class WebhooksController(Controller):
    path = "/c/{community_id:uuid}/webhooks"
    include_in_schema = False
    dependencies = facilitator_routes()

    @get("/", name="webhooks:show")
    async def show(self, facilitation: NamedDependency[Membership], db_session: NamedDependency[AsyncSession]) -> Template:
        return await _page(db_session, facilitation)

    @post("/", name="webhooks:add")
    async def add(
        self,
        request: Request,
        data: URLEncodedBody[dict[str, Any]],
        facilitation: NamedDependency[Membership],
        viewer: NamedDependency[Viewer],
        db_session: NamedDependency[AsyncSession],
        keyring: NamedDependency[Keyring],
        settings: NamedDependency[Settings],
    ) -> Template | Redirect:
        """Register an endpoint and answer with the page showing its secret, this once."""
        url, chosen = form_text(data, "url"), data.get("events", [])
        chosen = chosen if isinstance(chosen, list) else [chosen]
        try:
            endpoint, secret = await services.register(db_session, keyring, facilitation.community_id, url, chosen, clock.now(),
                                                       settings.webhook_allow_private)  # fmt: skip
        except Refused as exc:
            await flash(db_session, viewer, str(exc))
            return _to_page(request, facilitation)
        except InvalidInput as exc:
            return await _page(db_session, facilitation, 422, errors=exc.errors, values={"url": url, "events": chosen})
        await audit.record(db_session, facilitation.community_id, viewer.email, "webhook", f"endpoint on {_host(endpoint)} registered")
        return await _page(db_session, facilitation, shown_secret=(endpoint.id, secret))

    @post("/{endpoint_id:uuid}/rotate", name="webhooks:rotate")
    async def rotate(
        self, endpoint_id: FromPath[uuid.UUID], facilitation: NamedDependency[Membership], viewer: NamedDependency[Viewer],
        db_session: NamedDependency[AsyncSession], keyring: NamedDependency[Keyring],
    ) -> Template:  # fmt: skip
        endpoint = await _endpoint(db_session, facilitation, endpoint_id)
        secret = services.rotate(endpoint, keyring)
        await audit.record(db_session, facilitation.community_id, viewer.email, "webhook", f"secret of the endpoint on {_host(endpoint)} rotated")
        return await _page(db_session, facilitation, shown_secret=(endpoint.id, secret))

    @post("/{endpoint_id:uuid}/remove", name="webhooks:remove")
    async def remove(
        self, request: Request, endpoint_id: FromPath[uuid.UUID], facilitation: NamedDependency[Membership], viewer: NamedDependency[Viewer],
        db_session: NamedDependency[AsyncSession],
    ) -> Redirect:  # fmt: skip
        endpoint = await _endpoint(db_session, facilitation, endpoint_id)
        await audit.record(db_session, facilitation.community_id, viewer.email, "webhook", f"endpoint on {_host(endpoint)} removed")
        await services.remove(db_session, endpoint)
        await flash(db_session, viewer, _("The endpoint is removed; nothing more is sent to it."))
        return _to_page(request, facilitation)

    @post("/{endpoint_id:uuid}/test", name="webhooks:test")
    async def test(
        self, request: Request, endpoint_id: FromPath[uuid.UUID], facilitation: NamedDependency[Membership], viewer: NamedDependency[Viewer],
        db_session: NamedDependency[AsyncSession], send_webhooks: NamedDependency[SendWebhooks],
    ) -> Redirect:  # fmt: skip
        """Note a ping and send it after the response: the request never waits on the receiver."""
        services.ping(db_session, await _endpoint(db_session, facilitation, endpoint_id), clock.now())
        await flash(db_session, viewer, _("A test event is on its way. Reload this page in a moment to see whether it arrived."))
        redirect = _to_page(request, facilitation)
        redirect.background = BackgroundTask(send_webhooks, community_id=facilitation.community_id)
        return redirect


async def _endpoint(db: AsyncSession, facilitation: Membership, endpoint_id: uuid.UUID) -> WebhookEndpoint:
    try:
        return await services.endpoint_of(db, facilitation.community_id, endpoint_id)
    except LookupError:
        raise NotFoundException(_("This webhook endpoint does not exist (any more).")) from None


async def _page(db: AsyncSession, facilitation: Membership, status_code: int = 200, **context: Any) -> Template:
    endpoints = await services.endpoint_views(db, facilitation.community)
    context = {"errors": {}, "values": {"events": list(EVENTS)}, "shown_secret": None} | context
    # Every page is sent with Cache-Control: no-store (app._common_headers), this one's secret too.
    return page("webhooks/page.html", status_code, community=facilitation.community, endpoints=endpoints, events=EVENTS,
                most=services.MAX_ENDPOINTS, **context)  # fmt: skip


def _host(endpoint: WebhookEndpoint) -> str:
    """How the audit log names an endpoint: its host, not a path that may hold the receiver's token."""
    return urlsplit(endpoint.url).netloc


def _to_page(request: Request, facilitation: Membership) -> Redirect:
    return see_other(request.app.route_reverse("webhooks:show", community_id=facilitation.community_id))
