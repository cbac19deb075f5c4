"""Group commit for answer tokens: concurrent issuances share their reads and their ledger transaction.

An issuance is small database work around one RSA signature: read the round, the key and the
member's membership; sign; note the member in the ledger. Alone, each paid its own round trips,
its own transaction and (SQLite) its own turn at the write lock: about 160 issuances/s with the
signature left out, whatever the key size. Here each step serves a batch (db/batch.py), and the
steps overlap: while one batch is signed, the next is read and the one before is committed.

1. checks: the rounds, keys and active memberships of the batch, one statement each, outside any
   transaction (db.engine.Reads; on SQLite in aiosqlite's thread): which key signs for whom, or why not.
2. the signatures, in batches of up to SIGN_BATCH, in the signing process (privacy/signing.py),
   before anything is written: a refused blinded message leaves no ledger row.
3. ledger: one transaction (`note_tokens`): INSERT ... ON CONFLICT DO NOTHING RETURNING in
   person order, one read of the rows that were there already (FOR UPDATE), one executemany
   for the second tokens, one commit. A request returns its signature only after that commit.

Refusals carry no text here (a batch runs in one request's context, so in one language): the
caller turns them into words.
"""

from __future__ import annotations

import hashlib
import itertools
import uuid
from dataclasses import dataclass

from sqlalchemy import bindparam, select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from sqlalchemy.orm import Session

from safespace import clock
from safespace.db import upsert
from safespace.db.batch import Batcher, padded
from safespace.db.engine import Reads, write_turn
from safespace.i18n import gettext as _
from safespace.identity.models import Membership
from safespace.privacy import signing, token_keys
from safespace.privacy.crypto import Keyring
from safespace.privacy.token_keys import TokenRefused
from safespace.pulse.models import Participation, Round, RoundKey
from safespace.pulse.services import ANSWERED, TOKEN_TAKEN, AlreadyAnswered, RoundNotOpen, ledger_state
from safespace.pulse.tokens import TokensUsedUp, group_of

# As the answer queue's: enough to amortise the round trips, small enough that a transaction
# holds its locks for a few milliseconds.
MAX_BATCH = 64
# Signing batches: small, so the answers come back to the loop a few at a time (a whole batch
# answered at once holds other requests, /healthz too, while its callers write their responses),
# and two at a time, so the signing process starts the next the moment one ends.
SIGN_BATCH = 8


class WrongKey(Exception):
    """The key is not the member's key in this round (another round's, another team's, or none)."""


@dataclass(frozen=True)
class Issuance:
    """One member's request for a blind signature, as the route received it."""

    community_id: uuid.UUID
    person_id: uuid.UUID
    round_id: uuid.UUID
    key_id: uuid.UUID
    blinded_msg: str  # base64url, decoded once the checks have passed


@dataclass(frozen=True)
class _SigningKey:
    id: uuid.UUID
    private_sealed: bytes


@dataclass
class _Row:
    """A ledger row as this batch leaves it."""

    token_request: bytes | None
    reissued: bool
    second_request: bytes | None


_ROUND, _KEY, _LEDGER = Round.__table__, RoundKey.__table__, Participation.__table__
_ROUNDS = select(
    _ROUND.c.id, _ROUND.c.community_id, _ROUND.c.opens_at, _ROUND.c.closes_at, _ROUND.c.closed, _ROUND.c.population
).where(_ROUND.c.id.in_(bindparam("rounds", expanding=True)))
_KEYS = select(_KEY.c.id, _KEY.c.round_id, _KEY.c.group_key, _KEY.c.private_sealed).where(
    _KEY.c.id.in_(bindparam("keys", expanding=True))
)
_MEMBERS = select(Membership.person_id, Membership.community_id, Membership.team_id).where(
    Membership.person_id.in_(bindparam("people", expanding=True)),
    Membership.community_id.in_(bindparam("communities", expanding=True)),
    Membership.status == "active",
)
_NOTED = (
    select(_LEDGER.c.round_id, _LEDGER.c.person_id, _LEDGER.c.token_request, _LEDGER.c.reissued, _LEDGER.c.second_request)
    .where(_LEDGER.c.round_id.in_(bindparam("rounds", expanding=True)), _LEDGER.c.person_id.in_(bindparam("people", expanding=True)))
    .order_by(_LEDGER.c.round_id, _LEDGER.c.person_id)  # one lock order for every writer
    .with_for_update()
)
# Any device: the first token is in another browser; this is the member's one more.
_SECOND_TOKEN = (
    update(_LEDGER)
    .where(
        _LEDGER.c.round_id == bindparam("r"),
        _LEDGER.c.person_id == bindparam("p"),
        _LEDGER.c.token_request.is_not(None),
        _LEDGER.c.reissued.is_(False),
    )
    .values(reissued=True, second_request=bindparam("s"))
)


def note_tokens(db: Session, batch: list[tuple[Issuance, bytes]]) -> list[Exception | None]:
    """Note a batch of signed issuances (each with the SHA-256 of its blinded message) in the
    ledger, in the session's transaction; the caller commits. For each, None (its signature may
    go out) or AlreadyAnswered / TokensUsedUp; nothing is written for a refused one.

    Each is judged as if alone and in the batch's order: a row's first request is its token; the
    same request again gets the same signature; another request while the row is in state
    "token" is the second token; a member who answered with the form, or holds both tokens,
    gets none.
    """
    conn = db.connection()
    first: dict[tuple[uuid.UUID, uuid.UUID], bytes] = {}
    for issuance, request in batch:
        first.setdefault((issuance.round_id, issuance.person_id), request)
    # The first write (SQLite takes its write lock here), rows in person order so that two
    # PostgreSQL writers cannot deadlock. A member already in the ledger gets no row back.
    ordered = sorted(first.items(), key=lambda item: (str(item[0][0]), str(item[0][1])))
    inserted = conn.execute(
        upsert.insert_ignoring(conn.dialect.name, _LEDGER, ["round_id", "person_id"]).returning(_LEDGER.c.round_id, _LEDGER.c.person_id),
        [{"round_id": r, "person_id": p, "token_request": request} for (r, p), request in ordered],
    )
    rows = {pair: _Row(first[pair], False, None) for pair in inserted.tuples()}
    there = [pair for pair in first if pair not in rows]
    if there:
        found = conn.execute(_NOTED, {"rounds": padded(r for r, _p in there), "people": padded(p for _r, p in there)})
        rows |= {(r, p): _Row(*state) for r, p, *state in found if (r, p) in first and (r, p) not in rows}
    outcomes: list[Exception | None] = []
    second = []
    for issuance, request in batch:
        row = rows[issuance.round_id, issuance.person_id]
        if request in (row.token_request, row.second_request):
            # Its own new row, or the same blinded message again (the answer never reached the
            # browser): the same signature, so still the same token.
            outcomes.append(None)
        elif ledger_state(row) == TOKEN_TAKEN:
            # Any device: one more, counted at close and shown beside the results, so a member is
            # never locked out of a round they did not answer.
            row.reissued, row.second_request = True, request
            second.append({"r": issuance.round_id, "p": issuance.person_id, "s": request})
            outcomes.append(None)
        else:
            outcomes.append(AlreadyAnswered() if ledger_state(row) == ANSWERED else TokensUsedUp())
    if second:
        conn.execute(_SECOND_TOKEN, second)  # rows locked above (SQLite: the write lock)
    return outcomes


class IssuanceQueue:
    """Answer-token issuances from every request of this process, checked and noted in batches."""

    def __init__(self, sessionmaker: async_sessionmaker[AsyncSession], keyring: Keyring, reads: Reads) -> None:
        self.sessionmaker = sessionmaker
        self.keyring = keyring
        self.reads = reads
        self.checks: Batcher[Issuance, _SigningKey] = Batcher(self._check, MAX_BATCH)
        self.signatures = [Batcher(self._sign, SIGN_BATCH) for _ in range(2)]  # taken in turn
        self._turns = itertools.cycle(self.signatures)
        self.ledger: Batcher[tuple[Issuance, bytes], None] = Batcher(self._note, MAX_BATCH)

    async def start(self) -> None:
        """Start the signing process with the app, so the first issuance does not wait for it."""
        signing.signer()

    async def issue(self, issuance: Issuance) -> bytes:
        """The blind signature once the ledger holds it. LookupError (not an active member, or no
        such round in the community), RoundNotOpen, WrongKey, token_keys.TokenRefused (the blinded
        message), AlreadyAnswered, TokensUsedUp."""
        key = await self.checks.submit(issuance)
        blinded_msg = token_keys.from_b64url(issuance.blinded_msg, "blinded token")
        try:
            signature = await next(self._turns).submit((key.id, key.private_sealed, blinded_msg))
        except signing.Refused as exc:
            raise TokenRefused(_("The blinded token was refused: %(reason)s.", reason=exc.reason)) from None
        await self.ledger.submit((issuance, hashlib.sha256(blinded_msg).digest()))
        return signature

    async def _check(self, batch: list[Issuance]) -> list[_SigningKey | Exception]:
        # Off the loop: with a burst's 64 ids in their lists, these reads held it for milliseconds.
        rounds = {row.id: row for row in await self.reads.rows(_ROUNDS, {"rounds": padded(i.round_id for i in batch)}, inline=False)}
        keys = {row.id: row for row in await self.reads.rows(_KEYS, {"keys": padded(i.key_id for i in batch)}, inline=False)}
        people = {"people": padded(i.person_id for i in batch), "communities": padded(i.community_id for i in batch)}
        members = {(person, community): team for person, community, team in await self.reads.rows(_MEMBERS, people, inline=False)}
        moment, outcomes = clock.now(), []
        for issuance in batch:
            round_ = rounds.get(issuance.round_id)
            team_id = members.get((issuance.person_id, issuance.community_id), False)
            key = keys.get(issuance.key_id)
            if team_id is False or round_ is None or round_.community_id != issuance.community_id:
                outcomes.append(LookupError("no such round in this community, or not an active member of it"))
            elif round_.closed or not round_.opens_at <= moment < round_.closes_at:
                outcomes.append(RoundNotOpen())
            elif key is None or key.round_id != round_.id or key.group_key != group_of(round_.population, team_id):
                outcomes.append(WrongKey())
            else:
                outcomes.append(_SigningKey(key.id, key.private_sealed))
        return outcomes

    async def _sign(self, batch: list[signing.Job]) -> list[bytes | Exception]:
        return await signing.sign_all(self.keyring, "round_key", batch)

    async def _note(self, batch: list[tuple[Issuance, bytes]]) -> list[Exception | None]:
        async with self.sessionmaker() as db, write_turn(db):
            outcomes = await db.run_sync(note_tokens, batch)
            await db.commit()
        return outcomes
