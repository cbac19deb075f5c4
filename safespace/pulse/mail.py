"""Mail about rounds: the invitation when a round opens and one reminder before it closes."""

from __future__ import annotations

import logging
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from zoneinfo import ZoneInfo

from jinja2 import Environment
from sqlalchemy import update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from safespace.i18n import DEFAULT_LANGUAGE
from safespace.identity.models import Community, Person
from safespace.insights import actions
from safespace.mail import Mailer
from safespace.mail.messages import render
from safespace.pulse.models import Round, RoundMail, Survey

log = logging.getLogger(__name__)

# What a request may call to send the round mails it noted, after its commit (a round opened now).
RoundMails = Callable[[list[tuple[str, uuid.UUID, uuid.UUID]]], Awaitable[int]]


@dataclass
class RoundMailer:
    mailer: Mailer
    templates: Environment
    base_url: str

    async def send_all(
        self, sessionmaker: async_sessionmaker[AsyncSession], mails: list[tuple[str, uuid.UUID, uuid.UUID]]
    ) -> int:
        """Send the noted mails; a failure is logged (without the address) and the rest go on."""
        sent = 0
        summaries: dict[uuid.UUID, actions.Published | None] = {}
        async with sessionmaker() as db:
            for kind, round_id, person_id in mails:
                round_ = await db.get_one(Round, round_id)
                survey = await db.get_one(Survey, round_.survey_id)
                community = await db.get_one(Community, round_.community_id)
                person = await db.get_one(Person, person_id)
                closes = round_.closes_at.astimezone(ZoneInfo(community.time_zone))
                if kind == "summary" and round_.id not in summaries:  # one read per round, not per member
                    summaries[round_.id] = await actions.published(db, round_.id)
                summary = summaries.get(round_.id) if kind == "summary" else None
                message = render(
                    self.templates,
                    TEMPLATES[kind],
                    to=person.email,
                    language=person.language or DEFAULT_LANGUAGE,
                    community=community,
                    survey=survey,
                    round=round_,
                    closes=closes,
                    link=f"{self.base_url.rstrip('/')}/c/{community.id}/rounds/{round_.id}" + ("/results" if summary else ""),
                    summary=summary,
                )
                key = (RoundMail.round_id == round_id, RoundMail.person_id == person_id, RoundMail.kind == kind)
                try:
                    await self.mailer.send(message)
                    sent += 1
                    # A retried mail that went out now is done.
                    await db.execute(update(RoundMail).where(*key, RoundMail.failures > 0).values(failures=0))
                    await db.commit()
                except Exception as exc:  # noqa: BLE001 - one refused mail must not stop the others
                    # The class only: an SMTP error's text can carry the address (P7).
                    log.error("a round %s mail was refused (%s); the next pass tries again", kind, exc.__class__.__name__)
                    await db.execute(update(RoundMail).where(*key).values(failures=RoundMail.failures + 1))
                    await db.commit()
        return sent


TEMPLATES = {"invitation": "round_open", "reminder": "round_reminder", "summary": "round_summary"}
