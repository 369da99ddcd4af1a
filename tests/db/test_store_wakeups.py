"""Waiting for changes: a waiter wakes when the change feed moves, whoever moved it, on either backend.

No test here waits for a clock: each waits with a timeout it never reaches
(``NEVER``), so a wait that ends was ended by a change, and ``wakeups`` says
which kind of wake-up ended it.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

import pytest

from db import Store
from db.checked_store import CheckedStore
from tests.db.factories import new_job
from tests.db.processes import start_python

OpenStore = Callable[..., Awaitable[Store]]
POLL = 0.02  # how often a waiter looks for other connections' commits
NEVER = 3600.0  # a poll interval or timeout the tests never reach

ENQUEUER = """
import asyncio, sys
from db import open_store
from tests.db.factories import OPEN_LIMITS, new_job

async def main(spec):
    async with await open_store(spec, defaults=OPEN_LIMITS) as store:
        print((await store.enqueue(new_job(seed=5))).version)

asyncio.run(main(sys.argv[1]))
"""


def checked(store: Store) -> CheckedStore:
    assert isinstance(store, CheckedStore)
    return store


async def parked(store: CheckedStore) -> None:
    """Return once a wait_for_change of ``store`` sleeps (a hang guard, not a timing)."""
    await asyncio.wait_for(store.parked.wait(), 60)


async def test_a_store_can_be_waited_on(store: Store) -> None:
    now = await store.version()
    assert await store.wait_for_change(now, timeout=0) == now
    assert checked(store).wakeups.timed_out == 1


async def test_a_version_already_passed_returns_at_once(store: Store) -> None:
    job = await store.enqueue(new_job())
    assert await store.wait_for_change(0, timeout=NEVER) == job.version
    assert checked(store).wakeups.parked == 0


async def test_a_change_made_in_another_process_wakes_a_waiter(open_store: OpenStore, database_spec: str) -> None:
    waiter = checked(await open_store(poll_interval_s=POLL))
    waiting = asyncio.create_task(waiter.wait_for_change(await waiter.version(), timeout=NEVER))
    await parked(waiter)
    child = await start_python(ENQUEUER, database_spec)
    out, err = await child.communicate()
    assert child.returncode == 0, err.decode()
    assert await asyncio.wait_for(waiting, 60) == int(out)
    assert waiter.wakeups.timed_out == 0
    assert waiter.wakeups.notified + waiter.wakeups.polled >= 1


async def test_a_write_by_the_same_store_wakes_its_waiter_without_a_poll(open_store: OpenStore) -> None:
    store = checked(await open_store(poll_interval_s=NEVER))
    waiting = asyncio.create_task(store.wait_for_change(await store.version(), timeout=NEVER))
    await parked(store)
    job = await store.enqueue(new_job())
    assert await asyncio.wait_for(waiting, 60) == job.version
    assert (store.wakeups.notified, store.wakeups.polled, store.wakeups.timed_out) == (1, 0, 0)


async def test_a_change_outside_the_job_feed_does_not_end_the_wait(open_store: OpenStore) -> None:
    store = checked(await open_store(poll_interval_s=POLL))
    since = await store.version()
    waiting = asyncio.create_task(store.wait_for_change(since, timeout=NEVER))
    await parked(store)
    await store.set_setting(1, "max_steps", 100, by_user=7)
    store.parked.clear()
    await parked(store)  # it looked at the store again after the change, and went back to sleep
    assert not waiting.done()
    job = await store.enqueue(new_job())
    assert await asyncio.wait_for(waiting, 60) == job.version


@pytest.mark.sqlite_only(reason="only SQLite finds other connections' commits by polling")
async def test_another_store_on_the_same_file_wakes_a_waiter_at_its_next_poll(open_store: OpenStore) -> None:
    waiter = checked(await open_store(poll_interval_s=POLL))
    writer = await open_store()
    waiting = asyncio.create_task(waiter.wait_for_change(await waiter.version(), timeout=NEVER))
    await parked(waiter)
    job = await writer.enqueue(new_job())
    assert await asyncio.wait_for(waiting, 60) == job.version
    assert (waiter.wakeups.notified, waiter.wakeups.timed_out) == (0, 0) and waiter.wakeups.polled >= 1
