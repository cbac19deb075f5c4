"""A round's life: opened (keys, population locked), its mails noted, closed (the ledger
shuffled, small groups' tallies and unreleasable comments deleted) and its key destroyed.
safespace/schedule.py decides when.
"""

from __future__ import annotations

import logging
import random
import uuid
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

import msgspec
from sqlalchemy import delete, func, or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from safespace.errors import Refused
from safespace.i18n import gettext as _
from safespace.identity.models import Community, Membership, Person
from safespace.notifications import noting as notifications
from safespace.notifications.models import ROUND_CLOSED
from safespace.privacy.crypto import Keyring, associated_data
from safespace.privacy.round_keys import is_sealed
from safespace.pulse import tokens
from safespace.pulse.answering import read_tally
from safespace.pulse.lease import note_scrub_due
from safespace.pulse.models import (
    Participation,
    PendingComment,
    ReleasedComment,
    Round,
    RoundKey,
    RoundMail,
    SpentToken,
    Survey,
    Tally,
)
from safespace.pulse.services import COMMUNITY, available_instruments, bump_trend, survey_cadence
from surveys import cadence as cadence_rules
from surveys import disclosure
from surveys import tally as tally_rules
from surveys.instrument import instrument_to_dict

log = logging.getLogger(__name__)
MAX_MAIL_FAILURES = 3


# --- what the scheduler will do: the one rule for `tick`, the survey page and "open a round now" ---

SHORTEST_ON_DEMAND = timedelta(days=1)


def due_window(survey: Survey, last: Round | None, moment: datetime) -> cadence_rules.Window | None:
    """The scheduled round the scheduler opens at its pass at `moment`: the cadence's window open
    then, if it starts after the last round closed. None while a round is open or paused."""
    if survey.paused or (last is not None and not last.closed):
        return None
    window = cadence_rules.window_at(survey_cadence(survey), moment)
    if window is None or (last is not None and window.opens_at < last.closes_at):
        return None
    return window


def planned_windows(survey: Survey, last: Round | None, moment: datetime, count: int = 3) -> list[cadence_rules.Window]:
    """The next `count` rounds the scheduler will open, in order: first the one due now (it opens
    at the next pass), then those of the cadence that open after `moment` and after the last
    round closes (a window that starts while a round is open is skipped, as `tick` skips it)."""
    if survey.paused:
        return []
    cadence = survey_cadence(survey)
    due = due_window(survey, last, moment)
    planned = [due] if due is not None else []
    try:
        window = cadence_rules.first_window_after(cadence, max([moment] + ([last.closes_at] if last else [])))
        while len(planned) < count:
            if window.opens_at > moment:  # the due one is already in
                planned.append(window)
            window = cadence_rules.next_window(cadence, window.opens_at)
    except ValueError:  # the schedule runs past the year 9999
        pass
    return planned


def on_demand_window(survey: Survey, last: Round | None, moment: datetime) -> cadence_rules.Window:
    """The round "open a round now" opens: the scheduled one if it is due, else one from now for
    the cadence's open days, closing early enough that the next scheduled round keeps its date.
    Refused while a round is open, or when the next scheduled round is less than a day away."""
    if last is not None and not last.closed:
        raise Refused(_("A round is open already; close it before opening another."))
    due = due_window(survey, last, moment)
    if due is not None:
        return due
    closes_at = moment + timedelta(days=survey_cadence(survey).open_days)
    following = planned_windows(survey, last, moment, count=1)
    if following and following[0].opens_at < closes_at:
        closes_at = following[0].opens_at
    if closes_at - moment < SHORTEST_ON_DEMAND:
        raise Refused(_("The next scheduled round opens in less than a day; it opens on its own then."))
    opens_on = moment.astimezone(ZoneInfo(survey_cadence(survey).time_zone)).date()
    return cadence_rules.Window(number=0, opens_on=opens_on, opens_at=moment, closes_at=closes_at)  # 0: not the schedule's


async def open_round(
    db: AsyncSession, survey: Survey, window: cadence_rules.Window, keyring: Keyring | None, token_key_bits: int | None = 2048
) -> Round:
    """Open a round: lock k, snapshot the instruments and who may answer, create empty tallies and
    every answer-token key of the round. All keys exist from the start: a key that appeared when a
    team's first member opened the home page would tell a watching facilitator that someone of
    that team is active right now (issue 22 item 3). With no keyring or `token_key_bits=None` no
    keys are made here: for a round that is closed at once (the demo's history), or seeded by a
    benchmark without the server's keyring (tokens.key_for_group then makes them on first use)."""
    community = await db.get_one(Community, survey.community_id)
    available = await available_instruments(db, survey.community_id)
    instruments = [available[key] for key in survey.instruments if key in available]
    members = (
        await db.execute(
            select(Membership.team_id, func.count())
            .where(Membership.community_id == survey.community_id, Membership.status == "active")
            .group_by(Membership.team_id)
        )
    ).all()
    population = {COMMUNITY: sum(n for _team, n in members)}
    k = disclosure.effective_k(community.min_group_size)
    # A team smaller than k can never be shown: its members count in the community tally only.
    population |= {str(team): n for team, n in members if team is not None and n >= k}
    number = (await db.scalar(select(func.max(Round.number)).where(Round.survey_id == survey.id)) or 0) + 1
    round_ = Round(
        survey_id=survey.id,
        community_id=survey.community_id,
        number=number,
        opens_at=window.opens_at,
        closes_at=window.closes_at,
        closed=False,
        min_group_size=community.min_group_size,
        comment_threshold=community.comment_threshold,
        instruments=[instrument_to_dict(i) for i in instruments],
        population=population,
        reminder_sent=False,
    )
    db.add(round_)
    await db.flush()
    for instrument in instruments:
        empty = tally_rules.new_tally(instrument.item_keys, instrument.reverse_keys, instrument.scale.points, instrument.scale.kind)
        for group in population:
            db.add(
                Tally(
                    round_id=round_.id,
                    instrument=instrument.key,
                    group_key=group,
                    respondents=0,
                    data=msgspec.json.encode(empty),
                )
            )
    await db.flush()
    for group in population if keyring and token_key_bits else ():
        await tokens.key_for_group(db, keyring, round_, group, token_key_bits)
    return round_


async def close_round(db: AsyncSession, keyring: Keyring, round_id: uuid.UUID, moment: datetime) -> bool:
    """Freeze a round and remove everything that could pair people with answers (P4 after release).

    - the ledger is re-inserted in a shuffled order in this one transaction (no insertion order,
      and on PostgreSQL one transaction id for all rows);
    - tallies of groups below k, or that would let a small group be recovered by subtraction,
      are deleted: a closed round keeps no tally about fewer than k people;
    - pending comments are opened, deleted and re-inserted as released comments in a shuffled
      order under new random ids (re-sealed for their new row); comments that could never be
      shown (the round missed the comment threshold) are deleted instead;
    - the round's mail ledger is deleted (reminder rows would tell who answered late).
    Returns False if the round was closed already (by another replica or a facilitator).
    """
    round_ = await db.scalar(select(Round).where(Round.id == round_id).with_for_update())
    if round_ is None or round_.closed:
        return False
    round_.closed = True
    await bump_trend(db, round_.survey_id)
    if round_.closes_at > moment:
        round_.closes_at = moment  # closed early
    random_order = random.SystemRandom()
    await _shuffle_ledger(db, round_, random_order)
    keep, answered = await _keep_released_tallies(db, keyring, round_)
    await _release_comments(db, keyring, round_, keep, answered, random_order)
    await db.execute(delete(RoundMail).where(RoundMail.round_id == round_id))
    # No token of the round can verify again, and the spent list is no longer needed.
    await db.execute(delete(RoundKey).where(RoundKey.round_id == round_id))
    await db.execute(delete(SpentToken).where(SpentToken.round_id == round_id))
    # The facilitators' digests say what the results page says, when they are sent (notifications/).
    await notifications.note(db, round_.community_id, ROUND_CLOSED, moment, round_id)
    await note_scrub_due(db, moment)  # scrubbed after the commit; by the next pass if the closer dies first
    await db.flush()
    return True


async def _shuffle_ledger(db: AsyncSession, round_: Round, random_order: random.SystemRandom) -> None:
    """The ledger re-inserted in a shuffled order (close_round's first point)."""
    round_id = round_.id
    ledger = (await db.execute(select(Participation.person_id, Participation.reissued).where(Participation.round_id == round_id))).all()
    people = [person for person, _reissued in ledger]
    round_.reissued = sum(1 for _person, reissued in ledger if reissued)  # shown beside the results
    await db.execute(delete(Participation).where(Participation.round_id == round_id))
    random_order.shuffle(people)
    db.add_all([Participation(round_id=round_id, person_id=person) for person in people])


async def _keep_released_tallies(db: AsyncSession, keyring: Keyring, round_: Round) -> tuple[set[str], int]:
    """Only the tallies that may be shown stay, in the clear; the rest are deleted (close_round's
    second point). Returns the groups kept and how many answered."""
    round_id = round_.id
    tallies = list(await db.scalars(select(Tally).where(Tally.round_id == round_id)))
    # Who answered is what the tallies counted: with answer tokens the ledger also holds members
    # who took a token and never used it, so it can only overstate.
    answered = max((t.respondents for t in tallies if t.group_key == COMMUNITY), default=0)
    team_counts = {t.group_key: t.respondents for t in tallies if t.group_key != COMMUNITY}
    keep = disclosure.groups_to_keep(answered, team_counts, round_.min_group_size) if answered >= round_.min_group_size else set()
    if answered >= disclosure.effective_k(round_.min_group_size):
        keep.add(COMMUNITY)
    # Why each dropped team is hidden, in insights.reasons' words (its tally is deleted below).
    round_.hidden_teams = {
        team: "fewer_than_k" if answered < round_.min_group_size or n < round_.min_group_size else "protects_a_smaller_group"
        for team, n in team_counts.items()
        if team not in keep
    }
    if any(is_sealed(t.data) for t in tallies) and not keyring.rounds.has(round_id):
        # A database restored from a backup taken while the round was open, after its key was
        # destroyed: what was answered cannot be opened by anyone. Close it without results
        # rather than fail every tick.
        log.error("round %s closes without results: its key is missing from %s (restored from an older backup?)",
                  round_id, keyring.rounds.folder)  # fmt: skip
        keep = set()
        answered = 0
    # The final aggregate goes in the clear; every earlier state stays sealed under the round's
    # key, which is destroyed once this commits (forget_round_keys). Hidden groups' states are
    # never written in the clear.
    kept = [
        (t.instrument, t.group_key, t.respondents, msgspec.json.encode(read_tally(keyring, round_id, t.instrument, t.group_key, t.data)))
        for t in tallies
        if t.group_key in keep
    ]
    await db.execute(delete(Tally).where(Tally.round_id == round_id))
    db.add_all([Tally(round_id=round_id, instrument=i, group_key=g, respondents=n, data=d) for i, g, n, d in kept])
    return keep, answered


async def _release_comments(
    db: AsyncSession, keyring: Keyring, round_: Round, keep: set[str], answered: int, random_order: random.SystemRandom
) -> None:
    """Pending comments become released ones, shuffled, under new ids; or are deleted when the round
    missed the comment threshold (close_round's third point)."""
    round_id = round_.id
    pending = list(await db.scalars(select(PendingComment).where(PendingComment.round_id == round_id)))
    texts = []
    if disclosure.comments_visible(answered, round_.min_group_size, round_.comment_threshold):
        texts = [
            (
                c.instrument,
                c.group_key if c.group_key in keep else COMMUNITY,  # no pointer to a hidden team
                _pending_text(keyring, round_id, c),
            )
            for c in pending
        ]
    await db.execute(delete(PendingComment).where(PendingComment.round_id == round_id))
    random_order.shuffle(texts)
    for position, (instrument, group_key, text) in enumerate(texts):
        comment_id = uuid.uuid4()
        db.add(
            ReleasedComment(
                id=comment_id,
                round_id=round_id,
                instrument=instrument,
                group_key=group_key,
                position=position,
                body=keyring.seal(text, associated_data("released_comment", "body", f"{round_id}/{comment_id}")),
            )
        )


def _pending_text(keyring: Keyring, round_id: uuid.UUID, comment: PendingComment) -> str:
    aad = associated_data("pending_comment", "body", f"{round_id}/{comment.id}")
    if is_sealed(comment.body):  # under the round's key (pulse/answering.fold_into_tallies)
        return keyring.rounds.open(round_id, comment.body, aad).decode().rstrip(" ")  # sealed padded
    return keyring.open(comment.body, aad)  # sealed before round keys existed


async def forget_round_keys(db: AsyncSession, keyring: Keyring) -> int:
    """Destroy the keys of closed rounds (and of rounds that no longer exist), after the close is
    committed: their sealed per-answer states never open again. Idempotent; every tick runs it, so
    a close whose process died before this step is finished by the next tick."""
    held = keyring.rounds.held()
    if not held:
        return 0
    still_open = set(await db.scalars(select(Round.id).where(Round.id.in_(held), Round.closed.is_(False))))
    for round_id in held - still_open:
        keyring.rounds.destroy(round_id)
    return len(held - still_open)


async def _members_to_mail(db: AsyncSession, round_: Round, kind: str, unanswered_only: bool) -> list[Person]:
    query = (
        select(Person)
        .join(Membership, Membership.person_id == Person.id)
        .where(Membership.community_id == round_.community_id, Membership.status == "active")
        .where(~select(RoundMail).where(RoundMail.round_id == round_.id, RoundMail.person_id == Person.id, RoundMail.kind == kind).exists())
    )
    if unanswered_only:
        # Skipped: members the server saw answer (the signed-in form). A member who took a token
        # may or may not have used it (a spent token names no one): they are reminded, in words
        # that fit both (mail/round_reminder).
        answered = select(Participation).where(
            Participation.round_id == round_.id,
            Participation.person_id == Person.id,
            or_(Participation.token_request.is_(None), Participation.reissued & Participation.second_request.is_(None)),
        )
        query = query.where(~answered.exists())
    return list(await db.scalars(query))


Mail = tuple[str, uuid.UUID, uuid.UUID]  # (kind, round, person): one mail for RoundMailer.send_all


async def note_mails(db: AsyncSession, round_: Round, kind: str, unanswered_only: bool) -> list[Mail]:
    """The round's mails of this kind not yet noted, noted in the mail ledger (sent after the commit)."""
    mails = []
    for person in await _members_to_mail(db, round_, kind, unanswered_only):
        db.add(RoundMail(round_id=round_.id, person_id=person.id, kind=kind))
        mails.append((kind, round_.id, person.id))
    return mails


async def refused_mails(db: AsyncSession, round_: Round) -> list[Mail]:
    """Mails the server refused before, to be tried again (up to MAX_MAIL_FAILURES)."""
    refused = await db.scalars(
        select(RoundMail).where(
            RoundMail.round_id == round_.id, RoundMail.failures > 0, RoundMail.failures < MAX_MAIL_FAILURES
        )
    )
    return [(mail.kind, round_.id, mail.person_id) for mail in refused]
