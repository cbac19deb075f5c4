"""Answering a check-in, and changing one's answer until the reveal, with no row per person.

The member's current answer is kept by their own browser only, in a receipt: the answers, the id
of their comment (if any) and a random nonce, sealed (AES-256-GCM) under the check-in's own key,
a file outside the database destroyed at close (privacy/round_keys.py). The ledger row holds
SHA-256 of the nonce, so only the latest receipt can fold the previous answer out of the tally;
a receipt kept from before cannot fold it out twice. The database therefore never holds a
person's answer, not even sealed: only the tally (sealed while open) and the ledger (who joined).
"""

from __future__ import annotations

import base64
import hashlib
import os
import uuid

import msgspec
from sqlalchemy import delete, insert, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from safespace import clock
from safespace.checkin.keys import checkin_keys
from safespace.checkin.models import CheckIn, CheckInComment, CheckInParticipation, CheckInTally
from safespace.checkin.services import NotOpen
from safespace.errors import InvalidInput, Refused
from safespace.i18n import gettext as _
from safespace.privacy.crypto import Keyring, associated_data
from safespace.privacy.round_keys import RoundKeyError, is_sealed
from surveys import tally as tally_rules

NONCE_BYTES = 16
SKIP = "skip"  # the "Prefer not to answer" radio
MAX_COMMENT_CHARS = 1000  # the answer page's maxlength
# A pending comment is sealed padded to this (UTF-8 takes at most 4 bytes a character), for the
# same reason: its row's versions, each written beside a ledger row, would otherwise pair a
# member with the comment released at close by its length.
COMMENT_BYTES = 4 * MAX_COMMENT_CHARS


class AnsweredElsewhere(Refused):
    """The member answered in another browser, which holds the receipt needed to change it."""


class Receipt(msgspec.Struct, forbid_unknown_fields=True):
    nonce: str  # hex; its hash is the ledger's receipt_hash
    answers: dict[str, int | None]
    comment: str | None = None  # the comment row's random id


def receipt_cookie(checkin: CheckIn) -> str:
    return f"checkin_{checkin.code}"


def _receipt_aad(checkin: CheckIn, person_id: uuid.UUID) -> bytes:
    # Bound to the member: a receipt copied to someone else's browser does not open for them.
    return associated_data("checkin_receipt", "cookie", f"{checkin.id}/{person_id}")


def nonce_hash(nonce: str) -> bytes:
    return hashlib.sha256(bytes.fromhex(nonce)).digest()


def seal_receipt(keyring: Keyring, checkin: CheckIn, person_id: uuid.UUID, receipt: Receipt) -> str:
    return seal_bound(keyring, checkin.id, receipt, _receipt_aad(checkin, person_id))


def open_receipt(keyring: Keyring, checkin: CheckIn, person_id: uuid.UUID, value: str | None) -> Receipt | None:
    """The receipt the browser sent, or None if it sent none or one that does not open."""
    return open_bound(keyring, checkin.id, value, _receipt_aad(checkin, person_id))


def seal_bound(keyring: Keyring, checkin_id: uuid.UUID, receipt: Receipt, aad: bytes) -> str:
    """A receipt sealed under the check-in's key, bound to `aad` (a member, or a token)."""
    sealed = checkin_keys(keyring).seal(checkin_id, msgspec.json.encode(receipt), aad)
    return base64.urlsafe_b64encode(sealed).decode()


def open_bound(keyring: Keyring, checkin_id: uuid.UUID, value: str | None, aad: bytes) -> Receipt | None:
    """A receipt sealed by seal_bound with the same `aad`, or None (none sent, or it does not open)."""
    if not value:
        return None
    try:
        sealed = base64.urlsafe_b64decode(value.encode())
        return msgspec.json.decode(checkin_keys(keyring).open(checkin_id, sealed, aad), type=Receipt)
    except (ValueError, RoundKeyError, msgspec.DecodeError):
        return None


def _tally_aad(checkin_id: uuid.UUID) -> bytes:
    return associated_data("checkin_tally", "data", checkin_id)


def seal_tally(keyring: Keyring, checkin_id: uuid.UUID, tally: tally_rules.Tally) -> bytes:
    # At a length its answers cannot change (tally.encode_fixed_length): each state sits beside a ledger row.
    return checkin_keys(keyring).seal(checkin_id, tally_rules.encode_fixed_length(tally), _tally_aad(checkin_id))


def read_tally(keyring: Keyring, checkin_id: uuid.UUID, data: bytes) -> tally_rules.Tally:
    """Sealed under the check-in's key while open (each state differs from the last by one
    answer, and databases keep old row versions); in the clear once closed."""
    if is_sealed(data):
        data = checkin_keys(keyring).open(checkin_id, data, _tally_aad(checkin_id))
    return msgspec.json.decode(data, type=tally_rules.Tally)


def _negated(t: tally_rules.Tally) -> tally_rules.Tally:
    """A tally whose every count and sum is the opposite: merging it in folds `t` out."""

    def neg(value):  # noqa: ANN001, ANN202
        if isinstance(value, bool) or not isinstance(value, int | list | dict):
            return value
        if isinstance(value, int):
            return -value
        if isinstance(value, list):
            return [neg(v) for v in value]
        return {k: neg(v) for k, v in value.items()}

    fields = {name: getattr(t, name) for name in t.__struct_fields__}
    keep = {"items", "reverse", "points"}
    return tally_rules.Tally(**{name: value if name in keep else neg(value) for name, value in fields.items()})


def refold(tally: tally_rules.Tally, old: dict[str, int | None] | None, new: dict[str, int | None]) -> tally_rules.Tally:
    """The tally with `old` (a previous answer set, if any) folded out and `new` folded in."""
    changed = tally_rules.fold(tally, new)
    if old is None:
        return changed
    previous = tally_rules.fold(tally_rules.new_tally(tally.items, tally.reverse, tally.points), old)
    return tally_rules.merge(changed, _negated(previous))


async def locked_tally(db: AsyncSession, checkin_id: uuid.UUID) -> CheckInTally:
    """The check-in's tally row, this transaction holding the write lock: answers and the close
    queue here, each reading the tally the one before it wrote. PostgreSQL locks the row (SELECT
    FOR UPDATE: no extra row version, in pages and WAL, per answer); SQLite, which has no row
    locks, takes the database's write lock at the first write, a no-op UPDATE."""
    if db.bind.dialect.name == "sqlite":
        await db.execute(update(CheckInTally).where(CheckInTally.checkin_id == checkin_id).values(respondents=CheckInTally.respondents))
    return await db.get(CheckInTally, checkin_id, with_for_update=True, populate_existing=True)


def read_form(instrument, form: dict[str, str]) -> dict[str, int | None]:  # noqa: ANN001
    """The radio buttons as an answer set; InvalidInput names each statement left unanswered."""
    answers: dict[str, int | None] = {}
    errors = {}
    for item in instrument.items:
        value = form.get(f"a.{item.key}", "")
        if value == SKIP:
            answers[item.key] = None
        elif value.isdigit() and 1 <= int(value) <= instrument.scale.points:
            answers[item.key] = int(value)
        else:
            errors[f"a.{item.key}"] = _("Choose an answer, or “Prefer not to answer”.")
    if errors:
        raise InvalidInput(errors)
    return answers


class TookToken(Refused):
    """The member took a private-mode token: the answer goes from the browser holding it."""


async def lock_open(db: AsyncSession, checkin: CheckIn) -> CheckInTally:
    """The tally row, locked (see locked_tally); NotOpen once answers closed."""
    row = await locked_tally(db, checkin.id)
    state = await db.scalar(select(CheckIn.state).where(CheckIn.id == checkin.id))
    if state != "open" or clock.now() >= checkin.closes_at:  # past its time: closed, whenever tick runs
        raise NotOpen(_("This check-in is closed; answers are no longer accepted."))
    return row


async def open_tally(db: AsyncSession, keyring: Keyring, checkin: CheckIn) -> tuple[CheckInTally, tally_rules.Tally]:
    """The tally row, locked, and its contents; NotOpen once answers closed."""
    row = await lock_open(db, checkin)
    return row, read_tally(keyring, checkin.id, row.data)


def check_comment(comment: str) -> str:
    comment = comment.strip()
    if len(comment) > MAX_COMMENT_CHARS:
        raise InvalidInput({"comment": _("Keep your comment to %(n)s characters or fewer.") % {"n": MAX_COMMENT_CHARS}})
    return comment


async def fold_answer(
    db: AsyncSession, keyring: Keyring, checkin: CheckIn, row: CheckInTally, tally: tally_rules.Tally,
    previous: Receipt | None, answers: dict[str, int | None], comment: str,
) -> Receipt:  # fmt: skip
    """Fold `previous` (the answer a receipt holds, if any) out of the tally and `answers` in,
    replacing its comment; returns the new receipt. Who answered is the caller's business."""
    receipt = Receipt(nonce=os.urandom(NONCE_BYTES).hex(), answers=answers)
    if previous is not None and previous.comment:
        await db.execute(delete(CheckInComment).where(CheckInComment.id == uuid.UUID(previous.comment), CheckInComment.checkin_id == checkin.id))
    if comment and checkin.prompt:
        comment_id = uuid.uuid4()
        padded = comment.encode().ljust(COMMENT_BYTES)  # stripped: the close strips the padding off
        body = checkin_keys(keyring).seal(checkin.id, padded, associated_data("checkin_comment", "body", f"{checkin.id}/{comment_id}"))
        await db.execute(insert(CheckInComment).values(id=comment_id, checkin_id=checkin.id, body=body))
        receipt.comment = str(comment_id)
    tally = refold(tally, previous.answers if previous else None, answers)
    row.data = seal_tally(keyring, checkin.id, tally)
    row.respondents = tally.respondents
    return receipt


async def answer(
    db: AsyncSession,
    keyring: Keyring,
    checkin: CheckIn,
    person_id: uuid.UUID,
    answers: dict[str, int | None],
    comment: str,
    sent_receipt: str | None,
) -> tuple[str, int | None]:
    """Count (or change) the member's answer, sent signed in; returns the new receipt and how many
    answered, or None for a change of answer (the count did not move: there is nothing to tell
    listeners).

    The first statement takes the write lock (PostgreSQL: the tally row; SQLite: the database),
    so concurrent answers queue here and each reads the tally the one before it wrote."""
    comment = check_comment(comment)
    row, tally = await open_tally(db, keyring, checkin)
    answers = tally_rules.check_answers(tally, answers)
    ledger = (
        await db.execute(
            select(CheckInParticipation.receipt_hash, CheckInParticipation.tokens).where(
                CheckInParticipation.checkin_id == checkin.id, CheckInParticipation.person_id == person_id
            )
        )
    ).one_or_none()
    if ledger is not None and ledger.receipt_hash is None:
        # It may have answered with that token: a second answer here could count twice.
        raise TookToken(
            _("This check-in's private-mode token is in the browser where you opened it: answer from there, without your name.")
        )
    hashed = ledger.receipt_hash if ledger is not None else None
    joined = hashed is not None
    previous = open_receipt(keyring, checkin, person_id, sent_receipt) if joined else None
    if joined and (previous is None or nonce_hash(previous.nonce) != hashed):
        raise AnsweredElsewhere(
            _("You have already answered, in another browser or device; your answer is counted. It can be changed only from there.")
        )
    receipt = await fold_answer(db, keyring, checkin, row, tally, previous, answers, comment)
    new_hash = nonce_hash(receipt.nonce)
    if joined:
        await db.execute(
            update(CheckInParticipation)
            .where(CheckInParticipation.checkin_id == checkin.id, CheckInParticipation.person_id == person_id)
            .values(receipt_hash=new_hash)
        )
    else:
        await db.execute(insert(CheckInParticipation).values(checkin_id=checkin.id, person_id=person_id, receipt_hash=new_hash))
    await db.flush()
    return seal_receipt(keyring, checkin, person_id, receipt), None if joined else row.respondents
