"""A served app takes its start-up heap out of the cyclic collector's view (bench/tokens.py: full
collections walking it held every request up for 50-70 ms under load); apps built by tests don't."""

from __future__ import annotations

import gc

from sqlalchemy.ext.asyncio import AsyncSession

from safespace.app import create_app
from safespace.settings import Settings
from tests.conftest import running


async def test_a_served_app_freezes_its_start_up_heap(settings: Settings, db: AsyncSession) -> None:
    gc.unfreeze()
    try:
        async with running(create_app(settings)):
            assert gc.get_freeze_count() == 0
        async with running(create_app(settings, freeze_heap=True)):
            # The modules, routes and templates alone are hundreds of thousands of objects.
            assert gc.get_freeze_count() > 100_000
    finally:
        gc.unfreeze()  # the test process goes on collecting as before (tests/conftest.py: frozen at start)
        gc.collect()
        gc.freeze()
