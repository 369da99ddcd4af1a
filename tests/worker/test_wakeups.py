"""An idle worker hears of a job queued by another process at once, and takes a retry as soon as its
wait is over, not at its next poll."""

from __future__ import annotations

import asyncio
import json

from db import FakeClock, JobState, NewJob, SqliteStore
from db.retries import RetryBackoff
from tests.db.processes import start_python
from tests.worker.engine_fixtures import tiny_params
from tests.worker.queue import CHANNEL, GUILD, USER, enqueue, worker_for

NEVER = 3600.0  # a poll interval the test never reaches: only a wake-up can start the job
ENQUEUER = """
import asyncio, json, sys
from db import NewJob, open_store
from tests.worker.queue import CHANNEL, GUILD, USER

async def main(path, params):
    async with await open_store(path) as store:
        params = json.loads(params)
        job = await store.enqueue(NewJob(GUILD, CHANNEL, USER, "a red apple", params, seed=params["seed"]))
        print(job.id)

asyncio.run(main(sys.argv[1], sys.argv[2]))
"""


async def test_a_job_queued_by_another_process_starts_without_waiting_for_a_poll(store, tiny_engine, tiny_models,
                                                                               tmp_path):
    done = asyncio.Event()

    async def changed() -> None:
        if any(job.state is JobState.SUCCEEDED for job in await store.history(USER)):
            done.set()
            worker.stop()

    worker = worker_for(store, tiny_engine, tmp_path, on_change=changed, poll_interval_s=NEVER)
    running = asyncio.create_task(worker.run_forever())
    await asyncio.wait_for(store.parked.wait(), 60)  # the idle worker waits on the store (a hang guard)
    assert worker.idle_waits == 1
    child = await start_python(ENQUEUER, str(store.path), json.dumps(tiny_params(tiny_models)))
    out, err = await child.communicate()
    assert child.returncode == 0, err.decode()
    await asyncio.wait_for(running, 120)  # a hang guard, not a timing: the poll would take an hour
    assert done.is_set()
    (job,) = await store.history(USER)
    assert job.id == int(out) and job.state is JobState.SUCCEEDED
    assert store.wakeups.polled >= 1  # the other process's commit woke the worker
    assert store.wakeups.timed_out == 0  # no wait ran to its end
    assert worker.idle_waits == 1  # it did not go round the loop while idle


async def test_an_idle_worker_takes_a_retry_when_its_wait_is_over_not_at_its_next_poll(clock: FakeClock, tiny_engine,
                                                                                       tiny_models, tmp_path):
    """Nothing changes in the store when a retry's wait ends, so nothing wakes a worker then: its idle
    wait ends when the store says the retry is due (``Store.next_due_in``), not at the poll an hour away."""
    backoff = RetryBackoff(base_s=0.002, cap_s=0.002, jitter=lambda: 0.0)  # retries wait 1 ms of the store's clock
    async with await SqliteStore.open(tmp_path / "retries.sqlite3", clock=clock, retry_backoff=backoff) as store:
        job = await enqueue(store, tiny_models)
        (claim,) = await store.claim("gpu-0", lease_seconds=30)
        assert await store.fail(job.id, claim.token, error="CUDA error: out of memory", gpu_seconds=1, retry=True)
        done = asyncio.Event()

        async def changed() -> None:
            if (await store.get(job.id)).state is JobState.SUCCEEDED:
                done.set()
                worker.stop()

        worker = worker_for(store, tiny_engine, tmp_path, on_change=changed, poll_interval_s=NEVER)
        running = asyncio.create_task(worker.run_forever())
        await asyncio.wait_for(store.parked.wait(), 60)  # idle: by the store's clock the wait isn't over (a hang guard)
        assert worker.idle_waits >= 1 and (await store.get(job.id)).state is JobState.QUEUED
        clock.advance(1)  # now it is, and the store doesn't change
        await asyncio.wait_for(running, 120)  # a hang guard, not a timing: the poll would take an hour
        assert done.is_set()
        finished = await store.get(job.id)
        assert finished.state is JobState.SUCCEEDED and finished.attempts == 2
        assert store.wakeups.timed_out >= 1  # idle waits ended at the retry's time, not by a change


async def test_a_retry_joins_a_running_batch_of_its_key_when_its_wait_is_over(clock: FakeClock, tiny_engine,
                                                                             tiny_models, tmp_path):
    """A running batch tops itself up with queued jobs of its key; a retry whose wait ends meanwhile
    joins it (the batch's own progress reports change the store and wake its top-up), not at the poll
    an hour away nor after the batch."""
    backoff = RetryBackoff(base_s=0.002, cap_s=0.002, jitter=lambda: 0.0)
    async with await SqliteStore.open(tmp_path / "retries.sqlite3", clock=clock, retry_backoff=backoff) as store:
        retry = await enqueue(store, tiny_models)
        (claim,) = await store.claim("gpu-0", lease_seconds=30)
        assert await store.fail(retry.id, claim.token, error="CUDA error: out of memory", gpu_seconds=1, retry=True)
        params = tiny_params(tiny_models, "a green pear", steps=5000)  # the most a job has: it runs until the test stops it
        (long,) = await store.enqueue_many([NewJob(GUILD, CHANNEL, USER, "a green pear", params, seed=7)],
                                           enforce_limits=False)  # beyond a server's step limit: no one can ask
        seen: dict[str, JobState] = {}

        async def changed() -> None:
            if (await store.get(retry.id)).state is JobState.SUCCEEDED and not seen:
                seen["long"] = (await store.get(long.id)).state
                worker.stop()

        worker = worker_for(store, tiny_engine, tmp_path, on_change=changed, poll_interval_s=NEVER)
        running = asyncio.create_task(worker.run_forever())
        await asyncio.wait_for(store.parked.wait(), 60)  # the batch's top-up waits on the store (a hang guard)
        assert (await store.get(long.id)).state is JobState.RUNNING
        assert (await store.get(retry.id)).state is JobState.QUEUED
        clock.advance(1)  # the retry's wait is over; nothing in the store changes
        await asyncio.wait_for(running, 120)  # a hang guard, not a timing: the poll would take an hour
        finished = await store.get(retry.id)
        assert finished.state is JobState.SUCCEEDED and finished.attempts == 2
        assert seen["long"] is JobState.RUNNING  # it joined the running batch
