"""Attempts counted per key and window in the database, so that limits hold across replicas
(sign-in requests, invitations, receipt and story-token checks)."""

from __future__ import annotations

import hashlib
import hmac
from datetime import datetime, timedelta

from sqlalchemy import Integer, LargeBinary, and_, delete, or_, select
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Mapped, mapped_column

from safespace import clock
from safespace.db.base import Base, UTCDateTime

RATE_WINDOW = timedelta(minutes=15)


class RateCounter(Base):
    """Attempts per key and window, counted in the database so limits hold across replicas.

    The key is an HMAC of the address or client, so the table holds no email or IP address.
    """

    __tablename__ = "rate_counter"

    key: Mapped[bytes] = mapped_column(LargeBinary(32), primary_key=True)
    window_start: Mapped[datetime] = mapped_column(UTCDateTime, primary_key=True)
    count: Mapped[int] = mapped_column(Integer, default=0)


def rate_key(secret: bytes, kind: str, value: str) -> bytes:
    return hmac.new(secret, f"{kind}:{value}".encode(), hashlib.sha256).digest()


def _window_start(moment: datetime, window: timedelta) -> datetime:
    return datetime.fromtimestamp(
        moment.timestamp() // window.total_seconds() * window.total_seconds(), tz=moment.tzinfo
    )


async def attempts(db: AsyncSession, key: bytes, window: timedelta = RATE_WINDOW) -> int:
    """Attempts counted for key in the current window, without counting one more."""
    count = await db.scalar(
        select(RateCounter.count).where(RateCounter.key == key, RateCounter.window_start == _window_start(clock.now(), window))
    )
    return count or 0


LONGEST_WINDOW = timedelta(days=9)  # no counter is kept longer (story tokens' checks: 8 days)


async def over_limit(db: AsyncSession, key: bytes, limit: int, window: timedelta = RATE_WINDOW, amount: int = 1) -> bool:
    """Count `amount` attempts for key in the current window; True once more than limit were made."""
    assert window <= LONGEST_WINDOW
    moment = clock.now()
    window_start = _window_start(moment, window)
    insert = pg_insert if db.bind.dialect.name == "postgresql" else sqlite_insert
    statement = (
        insert(RateCounter)
        .values(key=key, window_start=window_start, count=amount)
        .on_conflict_do_update(
            index_elements=[RateCounter.key, RateCounter.window_start],
            set_={"count": RateCounter.count + amount},
        )
        .returning(RateCounter.count)
    )
    count = (await db.execute(statement)).scalar_one()
    # Old windows are of no further use: this key's earlier ones, and anyone's past the longest.
    await db.execute(
        delete(RateCounter).where(
            or_(
                and_(RateCounter.key == key, RateCounter.window_start < window_start),
                RateCounter.window_start < moment - LONGEST_WINDOW,
            )
        )
    )
    return count > limit
