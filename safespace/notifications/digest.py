"""Facilitators' digests: the notifications noted for one facilitator, in one mail, at most once
an hour. The schedule claims the due ones in its transaction and sends them after its commit;
a digest the mail server refuses stays and goes with the next tick."""

from __future__ import annotations

import logging
import uuid
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

from jinja2 import Environment
from sqlalchemy import delete, func, or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from safespace.i18n import DEFAULT_LANGUAGE
from safespace.identity.models import Community, Membership, Person
from safespace.mail import Mailer
from safespace.mail.messages import render
from safespace.notifications.models import (
    LOW_PARTICIPATION,
    REPORTED,
    REVIEW,
    ROUND_CLOSED,
    Notification,
    NotificationOff,
)
from safespace.notifications.noting import LowParticipation, low_participation, released_participation
from safespace.pulse.models import Round, Survey
from safespace.pulse.services import COMMUNITY
from safespace.stories.models import Flag, Story
from surveys import disclosure

log = logging.getLogger(__name__)

DIGEST_WAIT = timedelta(hours=1)  # a digest goes once its oldest notification is this old
CLAIM_STALE = timedelta(minutes=15)  # a claim this old belonged to a process that died while sending

Digest = tuple[uuid.UUID, list[uuid.UUID]]  # (facilitator, the notifications it holds)


async def claim_due(db: AsyncSession, moment: datetime) -> list[Digest]:
    """In the tick's transaction: the digests due now, claimed so that no other pass sends them.

    A facilitator's digest is due when their oldest waiting notification is DIGEST_WAIT old; it
    then takes every notification waiting for them. So events of the same hour share one mail,
    and a facilitator gets at most one digest an hour (after a refusal, one a tick until it goes).
    """
    free = or_(Notification.claimed_at.is_(None), Notification.claimed_at < moment - CLAIM_STALE)
    due = select(Notification.person_id).where(free).group_by(Notification.person_id).having(
        func.min(Notification.noted_at) <= moment - DIGEST_WAIT
    )
    rows = (await db.execute(select(Notification.id, Notification.person_id).where(free, Notification.person_id.in_(due)))).all()
    digests: dict[uuid.UUID, list[uuid.UUID]] = {}
    for notification_id, person_id in rows:
        digests.setdefault(person_id, []).append(notification_id)
    if rows:
        await db.execute(update(Notification).where(Notification.id.in_([r[0] for r in rows])).values(claimed_at=moment))
    return list(digests.items())


@dataclass
class Item:
    """One line of a digest, with only figures the results page shows."""

    kind: str
    link: str
    survey: str = ""
    number: int = 0
    members: int = 0
    k: int = 0
    respondents: int | None = None  # None: fewer than k answered (the results page shows no count)
    rate: float | None = None  # None: not shown
    closes: datetime | None = None
    low: LowParticipation | None = None
    previous_survey: str = ""
    count: int = 0


@dataclass
class Section:
    community: Community
    items: list[Item] = field(default_factory=list)
    settings_link: str = ""


@dataclass
class DigestMailer:
    mailer: Mailer
    templates: Environment
    base_url: str

    def _link(self, path: str) -> str:
        return f"{self.base_url.rstrip('/')}{path}"

    async def send_all(self, sessionmaker: async_sessionmaker[AsyncSession], digests: Iterable[Digest]) -> int:
        """Send the claimed digests; a refused one is released for the next tick. Returns how many went."""
        sent = 0
        for person_id, ids in digests:
            async with sessionmaker() as db:
                rows = list(await db.scalars(select(Notification).where(Notification.id.in_(ids))))
                person = await db.get(Person, person_id)
                sections = await self._sections(db, person_id, rows) if person is not None else []
                if sections:
                    message = render(
                        self.templates, "facilitator_digest", to=person.email, language=person.language or DEFAULT_LANGUAGE,
                        sections=sections, pct=_pct,
                    )  # fmt: skip
                    try:
                        await self.mailer.send(message)
                    except Exception as exc:  # noqa: BLE001 - the digest waits for the next tick
                        # The class only: an SMTP error's text can carry the address (P7).
                        log.error("a facilitator's digest was refused (%s); the next tick tries again", exc.__class__.__name__)
                        await db.execute(
                            update(Notification).where(Notification.id.in_(ids))
                            .values(claimed_at=None, failures=Notification.failures + 1)
                        )  # fmt: skip
                        await db.commit()
                        continue
                    sent += 1
                await db.execute(delete(Notification).where(Notification.id.in_(ids)))
                await db.commit()
        return sent

    async def _sections(self, db: AsyncSession, person_id: uuid.UUID, rows: list[Notification]) -> list[Section]:
        """What is true now of each noted event, for a facilitator who still facilitates there and
        still wants this kind; events with nothing left to say (a round closed since, no story
        waiting any more) drop out."""
        by_community: dict[uuid.UUID, list[Notification]] = {}
        for row in rows:
            by_community.setdefault(row.community_id, []).append(row)
        sections = []
        for community_id, noted in by_community.items():
            facilitates = await db.scalar(
                select(Membership.id).where(
                    Membership.person_id == person_id, Membership.community_id == community_id,
                    Membership.role == "facilitator", Membership.status == "active",
                )
            )  # fmt: skip
            if facilitates is None:
                continue
            off = set(await db.scalars(select(NotificationOff.kind).where(
                NotificationOff.person_id == person_id, NotificationOff.community_id == community_id)))  # fmt: skip
            community = await db.get_one(Community, community_id)
            section = Section(community, settings_link=self._link(f"/c/{community_id}/notifications"))
            seen: set[tuple[str, uuid.UUID | None]] = set()
            for row in sorted(noted, key=lambda r: (r.noted_at, r.kind)):
                if row.kind in off or (row.kind, row.round_id) in seen:
                    continue
                seen.add((row.kind, row.round_id))
                item = await self._item(db, community, row)
                if item is not None:
                    section.items.append(item)
            if section.items:
                sections.append(section)
        return sections

    async def _item(self, db: AsyncSession, community: Community, row: Notification) -> Item | None:
        if row.kind in (ROUND_CLOSED, LOW_PARTICIPATION):
            round_ = await db.get(Round, row.round_id) if row.round_id else None
            if round_ is None:
                return None
            survey = await db.get_one(Survey, round_.survey_id)
            item = Item(
                kind=row.kind, link=self._link(f"/c/{community.id}/rounds/{round_.id}/results"), survey=survey.title,
                number=round_.number, members=int(round_.population.get(COMMUNITY, 0)),
                k=disclosure.effective_k(round_.min_group_size),
                closes=round_.closes_at.astimezone(ZoneInfo(community.time_zone)),
            )  # fmt: skip
            if row.kind == ROUND_CLOSED:
                if not round_.closed:
                    return None
                return with_released_figures(item, await released_participation(db, round_))
            low = await low_participation(db, round_)
            if low is None:  # closed since, or no longer low
                return None
            item.low, item.rate = low, low.rate
            if low.previous is not None:
                item.previous_survey = (await db.get_one(Survey, low.previous.survey_id)).title
            return item
        if row.kind == REVIEW:
            count = await db.scalar(select(func.count()).select_from(Story).where(
                Story.community_id == community.id, Story.status == "review"))  # fmt: skip
            link = self._link(f"/c/{community.id}/stories/review")
            return Item(kind=REVIEW, link=link, count=count) if count else None
        if row.kind == REPORTED:
            count = await db.scalar(
                select(func.count(func.distinct(func.coalesce(Flag.reply_id, Flag.story_id))))
                .join(Story, Story.id == Flag.story_id)
                .where(Story.community_id == community.id, Story.status == "released")
            )  # fmt: skip
            link = self._link(f"/c/{community.id}/stories/review")
            return Item(kind=REPORTED, link=link, count=count) if count else None
        return None


def with_released_figures(item: Item, view: disclosure.GroupView) -> Item:
    """A closed round's count and rate, only where the results page shows them (P1, P3)."""
    if view.response_rate is not None and view.respondents is not None:
        item.respondents, item.rate = view.respondents, view.response_rate
    return item


def _pct(x: float) -> str:
    return f"{round(x * 100)}%"
