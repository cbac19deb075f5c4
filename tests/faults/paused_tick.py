"""`safespace tick` that stops at a chosen point of its transaction and waits to be killed (tests only).

    python -m tests.faults.paused_tick close|stories

`close`: after close_round has done all its writes for the first due round (ledger re-inserted,
tallies cut, comments released), flushed but not committed. `stories`: after a story batch has
been deleted and re-inserted, flushed but not committed. It prints PAUSED and blocks; the test
sends SIGKILL. A hook in a wrapper script, so the product carries no test switch; the process
is the real command otherwise (same lease, same transaction, same engine).
"""

from __future__ import annotations

import sys
import time
from collections.abc import Awaitable, Callable
from typing import Any


def pause_after(module: Any, name: str) -> None:
    original: Callable[..., Awaitable[Any]] = getattr(module, name)

    async def paused(db: Any, *args: Any, **kwargs: Any) -> Any:
        await original(db, *args, **kwargs)
        await db.flush()  # every write of the step reaches the database, uncommitted
        print("PAUSED", flush=True)
        time.sleep(300)  # blocks the event loop: the transaction stays open until the kill
        sys.exit("paused_tick: nobody killed me")

    setattr(module, name, paused)


def main() -> None:
    from safespace import cli, schedule
    from safespace.stories import services as stories

    point = sys.argv[1]
    if point == "close":
        pause_after(schedule, "close_round")
    elif point == "stories":
        pause_after(stories, "_release")
    else:
        sys.exit(f"unknown pause point {point!r}")
    cli.main(["tick"])


if __name__ == "__main__":
    main()
