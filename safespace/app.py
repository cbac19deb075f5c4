"""create_app(settings) -> Litestar: the one place that wires plugins, middleware and routers."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import gc
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from datetime import timedelta
from pathlib import Path
from typing import Any

from advanced_alchemy.extensions.litestar import SQLAlchemyPlugin
from litestar import Litestar, Response, get
from litestar.config.csrf import CSRFConfig
from litestar.datastructures import MutableScopeHeaders, State
from litestar.di import Provide
from litestar.exceptions import HTTPException
from litestar.middleware import DefineMiddleware
from litestar.openapi import OpenAPIConfig
from litestar.openapi.plugins import JsonRenderPlugin, YamlRenderPlugin
from litestar.plugins.jinja import JinjaTemplateEngine
from litestar.static_files import create_static_files_router
from litestar.template import TemplateConfig
from litestar.types import Message, Scope
from sqlalchemy.ext.asyncio import async_sessionmaker

from safespace.audit.pages import AuditController
from safespace.chat.controllers import ChatController
from safespace.chat.delivery import ChatDelivery
from safespace.checkin.controllers import CheckInsController
from safespace.checkin.join_pages import JoinController
from safespace.checkin.live import Hub, channels_plugin
from safespace.checkin.token_routes import ANONYMOUS_PATHS as CHECKIN_ANONYMOUS
from safespace.checkin.token_routes import anonymous_checkin_routes, checkin_token_router
from safespace.db.engine import Reads, alchemy_config, make_engine
from safespace.db.migrate import current_revision, schema_mismatch
from safespace.home import HomeController
from safespace.identity.api import api_router
from safespace.identity.controllers import (
    CommunitiesController,
    CommunityController,
    ProfileController,
)
from safespace.identity.mail import Postman
from safespace.identity.privacy_page import PrivacyController
from safespace.identity.roster_pages import RosterController
from safespace.identity.sign_in_pages import SignInController, SignInLinks
from safespace.identity.signin import SessionReader
from safespace.identity.sso import Providers
from safespace.identity.sso_pages import SsoController, SsoSettingController
from safespace.insights.action_routes import ActionsController
from safespace.insights.api import insights_api
from safespace.insights.community_pages import ObjectivesController, SummaryController, VitalityController
from safespace.insights.controllers import InsightsController
from safespace.insights.trend_figures import TREND_STATES, TrendStates
from safespace.logs import configure_logging
from safespace.mail import Mailer, make_mailer
from safespace.notifications.controllers import NotificationsController
from safespace.notifications.digest import DigestMailer
from safespace.privacy.crypto import Keyring
from safespace.pulse.api import pulse_api
from safespace.pulse.controllers import PulseController
from safespace.pulse.group_commit import AnswerQueue
from safespace.pulse.mail import RoundMailer
from safespace.pulse.survey_pages import InstrumentsController, SurveysController
from safespace.pulse.token_queue import IssuanceQueue
from safespace.pulse.token_routes import PUBLISHED_PATH, REDEEM_PATH, published_round_keys, redeem, token_router
from safespace.schedule import run_periodically
from safespace.settings import Settings, load_settings
from safespace.stories.controllers import StoriesController
from safespace.stories.receipt_pages import RECEIPT_PATH, ReceiptController
from safespace.stories.review_pages import ReviewController
from safespace.stories.token_routes import REPLY_PATH, STORY_PATH, anonymous_story_routes, story_token_router
from safespace.web.errors import RETRY_AFTER, answer_options, handle_http_error, handle_server_error
from safespace.web.guards import DATABASE_STATE_KEY, READS_STATE_KEY
from safespace.web.session import SessionAuthMiddleware
from safespace.web.templates import template_environment
from safespace.web.transaction import commit_before_send
from safespace.webhooks.controllers import WebhooksController
from safespace.webhooks.delivery import WebhookSender

STATIC = Path(__file__).with_name("static")
# Our own scripts, styles and images only: no inline script or style, no other host (a CDN would
# learn who reads which page), no plugins, no <base> rewriting, forms post only to us, no framing.
CSP = "; ".join(
    [
        "default-src 'self'",
        "script-src 'self'",
        "style-src 'self'",
        "img-src 'self'",  # charts are inline SVG and the favicon a file: no data: URLs needed
        "object-src 'none'",
        "base-uri 'none'",
        "form-action 'self'",
        "frame-ancestors 'none'",
    ]
)
# Browser features no page uses, turned off for us and anything we might embed. Every name is one
# Chromium recognises (an unknown name only earns a console warning); interest-cohort and
# browsing-topics keep us out of the browser's ad-interest profiling.
PERMISSIONS_POLICY = ", ".join(
    f"{feature}=()"
    for feature in (
        "accelerometer", "autoplay", "browsing-topics", "camera", "captured-surface-control",
        "clipboard-read", "compute-pressure", "display-capture", "encrypted-media", "fullscreen",
        "gamepad", "geolocation", "gyroscope", "hid", "identity-credentials-get", "idle-detection",
        "interest-cohort", "local-fonts", "magnetometer", "microphone", "midi", "otp-credentials",
        "payment", "picture-in-picture", "private-state-token-issuance",
        "private-state-token-redemption", "publickey-credentials-create", "publickey-credentials-get",
        "screen-wake-lock", "serial", "speaker-selection", "storage-access", "sync-xhr", "usb",
        "window-management", "xr-spatial-tracking",
    )
)  # fmt: skip
# A sign-in link's path is a live token: no page under it may name its address to anyone, us
# included (a proxy's log keeps Referer), even an error page rendered for it.
NO_REFERRER_PREFIXES = ("/signin/",)
# Paths served without a session (the session middleware skips them); /readyz still asks the database.
PUBLIC = ["^/static/", "^/healthz$", "^/readyz$", "^/schema"]
# Anonymous answers with a token: no session is loaded (a cookie sent along is refused by the
# route) and no CSRF token is asked for (the request carries no ambient authority to abuse).
# My story with a receipt code: the code is the only credential (stories/receipt_pages.py).
# A check-in's answers with a token, and its live count opened with the page's stream key.
ANONYMOUS = [
    f"^{REDEEM_PATH}$", f"^{STORY_PATH}$", f"^{REPLY_PATH}$", f"^{PUBLISHED_PATH}/", f"^{RECEIPT_PATH}(/edit|/withdraw)?$",
    *CHECKIN_ANONYMOUS,
]


@get("/healthz", include_in_schema=False, sync_to_thread=False)
def healthz() -> dict[str, str]:
    """Liveness: the process answers. Touches nothing else."""
    return {"status": "ok"}


# /readyz's own limit, shorter than a request's: a load balancer's probe learns at once that a
# frozen database or a pool held by stuck requests makes this process unable to serve.
READY_SECONDS = 2


@get("/readyz", include_in_schema=False)
async def readyz(state: State) -> Response:
    """Readiness: the database answers, and its schema is the revision this code needs. The
    revision's read is the probe itself (two small statements), so nothing needs caching."""
    try:
        async with asyncio.timeout(READY_SECONDS):
            revision = await current_revision(state[DATABASE_STATE_KEY].get_engine())
    except Exception:  # noqa: BLE001 - any failure means "not ready"
        return Response({"status": "database unavailable"}, status_code=503, headers=RETRY_AFTER)
    mismatch = schema_mismatch(revision)
    if mismatch is not None:
        return Response({"status": mismatch.status()}, status_code=503, headers=RETRY_AFTER)
    return Response({"status": "ok"})


async def _common_headers(message: Message, scope: Scope) -> None:
    """Every response, error pages and problem documents included (docs/ARCHITECTURE.md, Requests)."""
    if message["type"] != "http.response.start":
        return
    headers = MutableScopeHeaders.from_message(message)
    path = scope["path"]
    if path.startswith("/static/"):
        # Scripts carry integrity hashes in the (never cached) pages: a browser must revalidate
        # them (ETag) rather than run a stale copy that no longer matches its hash after an upgrade.
        headers.setdefault("Cache-Control", "no-cache")
    else:
        # Pages, API answers and exports carry personal or anonymous content: no cache, shared or
        # local, keeps them (a shared computer's back button, a proxy). /healthz too: it costs nothing.
        headers["Cache-Control"] = "no-store"
    if path.startswith(NO_REFERRER_PREFIXES):
        headers["Referrer-Policy"] = "no-referrer"
    else:
        headers.setdefault("Referrer-Policy", "same-origin")
    headers["X-Content-Type-Options"] = "nosniff"
    headers["Content-Security-Policy"] = CSP
    headers["X-Frame-Options"] = "DENY"  # frame-ancestors for browsers that predate it
    headers["Permissions-Policy"] = PERMISSIONS_POLICY
    # No other site's window keeps a handle on ours, and no other site may load our responses.
    headers["Cross-Origin-Opener-Policy"] = "same-origin"
    headers["Cross-Origin-Resource-Policy"] = "same-origin"


async def _strict_transport(message: Message, scope: Scope) -> None:
    """Under an https:// base URL: browsers keep to https for a year (a first plain-http request
    could otherwise be taken over, and with it the session cookie's first trip)."""
    if message["type"] == "http.response.start":
        MutableScopeHeaders.from_message(message)["Strict-Transport-Security"] = "max-age=31536000; includeSubDomains"


def _freeze_heap() -> None:
    """Once started, the modules, routes, templates and mappers (most of the heap, and all of it
    long-lived) leave the collector's view. Otherwise every full collection walks them all: on
    the event loop, and no request moves while it runs.
    `serve` asks for it; tests, which build many apps in one process, do not."""
    gc.collect()
    gc.freeze()


# Every route of the app; create_app adds nothing to it.
ROUTES = [
    healthz,
    readyz,
    SignInController,
    SsoController,
    SsoSettingController,
    AuditController,
    RosterController,
    PrivacyController,
    ProfileController,
    CommunitiesController,
    HomeController,
    CommunityController,
    PulseController,
    SurveysController,
    InstrumentsController,
    ReviewController,
    StoriesController,
    ReceiptController,
    InsightsController,
    VitalityController,
    ObjectivesController,
    NotificationsController,
    ChatController,
    WebhooksController,
    ActionsController,
    SummaryController,
    CheckInsController,
    JoinController,
    api_router,
    pulse_api,
    insights_api,
    token_router,
    redeem,
    published_round_keys,
    story_token_router,
    *anonymous_story_routes,
    checkin_token_router,
    *anonymous_checkin_routes,
    create_static_files_router(path="/static", directories=[STATIC], include_in_schema=False),
]


def _scheduler(
    settings: Settings, keyring: Keyring, round_mailer: RoundMailer, chat_delivery: ChatDelivery, digests: DigestMailer,
    webhooks: WebhookSender,
) -> Callable[[Litestar], AbstractAsyncContextManager[None]]:
    """The periodic task that opens, reminds and closes rounds (a lease keeps replicas apart)."""

    @asynccontextmanager
    async def schedule(_app: Litestar) -> AsyncIterator[None]:
        if not settings.schedule_interval_seconds:
            yield
            return
        # An engine of its own, without the requests' time limits: closing a big round or the
        # VACUUM after it may take longer than a request may, as in `safespace tick`.
        engine = make_engine(settings)
        task = asyncio.create_task(
            run_periodically(
                async_sessionmaker(engine, expire_on_commit=False),
                keyring,
                round_mailer,
                settings.schedule_interval_seconds,
                timedelta(minutes=settings.session_idle_minutes),
                (settings.story_release_weekday, settings.story_release_hour),
                settings.token_key_bits,
                chat_delivery,
                digests,
                webhooks,
            )
        )
        try:
            yield
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
            await engine.dispose()

    return schedule


def _session_and_csrf(settings: Settings, sessions: SessionReader, secret: bytes) -> dict[str, Any]:
    """The session middleware and the CSRF check, which share one secret; anonymous paths skip both."""
    return {
        "middleware": [
            DefineMiddleware(
                SessionAuthMiddleware,
                sessions=sessions,
                idle=timedelta(minutes=settings.session_idle_minutes),
                csrf_secret=secret.hex(),  # the CSRFConfig secret below
                secure=settings.secure_cookies,
                exclude=PUBLIC + ANONYMOUS,
            )
        ],
        "csrf_config": CSRFConfig(
            secret=secret.hex(),
            cookie_name="safespace_csrf",
            cookie_secure=settings.secure_cookies,
            cookie_httponly=True,
            cookie_samesite="lax",
            header_name="x-csrftoken",
            exclude=ANONYMOUS,
        ),
    }


def _singletons(**values: Any) -> dict[str, Provide]:
    """Dependencies that are one object for the app's life (settings, the mail, the batchers)."""
    return {name: Provide(_constant(value), sync_to_thread=False, use_cache=True) for name, value in values.items()}


def _constant(value: Any) -> Callable[[], Any]:
    return lambda: value


def create_app(settings: Settings | None = None, mailer: Mailer | None = None, *, freeze_heap: bool = False) -> Litestar:
    settings = settings or load_settings()
    configure_logging(settings.log_level)
    db = alchemy_config(settings)
    db.before_send_handler = commit_before_send(db.session_scope_key)  # read by the plugin when the app starts
    templates = template_environment()
    # Private mode's quiet window (static/quiet.js): no signed-in request this close to an anonymous one.
    templates.globals["private_window_seconds"] = settings.private_window_seconds
    templates.globals["sso_providers"] = settings.sso_providers  # the sign-in page's buttons
    sso_providers = Providers(settings.sso_providers)
    mailer = mailer or make_mailer(settings)
    postman = Postman(mailer, templates, settings.base_url)
    round_mailer = RoundMailer(mailer, templates, settings.base_url)
    digests = DigestMailer(mailer, templates, settings.base_url)  # facilitators' notifications
    secret = settings.secret_key()
    keyring = Keyring.load(settings.encryption_key_path)
    sessionmaker = db.create_session_maker()
    chat_delivery = ChatDelivery(settings.base_url)
    webhooks = WebhookSender(settings.base_url, settings.webhook_ca_file, settings.webhook_allow_private)
    answers = AnswerQueue(sessionmaker, keyring)
    engine = sessionmaker.kw["bind"]
    reads = Reads(engine)
    issuances = IssuanceQueue(sessionmaker, keyring, reads)
    sessions = SessionReader(reads)
    dependencies = _singletons(
        settings=settings,
        postman=postman,
        sign_in_links=SignInLinks(sessionmaker, postman),
        secret=secret,
        sso_providers=sso_providers,
        keyring=keyring,
        # Not "answers": a dependency named like a body field turns that field's 400 into a 500.
        answer_queue=answers,
        issuances=issuances,
        send_round_mails=functools.partial(round_mailer.send_all, sessionmaker),
        # The settings page's test message, sent after the response (never inside the request).
        send_chat_posts=functools.partial(chat_delivery.deliver_due, sessionmaker, keyring),
        send_webhooks=functools.partial(webhooks.deliver_due, sessionmaker, keyring),  # the webhooks page's test event
        checkin_hub=Hub(sessionmaker),  # check-ins' event streams: short sessions of their own
    )
    return Litestar(
        route_handlers=ROUTES,
        plugins=[SQLAlchemyPlugin(config=db), channels_plugin(settings)],  # channels: check-ins' live counts
        dependencies=dependencies,
        **_session_and_csrf(settings, sessions, secret),
        template_config=TemplateConfig(engine=JinjaTemplateEngine.from_environment(templates)),
        exception_handlers={HTTPException: handle_http_error, Exception: handle_server_error},
        before_request=answer_options,
        before_send=[_common_headers, *([_strict_transport] if settings.secure_cookies else [])],
        # Logging is configure_logging's alone: Litestar's default config would replace the root
        # handler, pin the level at INFO (SAFESPACE_LOG_LEVEL ignored) and stamp every line's time.
        logging_config=None,
        # The document only (JSON at /schema and /schema/openapi.json, and YAML): Litestar's HTML
        # viewers load their scripts from a CDN, which our Content-Security-Policy refuses, so
        # they would be blank pages. Any OpenAPI viewer opens the document.
        openapi_config=OpenAPIConfig(
            title="Safespace API", version="1", path="/schema", render_plugins=[JsonRenderPlugin(), YamlRenderPlugin()]
        ),
        lifespan=[_scheduler(settings, keyring, round_mailer, chat_delivery, digests, webhooks)],
        on_startup=[issuances.start, *([_freeze_heap] if freeze_heap else [])],
        # The engine is disposed here too: advanced_alchemy's lifespan disposes it only when its
        # state key is the default one, which from the second app of a process on (the test
        # suite builds hundreds) is made unique; its connections were then left to the garbage
        # collector, open until it ran.
        on_shutdown=[reads.dispose, engine.dispose],
        # The batchers are kept where tests and benchmarks can see how well they group.
        state=State(
            {DATABASE_STATE_KEY: db, "answers": answers, "issuances": issuances, "sessions": sessions, TREND_STATES: TrendStates(reads),
             READS_STATE_KEY: reads}
        ),
        debug=False,
    )
