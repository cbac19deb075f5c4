"""Group concurrent requests' database work: what arrives while one batch runs goes in the next.

A small statement costs its round trip, its trip through SQLAlchemy and (SQLite) a hand-off to
the driver's thread, whatever it carries; most of a short request's database time is that. A
Batcher runs one batch at a time per process and hands each caller its own result. At low
load every batch holds one item and nothing waits; under load a batch holds what queued up
meanwhile, so the cost per item falls as the load rises.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Awaitable, Callable, Iterable
from typing import Generic, TypeVar

Item = TypeVar("Item")
Result = TypeVar("Result")
HANDBACK = 8  # results handed back per turn of the event loop


class Batcher(Generic[Item, Result]):
    """`await submit(item)` returns the item's result from `run(batch)`, which answers a list of
    items with a list of results in the same order; an Exception in that list is raised to that
    item's caller alone. If `run` itself fails, every caller of its batch gets the error."""

    def __init__(self, run: Callable[[list[Item]], Awaitable[list[Result | Exception]]], max_batch: int = 64) -> None:
        self.run = run
        self.max_batch = max_batch
        self._waiting: deque[tuple[Item, asyncio.Future[Result]]] = deque()
        self._worker: asyncio.Task[None] | None = None
        self.batches = 0  # batches run, and items in them: how well the grouping works
        self.items = 0

    async def submit(self, item: Item) -> Result:
        future: asyncio.Future[Result] = asyncio.get_running_loop().create_future()
        self._waiting.append((item, future))
        if self._worker is None or self._worker.done():
            self._worker = asyncio.create_task(self._drain())
        # Shielded: a caller that goes away (a client hung up) does not cancel a batch that
        # holds other callers' items; its item is done or refused all the same.
        return await asyncio.shield(future)

    async def _drain(self) -> None:
        while self._waiting:
            batch = [self._waiting.popleft() for _ in range(min(self.max_batch, len(self._waiting)))]
            try:
                results = await self.run([item for item, _future in batch])
            except BaseException as exc:
                _fail(batch, exc)
                if not isinstance(exc, Exception):  # cancelled (shutdown): the rest cannot wait
                    _fail(self._waiting, exc)
                    self._waiting.clear()
                    raise
                continue
            self.batches += 1
            self.items += len(batch)
            try:
                if len(results) != len(batch):
                    raise RuntimeError(f"a batch of {len(batch)} items gave {len(results)} results")
                for handed, ((_item, future), result) in enumerate(zip(batch, results, strict=True)):
                    if handed and handed % HANDBACK == 0:
                        # Each caller wakes to finish its request (a response to write): a whole
                        # batch at once held every other request, /healthz too, for milliseconds.
                        # A turn of the loop between slices lets them in.
                        await asyncio.sleep(0)
                    if future.done():
                        continue
                    if isinstance(result, Exception):
                        future.set_exception(result)
                    else:
                        future.set_result(result)
            except BaseException as exc:  # whatever went wrong, no caller is left waiting
                _fail(batch, exc)
                if not isinstance(exc, Exception):  # cancelled between slices (shutdown)
                    _fail(self._waiting, exc)
                    self._waiting.clear()
                    raise


def _fail(waiting: Iterable[tuple[object, asyncio.Future]], exc: BaseException) -> None:
    for _item, future in waiting:
        if future.done():
            continue
        if isinstance(exc, asyncio.CancelledError):
            future.cancel()
        else:
            future.set_exception(exc)


def padded(values: Iterable) -> list:
    """Distinct values for an IN list, the last repeated up to a power of two: a few distinct
    statements for PostgreSQL's prepared-statement cache instead of one per batch size (IN
    ignores the repeats)."""
    listed = sorted(set(values), key=str)
    size = 1 << max(len(listed) - 1, 0).bit_length()
    return listed + listed[-1:] * (size - len(listed))
