"""Jobs join a running batch between steps and leave it as they end, each with its own progress and result.

The real worker, the real SQLite store and the real engine with tiny models; jobs are queued while
the batch runs, from inside the worker's change callback (so at a known step, with no clock).
"""

from __future__ import annotations

import io
from collections import defaultdict
from collections.abc import Awaitable, Callable

from PIL import Image

from db import FakeClock, Job, JobState, NewJob, SqliteStore
from tests.worker.engine_fixtures import tiny_params
from tests.worker.queue import CHANNEL, GUILD, USER, enqueue, worker_for

Snapshot = dict[int, tuple[JobState, int]]


class Watcher:
    """The worker's change callback: snapshots of the watched jobs, and actions at a job's step."""

    def __init__(self, store) -> None:
        self.store = store
        self.jobs: list[int] = []
        self.snapshots: list[Snapshot] = []
        self.steps: dict[int, list[int]] = defaultdict(list)  # each job's progress as the store saw it
        self._when: list[tuple[Callable[[Snapshot], bool], Callable[[], Awaitable[object]]]] = []

    def watch(self, job: Job) -> Job:
        self.jobs.append(job.id)
        return job

    def when(self, condition: Callable[[Snapshot], bool], action: Callable[[], Awaitable[object]]) -> None:
        """Run ``action`` once, the first time a snapshot meets ``condition``."""
        self._when.append((condition, action))

    async def __call__(self) -> None:
        snapshot: Snapshot = {}
        for job_id in self.jobs:
            job = await self.store.get(job_id)
            snapshot[job_id] = (job.state, job.step)
            if job.state is JobState.RUNNING and job.step and (not self.steps[job_id] or
                                                                self.steps[job_id][-1] != job.step):
                self.steps[job_id].append(job.step)
        self.snapshots.append(snapshot)
        for entry in list(self._when):
            if entry[0](snapshot):
                self._when.remove(entry)
                await entry[1]()


def running_at(job: Job, step: int) -> Callable[[Snapshot], bool]:
    return lambda snap: snap.get(job.id, (None, 0))[0] is JobState.RUNNING and snap[job.id][1] >= step


def ran_together(watcher: Watcher, *jobs: Job) -> bool:
    return any(all(snap.get(j.id, (None, 0))[0] is JobState.RUNNING and snap[j.id][1] > 0 for j in jobs)
               for snap in watcher.snapshots)


def counting_finishes(store) -> dict[int, int]:
    """Count the store's finish calls per job (the real method still runs)."""
    counts: dict[int, int] = defaultdict(int)
    finish = store.finish

    async def counted(job_id, token, **kwargs):
        counts[job_id] += 1
        return await finish(job_id, token, **kwargs)

    store.finish = counted
    return counts


async def test_a_job_queued_while_a_batch_runs_joins_it_and_each_gets_its_own_picture(
        store, tiny_engine, tiny_models, tmp_path):
    watcher = Watcher(store)
    finishes = counting_finishes(store)
    first = watcher.watch(await enqueue(store, tiny_models, "a red apple", steps=40))
    late: list[Job] = []

    async def queue_late() -> None:
        late.append(watcher.watch(await enqueue(store, tiny_models, "a blue pear", user=USER + 1, steps=10)))

    held: list[tuple[int, ...]] = []

    async def note_held() -> None:  # the jobs the worker holds leases on, and so heartbeats
        held.append(worker.status().jobs)

    watcher.when(running_at(first, 5), queue_late)
    watcher.when(lambda snap: len(late) == 1 and running_at(late[0], 5)(snap), note_held)
    worker = worker_for(store, tiny_engine, tmp_path, on_change=watcher)
    assert await worker.run_once() == 2  # one run: the late job did not wait for a batch of its own
    (joiner,) = late
    assert ran_together(watcher, first, joiner)
    assert held == [(first.id, joiner.id)]
    for job, steps in ((first, 40), (joiner, 10)):
        done = await store.get(job.id)
        assert done.state is JobState.SUCCEEDED and done.step == steps and done.attempts == 1
        assert Image.open(io.BytesIO(await store.result(job.id))).size == (64, 64)
    assert dict(finishes) == {first.id: 1, joiner.id: 1}  # each result stored exactly once
    # each job's progress counts its own steps: the joiner started from 0 while the first was ahead
    assert watcher.steps[joiner.id][0] < watcher.steps[first.id][-1]
    assert watcher.steps[joiner.id] == sorted(watcher.steps[joiner.id])
    assert worker.status().jobs == ()  # every job has left the batch


async def test_a_finished_job_leaves_at_once_and_a_waiting_one_takes_its_place(store, tiny_engine, tiny_models,
                                                                              tmp_path):
    watcher = Watcher(store)
    short = watcher.watch(await enqueue(store, tiny_models, "a red apple", steps=5))
    long = watcher.watch(await enqueue(store, tiny_models, "a blue pear", user=USER + 1, steps=25))
    third = watcher.watch(await enqueue(store, tiny_models, "a green plum", user=USER + 2, steps=10))
    worker = worker_for(store, tiny_engine, tmp_path, on_change=watcher, max_batch=2)
    assert await worker.run_once() == 3
    assert all(sum(state is JobState.RUNNING for state, _ in snap.values()) <= 2 for snap in watcher.snapshots)
    assert ran_together(watcher, long, third)  # the third joined when the short one left, not after the long one
    for job in (short, long, third):
        assert (await store.get(job.id)).state is JobState.SUCCEEDED


async def test_a_job_of_another_batch_key_waits_for_the_batch_to_drain(store, tiny_engine, tiny_models, tmp_path):
    watcher = Watcher(store)
    first = watcher.watch(await enqueue(store, tiny_models, "a red apple"))
    other: list[Job] = []

    async def queue_other() -> None:
        other.append(watcher.watch(await enqueue(store, tiny_models, "a blue pear", user=USER + 1, cutn=4)))

    watcher.when(running_at(first, 5), queue_other)
    worker = worker_for(store, tiny_engine, tmp_path, on_change=watcher)
    assert await worker.run_once() == 1
    assert (await store.get(other[0].id)).state is JobState.QUEUED
    assert await worker.run_once() == 1
    assert (await store.get(other[0].id)).state is JobState.SUCCEEDED


async def test_a_late_joiner_can_be_cancelled_and_the_others_go_on(store, tiny_engine, tiny_models, tmp_path):
    watcher = Watcher(store)
    finishes = counting_finishes(store)
    first = watcher.watch(await enqueue(store, tiny_models, "a red apple"))
    late: list[Job] = []

    async def queue_late() -> None:
        late.append(watcher.watch(await enqueue(store, tiny_models, "a blue pear", user=USER + 1)))
        watcher.when(running_at(late[0], 5), lambda: store.request_cancel(late[0].id, by_user=USER + 1,
                                                                           is_admin=False))

    watcher.when(running_at(first, 5), queue_late)
    worker = worker_for(store, tiny_engine, tmp_path, on_change=watcher)
    assert await worker.run_once() == 2
    cancelled = await store.get(late[0].id)
    assert cancelled.state is JobState.CANCELLED and 5 <= cancelled.step < 20
    assert await store.result(late[0].id) is None
    assert (await store.get(first.id)).state is JobState.SUCCEEDED
    assert dict(finishes) == {first.id: 1}


async def test_a_late_joiner_whose_lease_is_lost_is_dropped_without_a_result(tiny_engine, tiny_models, tmp_path):
    """The worker stalls past its leases (a clock jump): another worker reclaims the late joiner,
    and this worker claims the first job again while the lost attempt of it is still in its batch."""
    clock = FakeClock()
    async with await SqliteStore.open(tmp_path / "clocked.sqlite3", clock=clock) as store:
        watcher = Watcher(store)
        finishes = counting_finishes(store)
        first = watcher.watch(await enqueue(store, tiny_models, "a red apple", steps=40))
        late: list[Job] = []
        stolen: list[int] = []

        async def steal() -> None:
            clock.advance(worker.config.lease_s + 1)
            (claim,) = await store.claim("other-worker", lease_seconds=600, batch_key=late[0].batch_key)
            stolen.append(claim.job.id)

        async def queue_late() -> None:
            late.append(watcher.watch(await store.enqueue(NewJob(
                GUILD + 1, CHANNEL, USER + 1, "a blue pear", tiny_params(tiny_models, "a blue pear"), seed=7))))
            watcher.when(running_at(late[0], 5), steal)

        watcher.when(running_at(first, 5), queue_late)
        worker = worker_for(store, tiny_engine, tmp_path, on_change=watcher)
        assert await worker.run_once() == 3  # the first job, the joiner, and the first job's new attempt
        assert stolen == [late[0].id]  # its guild had been served least
        lost = await store.get(late[0].id)
        assert lost.state is JobState.RUNNING and lost.worker == "other-worker"  # untouched by this worker
        again = await store.get(first.id)
        assert again.state is JobState.SUCCEEDED and again.attempts == 2 and again.step == 40
        assert dict(finishes) == {first.id: 1}  # one result, from the attempt that held the lease


async def test_stopping_hands_back_every_job_of_a_topped_up_batch(store, tiny_engine, tiny_models, tmp_path):
    watcher = Watcher(store)
    first = watcher.watch(await enqueue(store, tiny_models, "a red apple"))
    late: list[Job] = []
    worker = worker_for(store, tiny_engine, tmp_path, on_change=watcher)

    async def queue_late() -> None:
        late.append(watcher.watch(await enqueue(store, tiny_models, "a blue pear", user=USER + 1)))

        async def stop() -> None:
            worker.stop()
            # queued while the worker stops: never claimed by it
            late.append(watcher.watch(await enqueue(store, tiny_models, "a green plum", user=USER + 2)))

        watcher.when(running_at(late[0], 5), stop)

    watcher.when(running_at(first, 5), queue_late)
    assert await worker.run_once() == 2
    for job in (first, *late):
        back = await store.get(job.id)
        assert back.state is JobState.QUEUED and back.attempts == 0 and back.worker is None
    assert worker.status().jobs == ()
