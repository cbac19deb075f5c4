"""Retention: a community may have its old results and stories deleted (issue 20 item 4).

Off by default. When a facilitator sets an age, each pass of the schedule deletes, for that
community, the closed rounds and check-ins that closed before it (their tallies, released
comments, notes and summaries go with them by the foreign keys; an action keeps its text and loses
its round) and the stories released before it, with their replies and reactions. Then the pass
scrubs old row versions as after a close (schedule.scrub), so the files do not keep them either.

What is deleted is chosen by one function, `_expired`, for the settings page's count ("the next
pass deletes …") and for the deletion itself, so the page says what the pass does.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

from sqlalchemy import delete, func, select
from sqlalchemy.ext.asyncio import AsyncSession

from safespace.audit import entries as audit
from safespace.checkin.models import CheckIn
from safespace.errors import InvalidInput
from safespace.i18n import gettext as _
from safespace.identity.models import Community, Retention
from safespace.pulse.models import Round
from safespace.pulse.services import bump_trend
from safespace.stories.models import Story

CHOICES = (91, 182, 365, 730, 1095)  # what the settings page offers: 3 and 6 months, 1, 2 and 3 years
MIN_DAYS, MAX_DAYS = 91, 3650  # the database refuses under 91 too
# 91: longer than any round stays open (a quarterly survey's 88 days, a daylight-saving day more), so a
# round closed early is deleted only after its window has passed, and the schedule cannot open it again.
SCHEDULE = "schedule"  # the audit log's actor for what the retention pass deletes
# Tables whose old row versions the pass scrubs after deleting (with schedule.ANSWER_TABLES and STORY_TABLES).
CHECKIN_TABLES = ("checkin", "checkin_tally", "checkin_participation", "checkin_comment")


@dataclass(frozen=True)
class Expired:
    rounds: int = 0
    checkins: int = 0
    stories: int = 0

    def __bool__(self) -> bool:
        return bool(self.rounds or self.checkins or self.stories)


async def days_of(db: AsyncSession, community_id: uuid.UUID) -> int | None:
    """The community's retention in days; None: kept until someone deletes them."""
    return await db.scalar(select(Retention.days).where(Retention.community_id == community_id))


def parse_days(text: str) -> int | None:
    """The form's or the API's value: "" or "off" for none, else whole days in range."""
    text = text.strip().lower()
    if text in ("", "off", "none"):
        return None
    try:
        days = int(text)
    except ValueError:
        days = 0
    if not MIN_DAYS <= days <= MAX_DAYS:
        raise InvalidInput({"retention_days": _("Choose how long to keep results and stories: from %(low)d to %(high)d days, or keep them.", low=MIN_DAYS, high=MAX_DAYS)})  # fmt: skip
    return days


async def set_days(db: AsyncSession, community: Community, days: int | None, actor: str) -> bool:
    """Set or turn off the community's retention; False when it was so already. Logged for the
    community's facilitators, as every facilitator's act that changes what is kept."""
    before = await days_of(db, community.id)
    if before == days:
        return False
    await db.execute(delete(Retention).where(Retention.community_id == community.id))
    if days is not None:
        db.add(Retention(community_id=community.id, days=days))
    detail = f"retention {before or 'off'} -> {days or 'off'} days"
    await audit.record(db, community.id, actor, "retention", detail)
    return True


def _expired(community: Community, days: int, moment: datetime) -> tuple:
    """The conditions of what the pass deletes in a community: rounds and check-ins closed before
    the cut, stories released before its day (in the community's time zone; a story keeps a day, never a time)."""
    cut = moment - timedelta(days=days)
    cut_day = cut.astimezone(ZoneInfo(community.time_zone)).date()
    rounds = (Round.community_id == community.id, Round.closed.is_(True), Round.closes_at < cut)
    checkins = (CheckIn.community_id == community.id, CheckIn.state != "open", CheckIn.closes_at < cut)
    stories = (Story.community_id == community.id, Story.released_on.is_not(None), Story.released_on < cut_day)
    return rounds, checkins, stories


async def due(db: AsyncSession, community: Community, days: int, moment: datetime) -> Expired:
    """What the next pass would delete under `days`: the settings page shows it before and after saving."""
    rounds, checkins, stories = _expired(community, days, moment)

    async def count(model: type, where: tuple) -> int:
        return await db.scalar(select(func.count()).select_from(model).where(*where)) or 0

    return Expired(await count(Round, rounds), await count(CheckIn, checkins), await count(Story, stories))


async def apply(db: AsyncSession, moment: datetime) -> Expired:
    """Delete, in the caller's transaction, what every community with a retention keeps no longer.
    Each community's deletion is logged in its audit log, with counts only."""
    total = Expired()
    for community, days in (await db.execute(select(Community, Retention.days).join(Retention))).all():
        rounds, checkins, stories = _expired(community, days, moment)
        surveys = set(await db.scalars(select(Round.survey_id).where(*rounds).distinct()))
        surveys |= set(await db.scalars(select(CheckIn.trend_survey_id).where(*checkins, CheckIn.trend_survey_id.is_not(None))))
        gone = Expired(
            (await db.execute(delete(Round).where(*rounds))).rowcount,
            (await db.execute(delete(CheckIn).where(*checkins))).rowcount,
            (await db.execute(delete(Story).where(*stories))).rowcount,
        )
        for survey_id in surveys:  # their trend charts are drawn again without the deleted points
            await bump_trend(db, survey_id)
        if gone:
            detail = f"deleted {_many(gone.rounds, 'round')}, {_many(gone.checkins, 'check-in')}, {_many(gone.stories, 'story', 'stories')} older than {days} days"
            await audit.record(db, community.id, SCHEDULE, "retention", detail)
            total = Expired(total.rounds + gone.rounds, total.checkins + gone.checkins, total.stories + gone.stories)
    return total


def _many(count: int, one: str, more: str = "") -> str:
    """An audit detail's count (the log is kept in English, as every entry is)."""
    return f"{count} {one if count == 1 else more or one + 's'}"
