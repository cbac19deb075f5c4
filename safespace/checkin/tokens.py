"""Check-ins in private mode: the answer arrives with an RFC 9474 token and no session.

Take (signed in, on the join page, ahead of any answer): the member gets a blind signature of the
check-in's key; the ledger notes that they took a token (`tokens`), not whether they answered.
Answer (anonymous): the token verifies, its hash is noted as spent with the hash of the answer's
receipt nonce, the answer is folded into the tally. The receipt (sealed under the check-in's own
key, bound to the token's hash) goes back to the browser, which sends it with the same token to
change the answer until the reveal: old receipts cannot fold an answer out twice.

Any device: a member may take a second token (another browser or phone). Each token answers
once, so such a member may be counted twice; the tally counts the members who took a second
token (`reissued`) and the results say "up to N answers may come from re-issued tokens".
"""

from __future__ import annotations

import hashlib
import uuid

import msgspec
from sqlalchemy import insert, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from safespace.checkin import answering
from safespace.checkin.models import CheckIn, CheckInKey, CheckInParticipation, CheckInSpentToken, CheckInTally
from safespace.checkin.services import instrument_of
from safespace.db.upsert import insert_once
from safespace.i18n import gettext as _
from safespace.privacy import token_keys
from safespace.privacy.crypto import Keyring, associated_data
from safespace.privacy.token_keys import TokenRefused
from surveys import tally as tally_rules

KEY_TABLE = "checkin_key"
MAX_TOKENS = 2  # one, and one more for a second browser or device (counted as re-issued)


class CheckInTokenKey(msgspec.Struct):
    key_id: uuid.UUID
    jwk: dict[str, str]
    fingerprint: str


class CheckInBlindRequest(msgspec.Struct, forbid_unknown_fields=True):
    key_id: uuid.UUID
    blinded_msg: str


class CheckInRedemption(msgspec.Struct, forbid_unknown_fields=True):
    """An answer with a token: the form's fields, {"a.<statement>": "<point>" or "skip"}."""

    key_id: uuid.UUID
    msg: str
    sig: str
    answers: dict[str, str]
    comment: str = ""
    receipt: str | None = None  # the answer's receipt, to change it
    code: str = ""  # the join code of the page it was sent from: checked against the token's check-in


def _published(key: CheckInKey) -> CheckInTokenKey:
    return CheckInTokenKey(key.id, token_keys.jwk(key.public_der), key.fingerprint)


async def key_for(db: AsyncSession, keyring: Keyring, checkin: CheckIn, bits: int) -> CheckInTokenKey:
    """The check-in's key, made on first use (two first uses may race: one key wins)."""
    query = select(CheckInKey).where(CheckInKey.checkin_id == checkin.id)
    key = await db.scalar(query)
    if key is None:
        made = await token_keys.new_key(keyring, KEY_TABLE, bits)
        values = {"id": made.id, "checkin_id": checkin.id, "public_der": made.public_der,
                  "private_sealed": made.private_sealed, "fingerprint": made.fingerprint}  # fmt: skip
        await insert_once(db, CheckInKey, values, ["checkin_id"])
        key = await db.scalar(query)
    return _published(key)


async def published_keys(db: AsyncSession, code: str) -> list[CheckInTokenKey]:
    """The key of the check-in with this code, for anyone (the browser compares): listed, never made."""
    keys = await db.scalars(select(CheckInKey).join(CheckIn, CheckIn.id == CheckInKey.checkin_id).where(CheckIn.code == code))
    return [_published(key) for key in keys]


async def issue(db: AsyncSession, keyring: Keyring, checkin: CheckIn, person_id: uuid.UUID, key_id: uuid.UUID, blinded: bytes) -> bytes:
    """Sign a member's blinded token; the caller has checked the membership and commits."""
    await answering.lock_open(db, checkin)  # locked and open (the tally is not opened): the ledger below is read once
    key = await db.scalar(select(CheckInKey).where(CheckInKey.id == key_id, CheckInKey.checkin_id == checkin.id))
    if key is None:
        raise TokenRefused(_("This key is not this check-in's; reload the page."), 409)
    request_hash = hashlib.sha256(blinded).digest()
    where = (CheckInParticipation.checkin_id == checkin.id, CheckInParticipation.person_id == person_id)
    ledger = (await db.execute(select(CheckInParticipation).where(*where))).scalar_one_or_none()
    if ledger is not None and ledger.receipt_hash is not None:
        raise TokenRefused(_("You have already answered this check-in, without private mode; change your answer from that browser."), 409)
    if ledger is not None and ledger.tokens >= MAX_TOKENS and ledger.token_request != request_hash:
        raise TokenRefused(_("You have taken this check-in's token in two browsers already: answer from one of them."), 409)
    signature = await token_keys.sign(keyring, KEY_TABLE, key.id, key.private_sealed, blinded)  # refused: nothing written
    if ledger is None:
        await db.execute(insert(CheckInParticipation).values(checkin_id=checkin.id, person_id=person_id, tokens=1, token_request=request_hash))
    elif ledger.token_request != request_hash:  # not the repeat of a request whose answer was lost
        await db.execute(update(CheckInParticipation).where(*where).values(tokens=ledger.tokens + 1, token_request=request_hash))
        await db.execute(update(CheckInTally).where(CheckInTally.checkin_id == checkin.id).values(reissued=CheckInTally.reissued + 1))
    await db.flush()
    return signature


def _receipt_aad(checkin_id: uuid.UUID, token_hash: bytes) -> bytes:
    # Bound to the token: a receipt opens for the answer of that token and no other.
    return associated_data("checkin_receipt", "token", f"{checkin_id}/{token_hash.hex()}")


async def redeem(db: AsyncSession, keyring: Keyring, data: CheckInRedemption) -> tuple[CheckIn, str, int | None]:
    """Count (or, with its receipt, change) the answer of a token; returns the check-in, the new
    receipt and how many answered (None for a change: the count did not move)."""
    key = await db.get(CheckInKey, data.key_id)
    if key is None:  # deleted at close, with the check-in's answers
        raise answering.NotOpen(_("This check-in is closed; answers are no longer accepted."))
    token_hash = token_keys.check(key.public_der, data.msg, data.sig)
    checkin = await db.get_one(CheckIn, key.checkin_id)
    if data.code and data.code != checkin.code:
        raise TokenRefused(_("This token is another check-in's."), 409)
    answers = answering.read_form(instrument_of(checkin), data.answers)
    comment = answering.check_comment(data.comment)
    row, tally = await answering.open_tally(db, keyring, checkin)
    answers = tally_rules.check_answers(tally, answers)
    spent = await db.get(CheckInSpentToken, (checkin.id, token_hash), with_for_update=True)
    previous = None
    if spent is not None:
        previous = answering.open_bound(keyring, checkin.id, data.receipt, _receipt_aad(checkin.id, token_hash))
        if previous is None or answering.nonce_hash(previous.nonce) != spent.receipt_hash:
            # Final: what this token carried was counted (most likely this browser's own send whose
            # answer was lost); only the latest receipt may change it.
            raise TokenRefused(_("This token has answered already; your answer is counted."), 409)
    receipt = await answering.fold_answer(db, keyring, checkin, row, tally, previous, answers, comment)
    if spent is None:
        db.add(CheckInSpentToken(checkin_id=checkin.id, token_hash=token_hash, receipt_hash=answering.nonce_hash(receipt.nonce)))
    else:
        spent.receipt_hash = answering.nonce_hash(receipt.nonce)
    await db.flush()
    return checkin, answering.seal_bound(keyring, checkin.id, receipt, _receipt_aad(checkin.id, token_hash)), None if spent is not None else row.respondents
