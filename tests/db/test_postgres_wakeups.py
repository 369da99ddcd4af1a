"""PostgreSQL: waiting workers wake on LISTEN/NOTIFY, and poll when the listening connection is gone."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

import psycopg

from db.postgres import PostgresStore
from db.postgres.connection import CHANNEL
from tests.db.factories import OPEN_LIMITS, new_job
from tests.db.postgres_checks import open_transaction, rows

NEVER = 3600.0  # a poll interval or retry delay the tests never reach


async def parked(store: PostgresStore) -> None:
    await asyncio.wait_for(store.parked.wait(), 60)


async def test_the_postgres_store_can_be_waited_on(pg_url: str) -> None:
    async with await PostgresStore.open(pg_url) as store:
        assert await store.wait_for_change(await store.version(), timeout=0) == await store.version()


async def test_a_notification_wakes_a_waiting_worker(pg_url: str) -> None:
    async with (
        await PostgresStore.open(pg_url, poll_interval_s=NEVER) as worker,
        await PostgresStore.open(pg_url, defaults=OPEN_LIMITS) as bot,
    ):
        since = await worker.version()
        waiting = asyncio.create_task(worker.wait_for_change(since, timeout=60))
        await parked(worker)
        job = await bot.enqueue(new_job())
        assert await waiting == job.version
        assert (worker.wakeups.notified, worker.wakeups.polled) == (1, 0)
        # Progress reported by another worker wakes the bot the same way.
        (claim,) = await worker.claim("gpu-0", lease_seconds=60)
        waiting = asyncio.create_task(bot.wait_for_change(claim.job.version, timeout=60))
        await parked(bot)
        await worker.report_progress(job.id, claim.token, step=5)
        assert await waiting == (await bot.get(job.id)).version  # type: ignore[union-attr]
        assert bot.wakeups.notified == 1


async def test_a_dropped_listening_connection_falls_back_to_polling(pg_url: str) -> None:
    async with (
        await PostgresStore.open(pg_url, poll_interval_s=0.05, listen_retry_s=NEVER) as worker,
        await PostgresStore.open(pg_url, defaults=OPEN_LIMITS) as bot,
    ):
        await worker.listen()
        rows(pg_url, "SELECT pg_terminate_backend(%s)", (worker.listener.backend_pid,))
        await asyncio.wait_for(worker.listener.dropped.wait(), 60)
        since = await worker.version()
        waiting = asyncio.create_task(worker.wait_for_change(since, timeout=60))
        await parked(worker)
        job = await bot.enqueue(new_job())
        assert await waiting == job.version
        assert worker.wakeups.notified == 0 and worker.wakeups.polled >= 1
        assert not worker.listener.connected.is_set()


async def test_the_listener_reconnects_and_notifications_work_again(pg_url: str) -> None:
    async with (
        await PostgresStore.open(pg_url, poll_interval_s=NEVER, listen_retry_s=0.05) as worker,
        await PostgresStore.open(pg_url, defaults=OPEN_LIMITS) as bot,
    ):
        await worker.listen()
        first = worker.listener.backend_pid
        rows(pg_url, "SELECT pg_terminate_backend(%s)", (first,))
        await asyncio.wait_for(worker.listener.dropped.wait(), 60)
        await worker.listen()
        assert worker.listener.backend_pid != first and worker.listener.drops == 1
        waiting = asyncio.create_task(worker.wait_for_change(await worker.version(), timeout=60))
        await parked(worker)
        job = await bot.enqueue(new_job())
        assert await waiting == job.version
        assert (worker.wakeups.notified, worker.wakeups.polled) == (1, 0)


async def test_a_change_notified_behind_an_open_transaction_wakes_the_waiter_once_it_shows(pg_url: str) -> None:
    async with (
        await PostgresStore.open(pg_url, poll_interval_s=NEVER) as worker,
        await PostgresStore.open(pg_url, defaults=OPEN_LIMITS) as bot,
    ):
        since = await worker.version()
        waiting = asyncio.create_task(worker.wait_for_change(since, timeout=NEVER))
        await parked(worker)
        async with open_transaction(pg_url) as older:  # an older transaction id, still open: the horizon
            await older.one("SELECT pg_current_xact_id()")
            notified = worker.listener.next_wake()
            job = await bot.enqueue(new_job())
            await asyncio.wait_for(notified.event.wait(), 60)
            worker.parked.clear()
            await parked(worker)  # woken by the NOTIFY, it read the feed: the change is not readable yet
            assert not waiting.done() and worker.wakeups.notified == 1
        # The older transaction ends without notifying anyone; the waiter finds the change by itself.
        assert await asyncio.wait_for(waiting, 60) == job.version


async def notifications(url: str, actions: list[Callable[[], Awaitable[None]]]) -> list[str]:
    """The payloads notified while ``actions`` (coroutine functions) run one after the other."""
    async with await psycopg.AsyncConnection.connect(url, autocommit=True) as listener:
        await listener.execute(f"LISTEN {CHANNEL}")
        for action in actions:
            await action()
        await listener.execute(f"NOTIFY {CHANNEL}, 'end'")
        payloads = []
        async for note in listener.notifies():
            if note.payload == "end":
                return payloads
            payloads.append(note.payload)
    raise AssertionError("the listener stopped before the end marker")


async def test_each_change_notifies_once_and_nothing_else_does(pg_url: str) -> None:
    async with await PostgresStore.open(pg_url, defaults=OPEN_LIMITS) as store:
        claims = []

        async def enqueue_ten() -> None:
            await store.enqueue_many([new_job(seed=i) for i in range(10)])

        async def claim_three() -> None:
            claims.extend(await store.claim("gpu-0", lease_seconds=60, max_jobs=3))

        async def heartbeat() -> None:
            assert await store.heartbeat(claims[0].job.id, claims[0].token, lease_seconds=60)

        async def read() -> None:
            await store.changed_since(0)
            await store.stats()

        payloads = await notifications(pg_url, [enqueue_ten, claim_three, heartbeat, read])
        jobs = await store.changed_since(0)
    enqueued = {j.version for j in jobs if j.state == "queued"}
    claimed = {j.version for j in jobs if j.state == "running"}
    assert payloads == [str(v) for v in sorted(enqueued)] + [str(v) for v in sorted(claimed)]
    assert len(enqueued) == 1 and len(claimed) == 1


async def test_an_empty_claim_notifies_no_one(pg_url: str) -> None:
    async with await PostgresStore.open(pg_url) as store:

        async def claim() -> None:
            assert await store.claim("gpu-0", lease_seconds=60) == []

        assert await notifications(pg_url, [claim, claim]) == []
