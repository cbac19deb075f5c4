"""Unlinkable answers: RFC 9474 blind-signature tokens for pulse rounds.

Issue (signed in, pulse/token_queue.py): the member joins the round's ledger ("has a token")
and the server signs a blinded message it will never see unblinded. Redeem (anonymous): the answers arrive with the
unblinded message and signature, in a request that carries no session; the key that verifies
it says which tally they fold into. The spent table holds the token's hash, so it works once.
The server can check that an answer set is allowed without knowing whose it is.
"""

from __future__ import annotations

import uuid

import msgspec
from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from safespace import clock
from safespace.db.upsert import insert_once
from safespace.i18n import gettext as _
from safespace.identity.models import Membership
from safespace.privacy import token_keys
from safespace.privacy.crypto import Keyring
from safespace.privacy.token_keys import TokenRefused
from safespace.pulse.answering import fold_into_tallies, read_answers
from safespace.pulse.models import Round, RoundKey, SpentToken
from safespace.pulse.services import COMMUNITY, RoundNotOpen, is_open, round_instruments


class TokensUsedUp(Exception):
    """Both of a member's answer tokens for a round are taken, in other browsers."""


class PublishedKey(msgspec.Struct):
    key_id: uuid.UUID
    group_key: str  # "community" or a team id: the tally a token of this key counts in
    jwk: dict[str, str]
    fingerprint: str


def _published(key: RoundKey) -> PublishedKey:
    return PublishedKey(key.id, key.group_key, token_keys.jwk(key.public_der), key.fingerprint)


async def published_keys(db: AsyncSession, round_id: uuid.UUID) -> list[PublishedKey]:
    """Every key of a round: members compare the fingerprint their browser got with this list."""
    keys = await db.scalars(select(RoundKey).where(RoundKey.round_id == round_id).order_by(RoundKey.fingerprint))
    return [_published(k) for k in keys]


def group_of(population: dict[str, int], team_id: uuid.UUID | None) -> str:
    """The tally a member's token counts in: their team's, if the round counts it apart."""
    team = str(team_id) if team_id else None
    return team if team in population else COMMUNITY


async def key_for_group(db: AsyncSession, keyring: Keyring, round_: Round, group_key: str, bits: int) -> RoundKey:
    """The round's key for a group. Opening a round makes every one (lifecycle.open_round); a round
    opened before that still gets its keys here, on first use."""
    query = select(RoundKey).where(RoundKey.round_id == round_.id, RoundKey.group_key == group_key)
    existing = await db.scalar(query)
    if existing:
        return existing
    made = await token_keys.new_key(keyring, "round_key", bits)
    values = {"id": made.id, "round_id": round_.id, "group_key": group_key, "public_der": made.public_der,
              "private_sealed": made.private_sealed, "fingerprint": made.fingerprint}  # fmt: skip
    await insert_once(db, RoundKey, values, ["round_id", "group_key"])  # two first uses may race: one key wins
    return await db.scalar(query)


async def _open_round(db: AsyncSession, membership: Membership, round_id: uuid.UUID) -> Round:
    round_ = await db.scalar(select(Round).where(Round.id == round_id, Round.community_id == membership.community_id))
    if round_ is None:
        raise LookupError("no such round in this community")
    if not is_open(round_, clock.now()):
        raise RoundNotOpen
    return round_


async def key_for_member(
    db: AsyncSession, keyring: Keyring, membership: Membership, round_id: uuid.UUID, bits: int
) -> PublishedKey:
    """The public key a member blinds their token for: their team's (if counted apart) or the community's."""
    round_ = await _open_round(db, membership, round_id)
    return _published(await key_for_group(db, keyring, round_, group_of(round_.population, membership.team_id), bits))


class Redemption(msgspec.Struct, forbid_unknown_fields=True):
    """What the browser sends, with no session: the token and the answers."""

    round_id: uuid.UUID
    key_id: uuid.UUID
    msg: str  # base64url of the prepared message (32 random bytes || the token message)
    sig: str  # base64url of the unblinded signature
    answers: dict[str, str]


async def redeem(db: AsyncSession, keyring: Keyring, token: Redemption) -> None:
    """Verify the token, spend it and fold the answers in, all or nothing; the caller commits.

    Nothing here knows or records who is answering: no session is read, nothing is logged.
    """
    key = await db.scalar(select(RoundKey).where(RoundKey.id == token.key_id))
    if key is None or key.round_id != token.round_id:
        raise TokenRefused(_("This token is not for this round (its key is unknown, or the round has closed)."), 404, fresh_token=True)
    round_ = await db.get_one(Round, token.round_id)
    if not is_open(round_, clock.now()):
        raise RoundNotOpen
    answers, comments = read_answers(round_instruments(round_), token.answers)
    token_hash = token_keys.check(key.public_der, token.msg, token.sig)

    # The spent-token INSERT is the first write (SQLite takes its write lock here), in the same
    # transaction as the fold: a token is spent exactly when its answers are counted.
    db.add(SpentToken(round_id=round_.id, token_hash=token_hash))
    try:
        await db.flush()
    except IntegrityError:
        await db.rollback()
        # Final, not "take a new token": a spent token's answers are in the totals. The usual cause is
        # this browser's own earlier send whose answer was lost (a dropped connection, a restart);
        # sending the same answers again with a new token would count the member twice.
        raise TokenRefused(_("This token has been used already: its answers are counted."), 409) from None
    still_open = await db.scalar(select(Round.id).where(Round.id == round_.id, Round.closed.is_(False)).with_for_update(read=True))
    if still_open is None or not is_open(round_, clock.now()):
        await db.rollback()
        raise RoundNotOpen
    groups = [COMMUNITY] + ([key.group_key] if key.group_key != COMMUNITY else [])
    fold = (round_.id, groups, answers, comments)
    await db.run_sync(lambda session: fold_into_tallies(session.connection(), keyring, [fold]))


async def spent(db: AsyncSession, round_id: uuid.UUID) -> int:
    return await db.scalar(select(func.count()).select_from(SpentToken).where(SpentToken.round_id == round_id)) or 0
