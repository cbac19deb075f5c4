"""Answering, the privacy-critical path: the rules, callable without HTTP.

In one transaction it adds the member to the round's participation ledger and folds the answers
into tallies; no row ever holds one person's answers, and free text goes encrypted into pending
comments with no member id and no time."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime

import msgspec
from sqlalchemy import Connection, Text, bindparam, cast, delete, insert, select, update
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Session

from safespace import clock
from safespace.db import upsert
from safespace.db.batch import padded
from safespace.errors import InvalidInput
from safespace.i18n import gettext as _
from safespace.identity.models import Community, Membership
from safespace.identity.signin import SET_NOTICE
from safespace.privacy.crypto import Keyring, associated_data
from safespace.privacy.round_keys import is_sealed
from safespace.pulse.models import (
    Participation,
    PendingComment,
    Round,
    Tally,
)

# --- answering -------------------------------------------------------------------------------------
from safespace.pulse.services import COMMUNITY, MAX_COMMENT_CHARS, AlreadyAnswered, RoundNotOpen, TokensRequired
from surveys import tally as tally_rules
from surveys.instrument import (
    Instrument,
    parse_instrument,
)


def field_name(instrument: str, item: str) -> str:
    return f"{instrument}.{item}"


def read_answers(instruments: list[Instrument], form: dict[str, str]) -> tuple[dict[str, dict], dict[str, str]]:
    """Form fields -> (answers per instrument, comment per instrument). Raises InvalidInput.

    Fields are "<instrument>.<item>" with a scale point or "skip" (prefer not to answer), and
    "<instrument>.comment". Unknown fields are refused: they could only come from a forged form.
    """
    answers: dict[str, dict[str, int | None]] = {i.key: {} for i in instruments}
    comments: dict[str, str] = {}
    by_key = {i.key: i for i in instruments}
    errors: dict[str, str] = {}
    for name, raw in form.items():
        if name == "_csrf_token":
            continue
        instrument_key, _dot, item_key = name.partition(".")
        instrument = by_key.get(instrument_key)
        if instrument is None or (item_key != "comment" and item_key not in instrument.item_keys):
            errors[name] = _("This question is not part of the round.")
            continue
        if item_key == "comment":
            text = str(raw).strip()
            if len(text) > MAX_COMMENT_CHARS:
                errors[name] = _("Keep your comment to %(n)s characters or fewer.") % {"n": MAX_COMMENT_CHARS}
            elif text and instrument.free_text is not None:
                comments[instrument_key] = text
            continue
        value = str(raw).strip()
        if value in ("", "skip"):
            answers[instrument_key][item_key] = None
            continue
        try:
            answers[instrument_key][item_key] = int(value)
        except ValueError:
            errors[name] = _("Choose one of the points on the scale, or “prefer not to answer”.")
    for instrument in instruments:
        try:
            answers[instrument.key] = tally_rules.check_answers(
                tally_rules.new_tally(instrument.item_keys, instrument.reverse_keys, instrument.scale.points, instrument.scale.kind),
                answers[instrument.key],
            )
        except tally_rules.AnswerError as exc:
            errors[field_name(instrument.key, exc.item or "")] = _("This answer is not on the scale: %(reason)s") % {
                "reason": exc.reason
            }
    if errors:
        raise InvalidInput(errors)
    return answers, comments


# The answer path in SQLAlchemy Core: a handful of fixed statements (compiled once, cached by
# SQLAlchemy), plain rows, no ORM identity map to fill and flush on every submission. Each
# statement serves a whole batch of answers (pulse/group_commit.py): one round trip per step,
# whether one member answers or fifty.
_ROUND, _TALLY, _LEDGER = Round.__table__, Tally.__table__, Participation.__table__
_ROUNDS = (
    # Snapshots come back as the stored JSON text, decoded once per round (see _rules_for).
    select(
        _ROUND.c.id,
        _ROUND.c.community_id,
        _ROUND.c.opens_at,
        _ROUND.c.closes_at,
        _ROUND.c.closed,
        cast(_ROUND.c.instruments, Text),
        cast(_ROUND.c.population, Text),
        Community.require_tokens,
    )
    .join(Community, Community.id == _ROUND.c.community_id)
    .where(_ROUND.c.id.in_(bindparam("rounds", expanding=True)))
)
_MEMBERS = select(Membership.person_id, Membership.community_id, Membership.team_id).where(
    Membership.person_id.in_(bindparam("people", expanding=True)),
    Membership.community_id.in_(bindparam("communities", expanding=True)),
    Membership.status == "active",
)
_STILL_OPEN = (
    select(_ROUND.c.id)
    .where(_ROUND.c.id.in_(bindparam("rounds", expanding=True)), _ROUND.c.closed.is_(False))
    .with_for_update(read=True)
)
_TALLIES = (
    select(_TALLY.c.round_id, _TALLY.c.instrument, _TALLY.c.group_key, _TALLY.c.data)
    .where(_TALLY.c.round_id.in_(bindparam("rounds", expanding=True)), _TALLY.c.group_key.in_(bindparam("groups", expanding=True)))
    .order_by(_TALLY.c.round_id, _TALLY.c.instrument, _TALLY.c.group_key)  # one lock order for every writer
    .with_for_update()
)
_FOLD_IN = (
    update(_TALLY)
    .where(_TALLY.c.round_id == bindparam("r"), _TALLY.c.instrument == bindparam("i"), _TALLY.c.group_key == bindparam("g"))
    .values(data=bindparam("d"), respondents=bindparam("n"))
)
_UNJOIN_LEDGER = delete(_LEDGER).where(_LEDGER.c.round_id == bindparam("r"), _LEDGER.c.person_id == bindparam("p"))
# Any device: a member whose token is in another browser may answer once with the form instead.
_SECOND_CHANCE = (_LEDGER.c.round_id == bindparam("r"), _LEDGER.c.person_id == bindparam("p"))
_CLAIM_SECOND = (
    update(_LEDGER)
    .where(*_SECOND_CHANCE, _LEDGER.c.token_request.is_not(None), _LEDGER.c.reissued.is_(False))
    .values(reissued=True)
)
_UNCLAIM_SECOND = update(_LEDGER).where(*_SECOND_CHANCE).values(reissued=False)
_PEND_COMMENT = insert(PendingComment.__table__)

# (round id, instruments JSON, population JSON) -> (instruments, group keys). A round's snapshots
# never change once it opens; keying by their text as well means a cache can never answer for
# content it was not built from.
_answer_rules: dict[tuple[uuid.UUID, str, str], tuple[list[Instrument], frozenset[str]]] = {}


def _rules_for(round_id: uuid.UUID, instruments_json: str, population_json: str) -> tuple[list[Instrument], frozenset[str]]:
    key = (round_id, instruments_json, population_json)
    rules = _answer_rules.get(key)
    if rules is None:
        if len(_answer_rules) > 1000:
            _answer_rules.clear()
        definitions = msgspec.json.decode(instruments_json)
        instruments = [parse_instrument(definition, f"round {round_id}") for definition in definitions]
        rules = _answer_rules[key] = (instruments, frozenset(msgspec.json.decode(population_json)))
    return rules


@dataclass(frozen=True)
class Answer:
    """One member's answers to one round, as the form sent them, waiting to be folded in."""

    community_id: uuid.UUID
    person_id: uuid.UUID
    round_id: uuid.UUID
    form: dict[str, str]
    # (web session, one-time notice JSON) to set in the same transaction, so the next page
    # thanks the member exactly when the answers are counted.
    notice: tuple[uuid.UUID, str] | None = None


@dataclass
class _Fold:
    """An answer that passed every check: what goes into which tallies."""

    answer: Answer
    answers: dict[str, dict]
    comments: dict[str, str]
    groups: list[str]  # the community, and the member's team if it is in the round's population
    opens_at: datetime
    closes_at: datetime


async def submit(
    db: AsyncSession,
    keyring: Keyring,
    community_id: uuid.UUID,
    person_id: uuid.UUID,
    round_id: uuid.UUID,
    form: dict[str, str],
) -> None:
    """Record that the member answered and fold the answers in, all or nothing; the caller commits.

    LookupError when the person is not an active member of the community or the round is not
    one of its rounds; RoundNotOpen, TokensRequired, InvalidInput, AlreadyAnswered otherwise.
    Pages go through pulse.group_commit, which folds concurrent answers in one transaction.
    """
    (outcome,) = await db.run_sync(fold_answers, keyring, [Answer(community_id, person_id, round_id, form)])
    if outcome is not None:
        raise outcome


def fold_answers(db: Session, keyring: Keyring, batch: list[Answer]) -> list[Exception | None]:
    """Check and fold a batch of answers in the session's transaction: for each answer, None
    (counted) or the exception that says why not. The caller commits; nothing is written for an
    answer that was refused, and a refused answer does not stop the others.

    Per batch, whatever its size: two reads (the rounds; the members' active memberships), the
    ledger INSERT, the rounds re-checked FOR SHARE, the tallies read FOR UPDATE, one executemany
    each for tallies, comments and notices. Each tally is decoded and encoded once per batch.
    """
    conn = db.connection()
    outcomes: list[Exception | None] = [None] * len(batch)
    rounds = {row[0]: row for row in conn.execute(_ROUNDS, {"rounds": padded(a.round_id for a in batch)})}
    members = {
        (person_id, community_id): team_id
        for person_id, community_id, team_id in conn.execute(
            _MEMBERS, {"people": padded(a.person_id for a in batch), "communities": padded(a.community_id for a in batch)}
        )
    }
    moment, folds, first = clock.now(), {}, {}
    twins: dict[int, int] = {}  # a member's second answer in this batch -> the index of the first
    for index, answer in enumerate(batch):
        found = rounds.get(answer.round_id)
        team_id = members.get((answer.person_id, answer.community_id), False)
        if found is None or found[1] != answer.community_id or team_id is False:
            outcomes[index] = LookupError("no such round in this community, or not an active member of it")
            continue
        _id, _community, opens_at, closes_at, closed, instruments_json, population_json, require_tokens = found
        if closed or not opens_at <= moment < closes_at:
            outcomes[index] = RoundNotOpen()
            continue
        if require_tokens:
            outcomes[index] = TokensRequired()
            continue
        instruments, population = _rules_for(answer.round_id, instruments_json, population_json)
        try:
            answers, comments = read_answers(instruments, answer.form)
        except InvalidInput as exc:
            outcomes[index] = exc
            continue
        if (answer.round_id, answer.person_id) in first:  # the same member twice in one batch
            twins[index] = first[answer.round_id, answer.person_id]
            continue
        first[answer.round_id, answer.person_id] = index
        team_key = str(team_id) if team_id else None
        groups = [COMMUNITY] + ([team_key] if team_key in population else [])
        folds[index] = _Fold(answer, answers, comments, groups, opens_at, closes_at)
    if folds:
        _count_in(conn, keyring, folds, outcomes)
    for index, twin in twins.items():
        # Already answered, by the twin; unless the twin found the round closed meanwhile.
        outcomes[index] = RoundNotOpen() if isinstance(outcomes[twin], RoundNotOpen) else AlreadyAnswered()
    return outcomes


def _count_in(conn: Connection, keyring: Keyring, folds: dict[int, _Fold], outcomes: list[Exception | None]) -> None:
    """The writes of fold_answers for the answers that passed every check; a refusal found here
    goes into `outcomes`."""
    # The ledger INSERT is the first write: SQLite (whose driver runs the reads above outside
    # any transaction) takes its write lock here, before the tallies are read, so concurrent
    # answers cannot lose an update. A member already in the ledger gets no row back. Rows go in
    # in one order (by person), so two PostgreSQL writers with overlapping batches cannot deadlock.
    ordered = sorted(folds.items(), key=lambda item: (str(item[1].answer.round_id), str(item[1].answer.person_id)))
    joined = conn.execute(
        upsert.insert_ignoring(conn.dialect.name, _LEDGER, ["round_id", "person_id"]).returning(_LEDGER.c.round_id, _LEDGER.c.person_id),
        [{"round_id": f.answer.round_id, "person_id": f.answer.person_id} for _i, f in ordered],
    )
    new = set(joined.tuples())
    second: set[int] = set()
    for index, fold in list(folds.items()):
        if (fold.answer.round_id, fold.answer.person_id) not in new:
            # In the ledger already: with a token taken in another browser, this is its one re-issue.
            claimed = conn.execute(_CLAIM_SECOND, {"r": fold.answer.round_id, "p": fold.answer.person_id}).rowcount
            if claimed == 1:
                second.add(index)
                continue
            outcomes[index] = AlreadyAnswered()
            del folds[index]
    if not folds:
        return
    # Checked again under the write lock: a close that committed meanwhile wins, so no answer
    # lands in a frozen round (PostgreSQL: FOR SHARE waits for a close holding the round). Such
    # answers leave the ledger again; they are not counted.
    still_open = set(conn.scalars(_STILL_OPEN, {"rounds": padded(f.answer.round_id for f in folds.values())}))
    moment = clock.now()
    for index, fold in list(folds.items()):
        if fold.answer.round_id not in still_open or not fold.opens_at <= moment < fold.closes_at:
            undo = _UNCLAIM_SECOND if index in second else _UNJOIN_LEDGER
            conn.execute(undo, {"r": fold.answer.round_id, "p": fold.answer.person_id})
            outcomes[index] = RoundNotOpen()
            del folds[index]
    if folds:
        fold_into_tallies(conn, keyring, [(f.answer.round_id, f.groups, f.answers, f.comments) for f in folds.values()])
        notices = [{"session_id": f.answer.notice[0], "notice": f.answer.notice[1]} for f in folds.values() if f.answer.notice]
        if notices:
            conn.execute(SET_NOTICE, notices)


def _tally_aad(round_id: uuid.UUID, instrument: str, group: str) -> bytes:
    return associated_data("tally", "data", f"{round_id}/{instrument}/{group}")


def read_tally(keyring: Keyring, round_id: uuid.UUID, instrument: str, group: str, data: bytes) -> tally_rules.Tally:
    """A tally row's state: sealed under the round's key while the round is open (every answer
    writes a new state, and databases keep old ones: privacy/round_keys.py), in the clear after."""
    if is_sealed(data):
        data = keyring.rounds.open(round_id, data, _tally_aad(round_id, instrument, group))
    return msgspec.json.decode(data, type=tally_rules.Tally)


def sealed_tally(keyring: Keyring, round_id: uuid.UUID, instrument: str, group: str, tally: tally_rules.Tally) -> bytes:
    # At a length its answers cannot change (tally.encode_fixed_length): each state sits beside a ledger row.
    return keyring.rounds.seal(round_id, tally_rules.encode_fixed_length(tally), _tally_aad(round_id, instrument, group))


# A pending comment is sealed padded to this (UTF-8 takes at most 4 bytes a character): its row
# sits beside the ledger row of the one who wrote it, and its text is released at close, so its
# length alone would pair them. lifecycle._pending_text strips the padding.
COMMENT_BYTES = 4 * MAX_COMMENT_CHARS


def seal_pending_comment(keyring: Keyring, round_id: uuid.UUID, comment_id: uuid.UUID, text: str) -> bytes:
    """Under the round's own key, like the tallies: destroyed at close (privacy/round_keys.py)."""
    aad = associated_data("pending_comment", "body", f"{round_id}/{comment_id}")
    return keyring.rounds.seal(round_id, text.encode().ljust(COMMENT_BYTES), aad)


def fold_into_tallies(
    conn: Connection, keyring: Keyring, folds: list[tuple[uuid.UUID, list[str], dict[str, dict], dict[str, str]]]
) -> None:
    """Add answers to their tallies and seal their comments as pending, in the caller's transaction.

    Each fold is (round, groups, checked answers per instrument, comment per instrument); the
    comments go under the last group (the team, else the community). The tallies are read FOR
    UPDATE (PostgreSQL: concurrent writers queue here, row by row, in one order), each decoded
    and encoded once however many answers go into it.
    """
    rounds = {round_id for round_id, *_rest in folds}
    groups = {group for _r, fold_groups, *_rest in folds for group in fold_groups}
    tallies = {
        (round_id, instrument, group): read_tally(keyring, round_id, instrument, group, data)
        for round_id, instrument, group, data in conn.execute(_TALLIES, {"rounds": padded(rounds), "groups": padded(groups)})
    }
    batched: dict[tuple[uuid.UUID, str, str], list[dict]] = {}
    pending = []
    for round_id, fold_groups, answers, comments in folds:
        for instrument, items in answers.items():
            for group in fold_groups:
                if (round_id, instrument, group) in tallies:
                    batched.setdefault((round_id, instrument, group), []).append(items)
        for instrument, text in comments.items():
            comment_id = uuid.uuid4()
            body = seal_pending_comment(keyring, round_id, comment_id, text)
            pending.append({"id": comment_id, "round_id": round_id, "instrument": instrument, "group_key": fold_groups[-1], "body": body})
    changed = {key: tally_rules.fold_all(tallies[key], answer_sets) for key, answer_sets in batched.items()}
    if changed:
        conn.execute(
            _FOLD_IN,  # by primary key (rows locked above); one executemany for every tally of the batch
            [{"r": r, "i": i, "g": g, "d": sealed_tally(keyring, r, i, g, t), "n": t.respondents} for (r, i, g), t in changed.items()],
        )
    if pending:
        conn.execute(_PEND_COMMENT, pending)
