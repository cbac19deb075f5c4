"""Actions: what a community will do about a released result, their log, whether the result moved
in the rounds after, and a round's "you said, we did" summary.

An action names a round's result (an instrument and, optionally, one statement), never a
respondent. Everything it shows about later rounds comes from the same released figures as the
results pages (pulse/results.py): a statement hidden there is "hidden" here too.
"""

from __future__ import annotations

import uuid
from datetime import date, timedelta
from zoneinfo import ZoneInfo

import msgspec
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from safespace import clock
from safespace.errors import InvalidInput, Refused
from safespace.i18n import current_language
from safespace.i18n import gettext as _
from safespace.identity.models import Community
from safespace.insights.models import ACTION_STATUSES, Action, ActionUpdate, RoundSummary
from safespace.privacy.crypto import Keyring
from safespace.pulse.models import Round
from safespace.pulse.results import round_result
from safespace.pulse.services import bump_trend, round_instruments
from safespace.text import clean_text
from surveys import stats


def status_name(status: str) -> str:
    return {"planned": _("planned"), "in_progress": _("in progress"), "done": _("done"), "dropped": _("dropped")}[status]


class UpdateView(msgspec.Struct):
    on: date
    status: str
    text: str


class FollowUp(msgspec.Struct):
    """A later round's released figure for the action's statement (or instrument)."""

    round_number: int
    closed_on: date
    mean: float | None  # None: hidden in that round (fewer than k answered it)
    change: float | None  # from the action's round, with its 95% interval
    change_low: float | None
    change_high: float | None
    verdict: str  # "rose" | "fell" | "no_clear_change" | "hidden"


class ActionView(msgspec.Struct):
    id: uuid.UUID
    title: str
    status: str
    owner: str | None
    due_on: date | None
    created_on: date
    round_id: uuid.UUID | None
    round_number: int | None
    instrument: str | None
    instrument_name: str | None
    item: str | None
    statement: str | None  # the statement's text, as members saw it
    scale_kind: str | None = None  # its instrument's scale: follow_up holds a 0..10 score (-100..100) for zero_to_ten
    updates: list[UpdateView] = []
    follow_up: list[FollowUp] = []


class Subject(msgspec.Struct):
    """What an action answers, checked: a closed round of the community, one of its instruments and,
    optionally, one of that instrument's statements."""

    round: Round
    instrument: str
    instrument_name: str
    item: str | None
    statement: str | None


async def subject(db: AsyncSession, community: Community, round_id: str, instrument: str, item: str) -> Subject | None:
    """The result named by a form or link, or None for none; LookupError if it names something
    that is not a released result of this community."""
    if not round_id:
        return None
    try:
        round_ = await db.get(Round, uuid.UUID(round_id))
    except ValueError:
        round_ = None
    if round_ is None or round_.community_id != community.id or not round_.closed:
        raise LookupError("no such closed round in this community")
    language = current_language()
    for found in round_instruments(round_):
        if found.key != instrument:
            continue
        if not item:
            return Subject(round_, found.key, found.name.get(language), None, None)
        for statement in found.items:
            if statement.key == item:
                return Subject(round_, found.key, found.name.get(language), statement.key, statement.text.get(language))
    raise LookupError("no such instrument or statement in this round")


async def create_action(
    db: AsyncSession, community: Community, *, title: str, owner: str, due_on: str, about: Subject | None
) -> Action:
    errors: dict[str, str] = {}
    title, owner = clean_text(title), clean_text(owner)
    if not title:
        errors["title"] = _("Say what will be done.")
    elif len(title) > 300:
        errors["title"] = _("Keep it to 300 characters or fewer.")
    if len(owner) > 120:
        errors["owner"] = _("Keep the owner's name to 120 characters or fewer.")
    today = clock.now().astimezone(ZoneInfo(community.time_zone)).date()
    due = None
    if due_on.strip():
        try:
            due = date.fromisoformat(due_on.strip())
        except ValueError:
            errors["due_on"] = _("Enter the due date as a date, such as %(example)s.") % {
                "example": (today + timedelta(days=30)).isoformat()
            }
        else:
            if due < today:
                errors["due_on"] = _("Choose a due date from today on.")
    if errors:
        raise InvalidInput(errors)
    action = Action(
        community_id=community.id, title=title, owner=owner or None, due_on=due, status="planned", created_at=clock.now(),
        round_id=about.round.id if about else None, instrument=about.instrument if about else None,
        item=about.item if about else None,
    )  # fmt: skip
    db.add(action)
    await db.flush()
    db.add(ActionUpdate(action_id=action.id, status="planned", text="", created_at=action.created_at))
    if about is not None:
        await bump_trend(db, about.round.survey_id)  # the trend marks it on its round
    return action


async def update_action(db: AsyncSession, community: Community, action_id: uuid.UUID, *, status: str, text: str) -> Action:
    """A new status and/or a line for the log. LookupError: no such action here."""
    action = await db.get(Action, action_id)
    if action is None or action.community_id != community.id:
        raise LookupError("no such action in this community")
    errors = {}
    text = clean_text(text)
    if status not in ACTION_STATUSES:
        errors["status"] = _("Choose a status from the list.")
    elif status == action.status and not text:
        errors["text"] = _("Write what changed, or choose a new status.")
    if len(text) > 2000:
        errors["text"] = _("Keep the update to 2,000 characters or fewer.")
    if errors:
        raise InvalidInput(errors)
    if action.round_id is not None and "dropped" in (status, action.status) and status != action.status:
        round_ = await db.get(Round, action.round_id)  # a dropped action leaves the trend's marks
        if round_ is not None:
            await bump_trend(db, round_.survey_id)
    action.status = status
    db.add(ActionUpdate(action_id=action.id, status=status, text=text, created_at=clock.now()))
    await db.flush()
    return action


async def actions(
    db: AsyncSession, community: Community, *, status: str | None = None, instrument: str | None = None,
    action_id: uuid.UUID | None = None, round_id: uuid.UUID | None = None, keyring: Keyring | None = None,
    with_log: bool = False,
) -> list[ActionView]:  # fmt: skip
    """The community's actions, newest first, filtered by status, instrument, id or the round they
    answer; with their log and the later rounds' figures when asked (`keyring`: follow-up figures)."""
    query = select(Action).where(Action.community_id == community.id)
    if action_id is not None:
        query = query.where(Action.id == action_id)
    if round_id is not None:
        query = query.where(Action.round_id == round_id)
    if status:
        query = query.where(Action.status == status)
    if instrument:
        query = query.where(Action.instrument == instrument)
    rows = list(await db.scalars(query.order_by(Action.created_at.desc(), Action.id)))
    zone, language = ZoneInfo(community.time_zone), current_language()
    rounds = {r.id: r for r in await db.scalars(select(Round).where(Round.id.in_({a.round_id for a in rows if a.round_id})))}
    logs: dict[uuid.UUID, list[UpdateView]] = {}
    if with_log and rows:
        query = select(ActionUpdate).where(ActionUpdate.action_id.in_([a.id for a in rows])).order_by(ActionUpdate.created_at)
        for update in await db.scalars(query):
            logs.setdefault(update.action_id, []).append(UpdateView(update.created_at.astimezone(zone).date(), update.status, update.text))
    views = []
    for action in rows:
        round_ = rounds.get(action.round_id)
        name = statement = kind = None
        for found in round_instruments(round_) if round_ else []:
            if found.key == action.instrument:
                name, kind = found.name.get(language), found.scale.kind
                statement = next((i.text.get(language) for i in found.items if i.key == action.item), None)
        views.append(
            ActionView(
                id=action.id, title=action.title, status=action.status, owner=action.owner, due_on=action.due_on,
                created_on=action.created_at.astimezone(zone).date(), round_id=action.round_id,
                round_number=round_.number if round_ else None, instrument=action.instrument, instrument_name=name,
                item=action.item, statement=statement, scale_kind=kind, updates=logs.get(action.id, []),
                follow_up=await follow_up(db, keyring, community, action, round_) if keyring and round_ else [],
            )  # fmt: skip
        )
    return views


async def follow_up(db: AsyncSession, keyring: Keyring, community: Community, action: Action, round_: Round) -> list[FollowUp]:
    """The action's statement (or instrument score) in each later closed round of the same survey:
    the released mean, its change from the action's round and whether the 95% interval of the
    change leaves out zero (Welch, as the trend's flagged changes)."""
    language, moment, zone = current_language(), clock.now(), ZoneInfo(community.time_zone)
    base = _estimate(await round_result(db, keyring, round_, language, moment, comment_limit=0), action)
    later = await db.scalars(
        select(Round)
        .where(Round.survey_id == round_.survey_id, Round.closed.is_(True), Round.number > round_.number)
        .order_by(Round.number)
        .limit(12)
    )
    rows = []
    for other in later:
        estimate = _estimate(await round_result(db, keyring, other, language, moment, comment_limit=0), action)
        closed_on = other.closes_at.astimezone(zone).date()
        if estimate is None:
            rows.append(FollowUp(other.number, closed_on, None, None, None, None, "hidden"))
            continue
        change = stats.difference(base, estimate) if base else None
        verdict = "no_clear_change"
        if change is not None and change.ci_low is not None and change.ci_low > 0:
            verdict = "rose"
        elif change is not None and change.ci_high is not None and change.ci_high < 0:
            verdict = "fell"
        rows.append(
            FollowUp(other.number, closed_on, round(estimate.mean, 2), round(change.mean, 2) if change else None,
                     round(change.ci_low, 2) if change else None, round(change.ci_high, 2) if change else None, verdict)
        )  # fmt: skip
    return rows


def _estimate(result, action: Action) -> stats.Estimate | None:  # noqa: ANN001 - a RoundResult
    """The released estimate the action follows in one round's result: the statement's mean (from
    its released answer counts), a 0..10 question's score (-100..100), or the instrument's scale
    score; None when hidden there (a single choice has nothing to follow)."""
    for instrument in result.instruments:
        if instrument.key != action.instrument:
            continue
        if action.item is None:
            return instrument.score
        for item in instrument.items:
            if item.key == action.item and item.mean is not None and item.distribution:
                return stats.counts_estimate(item.distribution)
            if item.key == action.item and item.recommend_score is not None:  # a 0..10 question: its score
                return stats.recommend_estimate(item.distribution)
    return None


# --- "you said, we did": a round's summary, published once ---------------------------------------


class SummaryView(msgspec.Struct):
    round_id: uuid.UUID
    text: str
    published_on: date
    actions: list[ActionView]


async def round_summary(
    db: AsyncSession, community: Community, round_: Round, answering: list[ActionView] | None = None
) -> SummaryView | None:
    """The round's published summary with the actions that answer the round (dropped ones left
    out); `answering`: the round's actions, when the caller has read them already."""
    found = await db.get(RoundSummary, round_.id)
    if found is None:
        return None
    answering = [a for a in (answering if answering is not None else await round_actions(db, community, round_)) if a.status != "dropped"]
    return SummaryView(round_.id, found.text, found.published_at.astimezone(ZoneInfo(community.time_zone)).date(), answering)


class Published(msgspec.Struct):
    """What a mail or a chat post about a round's summary says: the text, and (title, status, owner)
    of each action answering the round, dropped ones left out. Read outside any request."""

    text: str
    actions: list[tuple[str, str, str | None]]


async def published(db: AsyncSession, round_id: uuid.UUID) -> Published | None:
    found = await db.get(RoundSummary, round_id)
    if found is None:
        return None
    rows = await db.execute(
        select(Action.title, Action.status, Action.owner)
        .where(Action.round_id == round_id, Action.status != "dropped")
        .order_by(Action.created_at)
    )
    return Published(found.text, [tuple(row) for row in rows])


async def round_actions(db: AsyncSession, community: Community, round_: Round) -> list[ActionView]:
    return await actions(db, community, round_id=round_.id, with_log=True)


async def publish_summary(db: AsyncSession, community: Community, round_: Round, text: str) -> RoundSummary:
    """Publish a closed round's summary, once. InvalidInput: no text, or too long; Refused: the
    round is not closed, or its summary is out already."""
    if not round_.closed:
        raise Refused(_("A round's summary can be published once the round has closed."))
    if await db.get(RoundSummary, round_.id) is not None:
        raise Refused(_("This round's summary is published already."))
    text = clean_text(text, multiline=True)
    if not text:
        raise InvalidInput({"summary": _("Write a few lines: what the results say and what you will do.")})
    if len(text) > 3000:
        raise InvalidInput({"summary": _("Keep the summary to 3,000 characters or fewer.")})
    summary = RoundSummary(round_id=round_.id, text=text, published_at=clock.now())
    db.add(summary)
    await db.flush()
    return summary
