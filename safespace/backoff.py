"""How an outgoing delivery (a chat post, a webhook) is retried: the wait before its next try,
the most tries, and how long one being sent is kept from another pass of the schedule."""

from __future__ import annotations

from datetime import timedelta

FIRST_WAIT = timedelta(minutes=2)  # then 4, 8, ... minutes
LONGEST_WAIT = timedelta(hours=2)
MAX_ATTEMPTS = 8  # about six hours of trying
CLAIM = timedelta(minutes=5)  # a delivery being sent is not picked up by another pass meanwhile


def next_wait(attempts: int) -> timedelta:
    """The wait after the `attempts`-th failed try: 2, 4, 8 ... minutes, at most LONGEST_WAIT."""
    return min(FIRST_WAIT * 2 ** (attempts - 1), LONGEST_WAIT)
