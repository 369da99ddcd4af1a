"""An idle worker hears of a job queued by another process at once, not at its next poll."""

from __future__ import annotations

import asyncio
import json

from db import JobState
from tests.db.processes import start_python
from tests.worker.engine_fixtures import tiny_params
from tests.worker.queue import USER, worker_for

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
