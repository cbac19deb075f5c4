"""Sending noted chat posts through Apprise, from the schedule after its commit.

A post says what happened to a round and links to Safespace; it carries no figure at all (the
results page is where released figures are read, through surveys.disclosure) and never names
who has or has not answered. A receiver that fails or times out leaves the round and its mail
alone: the post is tried again later, waiting longer each time.
"""

from __future__ import annotations

import asyncio
import logging
import re
import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import delete, select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from safespace import clock, i18n
from safespace.backoff import CLAIM, MAX_ATTEMPTS, next_wait
from safespace.chat.models import ChatChannel, ChatPost
from safespace.chat.services import Receiver, apprise_plugin, secrets_in, shown_as, url_aad
from safespace.i18n import gettext as _
from safespace.identity.models import Community
from safespace.insights import actions
from safespace.privacy.crypto import Keyring
from safespace.pulse.models import Round, Survey

log = logging.getLogger(__name__)

TIMEOUT_SECONDS = 10.0  # a receiver slower than this failed; the post is tried again later
BATCH = 100  # a test message is tried once; the others as safespace.backoff says


@dataclass(frozen=True)
class Post:
    title: str
    body: str


async def compose(db: AsyncSession, post: ChatPost, language: str, base_url: str) -> Post | None:
    """The post's words in the channel's language; None when it no longer fits (an invitation or
    reminder for a round that has closed since, or a round that is gone)."""
    community = await db.get(Community, post.community_id)
    round_ = await db.get(Round, post.round_id) if post.round_id else None
    if community is None or (post.kind != "test" and round_ is None) or (post.kind in ("invitation", "reminder") and round_.closed):
        return None
    base = base_url.rstrip("/")
    previous = i18n.current_language()
    i18n.set_language(language)
    try:
        if post.kind == "test":
            return Post(_("Safespace: test message"),
                        _("This is a test message from Safespace: %(community)s will post round invitations, reminders and results here.", community=community.name)
                        + f"\n\n{base}/c/{community.id}")  # fmt: skip
        survey = await db.get_one(Survey, round_.survey_id)
        closes = round_.closes_at.astimezone(ZoneInfo(community.time_zone)).strftime("%Y-%m-%d %H:%M %Z")
        link = f"{base}/c/{community.id}/rounds/{round_.id}"
        if post.kind == "invitation":
            title = _("%(survey)s is open in %(community)s", survey=survey.title, community=community.name)
            body = (
                _("A new round of “%(survey)s” is open. It takes about two minutes.", survey=survey.title)
                + "\n\n"
                + _("Answer here until %(date)s:", date=closes)
            )
        elif post.kind == "reminder":
            # To everyone in the channel alike: a chat post cannot, and must not, know who answered.
            title = _("Reminder: %(survey)s closes soon", survey=survey.title)
            body = _("The current round of “%(survey)s” in %(community)s closes on %(date)s. If you have not answered yet and have a couple of minutes, your answers help the whole community.",
                     survey=survey.title, community=community.name, date=closes)  # fmt: skip
        elif post.kind == "summary":
            # "You said, we did": the facilitators' own words and the round's actions (no figure of ours).
            summary = await actions.published(db, round_.id)
            if summary is None:
                return None
            title = _("%(survey)s: what you said, and what we are doing", survey=survey.title)
            lines = [f"- {title_}" for title_, _status, _owner in summary.actions]
            body = summary.text + (("\n\n" + _("What we are doing:") + "\n" + "\n".join(lines)) if lines else "")
            link += "/results"
        else:
            # No figure: what may be shown, and to whom, is the results page's to decide (P1-P3).
            title = _("%(survey)s: the results are out", survey=survey.title)
            body = _(
                "The round of “%(survey)s” in %(community)s has closed. Its results are on Safespace:",
                survey=survey.title,
                community=community.name,
            )
            link += "/results"
        return Post(title, f"{body}\n\n{link}")
    finally:
        i18n.set_language(previous)


def reason(result: Any, url: str, shown: Receiver) -> str:
    """Why a delivery failed (an apprise.AppriseResult), in Apprise's words, with every part of
    the URL that may be secret taken out."""
    words = " ".join(entry.message for entry in result.logs() if entry.level in ("WARNING", "ERROR")).strip()
    words = words or f"the receiver did not accept the post ({result.status.name.lower()})"
    if result.status.name == "TIMEOUT":
        words = f"no answer within the time limit; {words}"
    for secret in secrets_in(url, shown):
        words = re.sub(re.escape(secret), "…", words, flags=re.IGNORECASE)
    return words[:300]


async def send(url: str, shown: Receiver, post: Post, timeout: float) -> str | None:
    """Send one post; None when it went through, else why not."""
    import apprise  # here, not at import: see chat.services.apprise_plugin

    plugin = await asyncio.to_thread(apprise_plugin, url)  # the first one loads every plugin
    if plugin is None:
        return "Apprise no longer knows this URL's service"
    # A receiver that never answers must not hold the schedule: at most `timeout` per socket wait.
    plugin.socket_connect_timeout = min(plugin.socket_connect_timeout, timeout)
    plugin.socket_read_timeout = min(plugin.socket_read_timeout, timeout)
    notifier = apprise.Apprise()
    notifier.add(plugin)
    result = await notifier.async_notify(body=post.body, title=post.title, body_format=apprise.NotifyFormat.TEXT, timeout=2 * timeout)
    return None if result else reason(result, url, shown)


@dataclass
class ChatDelivery:
    base_url: str
    timeout: float = TIMEOUT_SECONDS

    async def deliver_due(
        self,
        sessionmaker: async_sessionmaker[AsyncSession],
        keyring: Keyring,
        moment: datetime | None = None,
        community_id: uuid.UUID | None = None,
    ) -> int:
        """Send the posts that are due; returns how many went through. Each post is claimed in a
        short transaction of its own and sent outside any transaction."""
        moment = moment or clock.now()
        delivered = 0
        async with sessionmaker() as db:
            query = select(ChatPost.id, ChatPost.next_attempt_at).where(ChatPost.next_attempt_at <= moment)
            if community_id is not None:
                query = query.where(ChatPost.community_id == community_id)
            due = (await db.execute(query.order_by(ChatPost.created_at).limit(BATCH))).all()
            await db.rollback()
            for post_id, due_at in due:
                try:
                    delivered += await self._deliver_one(db, keyring, post_id, due_at, moment)
                except Exception:  # one post's fault (its words, a URL that no longer opens) must not stop the others
                    log.exception("a chat post failed before it was sent; it is tried again after the claim")
                    await db.rollback()
        return delivered

    async def _deliver_one(self, db: AsyncSession, keyring: Keyring, post_id: uuid.UUID, due_at: datetime, moment: datetime) -> int:
        claimed = await db.execute(
            update(ChatPost).where(ChatPost.id == post_id, ChatPost.next_attempt_at == due_at).values(next_attempt_at=moment + CLAIM)
        )
        if claimed.rowcount != 1:  # another pass has it
            await db.rollback()
            return 0
        post = await db.get_one(ChatPost, post_id)
        channel = await db.get(ChatChannel, post.community_id)
        words = await compose(db, post, channel.language, self.base_url) if channel is not None else None
        if words is None:
            await db.execute(delete(ChatPost).where(ChatPost.id == post_id))
            await db.commit()
            return 0
        url, shown = keyring.open(channel.url_sealed, url_aad(post.community_id)), shown_as(channel)
        kind, community_id, attempts = post.kind, post.community_id, post.attempts + 1
        await db.commit()  # the claim; no transaction is open while the receiver is called
        why = await send(url, shown, words, self.timeout)
        # Read again: a facilitator may have replaced or removed the chat while the post was out.
        channel = await db.get(ChatChannel, community_id, populate_existing=True)
        if channel is None:  # removed: its posts went with it
            await db.commit()
            return int(why is None)
        if why is None:
            channel.last_delivered_at = clock.now()
            await db.execute(delete(ChatPost).where(ChatPost.id == post_id))
            await db.commit()
            return 1
        # The kind and the reason only: the URL's secrets are out of `why` (reason()).
        log.warning("a chat %s post was not delivered (attempt %d): %s", kind, attempts, why)
        channel.last_failed_at, channel.last_failure = clock.now(), why
        if kind == "test" or attempts >= MAX_ATTEMPTS:
            await db.execute(delete(ChatPost).where(ChatPost.id == post_id))
        else:
            await db.execute(
                update(ChatPost).where(ChatPost.id == post_id).values(attempts=attempts, next_attempt_at=moment + next_wait(attempts))
            )
        await db.commit()
        return 0
