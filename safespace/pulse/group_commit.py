"""Group commit for answers: the submissions that arrive while one transaction runs share the next.

A submission is a handful of small statements; on its own it pays for every round trip, every
tally decode and encode, and (SQLite) the one-writer turn. Queued, a batch of them pays once:
one ledger INSERT, one tally read and one UPDATE per tally, one commit (services.fold_answers).
A member's request waits until the transaction that holds their answers has committed, so a
303 still means "counted", and nothing is acknowledged that a crash could lose. An answer that
is refused (already answered, round closed, bad input) does not stop the rest of its batch; a
batch whose transaction fails fails all its requests, and none of it is counted.
"""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from safespace.db.batch import Batcher
from safespace.db.engine import write_turn
from safespace.privacy.crypto import Keyring
from safespace.pulse.answering import Answer, fold_answers

# Enough to amortise the round trips; small enough that a transaction stays a few milliseconds
# and holds its locks briefly.
MAX_BATCH = 64


class AnswerQueue:
    """Answers from every request of this process, folded in batches, one transaction each."""

    def __init__(self, sessionmaker: async_sessionmaker[AsyncSession], keyring: Keyring) -> None:
        self.sessionmaker = sessionmaker
        self.keyring = keyring
        self.batcher: Batcher[Answer, None] = Batcher(self._fold, MAX_BATCH)

    async def submit(self, answer: Answer) -> None:
        """Returns once the answer is counted and committed; raises what services.submit raises."""
        await self.batcher.submit(answer)

    async def _fold(self, answers: list[Answer]) -> list[Exception | None]:
        async with self.sessionmaker() as db, write_turn(db):
            outcomes = await db.run_sync(fold_answers, self.keyring, answers)
            await db.commit()
        return outcomes
