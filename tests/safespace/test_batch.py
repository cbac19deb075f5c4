"""safespace.db.batch: what arrives while a batch runs goes in the next, each caller gets its own result."""

from __future__ import annotations

import asyncio

import pytest

from safespace.db.batch import HANDBACK, Batcher, padded


class Recorder:
    """A batch function that records its batches and can be held, to queue items behind it."""

    def __init__(self) -> None:
        self.batches: list[list[int]] = []
        self.release = asyncio.Event()
        self.release.set()

    async def run(self, items: list[int]) -> list[int | Exception]:
        self.batches.append(items)
        await self.release.wait()
        if -1 in items:
            raise RuntimeError("the database went away")
        return [ValueError(f"{item} is odd") if item % 2 else item * 10 for item in items]


async def _started(recorder: Recorder, count: int) -> None:
    while len(recorder.batches) < count:
        await asyncio.sleep(0)


async def test_items_that_arrive_while_a_batch_runs_go_together_in_the_next() -> None:
    recorder = Recorder()
    recorder.release.clear()
    batcher = Batcher(recorder.run, max_batch=3)
    first = asyncio.create_task(batcher.submit(0))
    await _started(recorder, 1)
    rest = [asyncio.create_task(batcher.submit(n)) for n in (2, 4, 6, 8)]
    await asyncio.sleep(0)
    recorder.release.set()
    assert await first == 0 and [await task for task in rest] == [20, 40, 60, 80]
    assert recorder.batches == [[0], [2, 4, 6], [8]]  # at most max_batch at a time, in order
    assert (batcher.batches, batcher.items) == (3, 5)


async def test_an_item_s_error_goes_to_its_caller_alone() -> None:
    batcher = Batcher(Recorder().run)
    results = await asyncio.gather(*(batcher.submit(n) for n in range(4)), return_exceptions=True)
    assert results[0] == 0 and results[2] == 20
    assert isinstance(results[1], ValueError) and str(results[1]) == "1 is odd"
    assert isinstance(results[3], ValueError) and str(results[3]) == "3 is odd"


async def test_a_failed_batch_fails_its_callers_and_the_next_batch_still_runs() -> None:
    recorder = Recorder()
    recorder.release.clear()
    batcher = Batcher(recorder.run, max_batch=2)
    doomed = [asyncio.create_task(batcher.submit(n)) for n in (-1, 2)]
    await _started(recorder, 1)
    later = asyncio.create_task(batcher.submit(4))
    recorder.release.set()
    for task in doomed:
        with pytest.raises(RuntimeError, match="went away"):
            await task
    assert await later == 40
    assert recorder.batches == [[-1, 2], [4]]


async def test_a_caller_that_goes_away_does_not_cancel_the_batch() -> None:
    recorder = Recorder()
    recorder.release.clear()
    batcher = Batcher(recorder.run)
    leaving, staying = asyncio.create_task(batcher.submit(2)), asyncio.create_task(batcher.submit(4))
    await _started(recorder, 1)
    leaving.cancel()  # a client hung up mid-request
    recorder.release.set()
    assert await staying == 40
    assert leaving.cancelled() and recorder.batches == [[2, 4]] and batcher.items == 2


async def test_a_batch_that_gives_one_result_short_fails_its_callers_instead_of_hanging_them() -> None:
    """The hand-back of results used to run outside the error handling: a result list one short
    killed the worker, and every caller of that batch (and of every later one) waited forever."""

    async def one_short(items: list[int]) -> list[int | Exception]:
        return [item * 10 for item in items][:-1]

    batcher = Batcher(one_short)
    callers = [asyncio.create_task(batcher.submit(n)) for n in (1, 2, 3)]
    for caller in callers:
        with pytest.raises(RuntimeError, match="3 items gave 2 results"):
            await asyncio.wait_for(caller, timeout=10)


async def test_a_result_that_cannot_be_handed_back_fails_its_callers_and_later_batches_still_run() -> None:
    """The batch's work is done (committed), then handing a result back raises: its callers get the
    error, and the next batch runs."""

    class Unlucky(list):
        def __iter__(self):
            raise RuntimeError("lost on the way back")

    calls: list[list[int]] = []

    async def committed_then_unlucky(items: list[int]) -> list[int | Exception]:
        calls.append(items)
        return Unlucky(item * 10 for item in items) if len(calls) == 1 else [item * 10 for item in items]

    batcher = Batcher(committed_then_unlucky)
    first = [asyncio.create_task(batcher.submit(n)) for n in (1, 2)]
    for caller in first:
        with pytest.raises(RuntimeError, match="lost on the way back"):
            await asyncio.wait_for(caller, timeout=10)
    assert await asyncio.wait_for(batcher.submit(5), timeout=10) == 50


async def test_a_large_batch_is_handed_back_a_slice_at_a_time_so_other_work_gets_turns() -> None:
    """A batch of 64 sessions read or tokens noted used to wake all its callers in one turn of the
    event loop, and a request arriving meanwhile (/healthz) waited for all of them. Another task
    now gets turns while the batch is handed back: it sees some callers answered, not all."""
    size = HANDBACK * 4
    batcher = Batcher(Recorder().run, max_batch=size)
    callers = [asyncio.create_task(batcher.submit(2 * n)) for n in range(size)]
    seen: list[int] = []

    async def bystander() -> None:
        while not all(caller.done() for caller in callers):
            seen.append(sum(caller.done() for caller in callers))
            await asyncio.sleep(0)

    await asyncio.gather(bystander(), *callers)
    assert [caller.result() for caller in callers] == [20 * n for n in range(size)]
    assert any(0 < done < size for done in seen), seen  # a turn while the batch was half handed back


async def test_a_batch_cancelled_while_it_is_handed_back_leaves_no_caller_waiting() -> None:
    """A shutdown cancels the batch's task between two slices: the callers not yet answered, and
    those queued for the next batch, are cancelled rather than left waiting forever."""
    release = asyncio.Event()

    async def run_then_shut_down(items: list[int]) -> list[int | Exception]:
        await release.wait()
        asyncio.get_running_loop().call_soon(batcher._worker.cancel)  # lands at the first slice's end
        return [item * 10 for item in items]

    batcher = Batcher(run_then_shut_down, max_batch=HANDBACK * 4)
    callers = [asyncio.create_task(batcher.submit(n)) for n in range(HANDBACK * 4)]
    await asyncio.sleep(0)
    queued = asyncio.create_task(batcher.submit(100))  # waits for the next batch
    await asyncio.sleep(0)
    release.set()
    _done, pending = await asyncio.wait([*callers, queued], timeout=10)
    assert not pending, f"{len(pending)} callers still waiting"
    assert [caller.result() for caller in callers[:HANDBACK]] == [n * 10 for n in range(HANDBACK)]
    assert all(caller.cancelled() for caller in callers[HANDBACK:]) and queued.cancelled()


def test_in_lists_are_distinct_and_padded_to_a_power_of_two() -> None:
    assert padded([3]) == [3]
    assert padded([2, 1, 2]) == [1, 2]
    assert padded([5, 4, 3]) == [3, 4, 5, 5]
    assert len(padded(range(33))) == 64 and set(padded(range(33))) == set(range(33))
