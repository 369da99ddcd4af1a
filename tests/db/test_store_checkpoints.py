"""Checkpoints: a job's saved state, fenced by its lease, kept until the job ends, resumed at its step."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from db import FakeClock, InvalidInput, JobState, Store
from db.jobs import MAX_CHECKPOINT_BYTES
from tests.db.conftest import RawSql
from tests.db.factories import PNG, new_job

STATE = b"latent, Adam moments, step " * 1000


async def running(store: Store) -> tuple[int, str]:
    job = await store.enqueue(new_job(steps=500))
    (claim,) = await store.claim("gpu-0", lease_seconds=30)
    return job.id, claim.token


async def test_a_checkpoint_is_kept_replaced_and_read_back(store: Store) -> None:
    job_id, token = await running(store)
    assert await store.checkpoint(job_id) is None
    assert await store.save_checkpoint(job_id, token, step=100, data=b"first")
    assert await store.checkpoint(job_id) == (100, b"first")
    assert await store.save_checkpoint(job_id, token, step=320, data=STATE)
    assert await store.checkpoint(job_id) == (320, STATE)


async def test_a_job_taken_again_starts_at_its_checkpoint(store: Store, clock: FakeClock) -> None:
    job_id, token = await running(store)
    assert await store.save_checkpoint(job_id, token, step=320, data=STATE)
    clock.advance(31)  # the worker died
    (again,) = await store.claim("gpu-1", lease_seconds=30)
    assert again.job.id == job_id and again.job.step == 320 and again.job.resumed_from_step == 320
    assert again.job.attempts == 2
    shown = await store.get(job_id)
    assert shown is not None and shown.step == 320 and shown.resumed_from_step == 320


async def test_a_job_handed_back_keeps_its_checkpoint(store: Store) -> None:
    job_id, token = await running(store)
    assert await store.save_checkpoint(job_id, token, step=250, data=STATE)
    assert await store.release(job_id, token)
    (again,) = await store.claim("gpu-1", lease_seconds=30)
    assert (again.job.step, again.job.resumed_from_step, again.job.attempts) == (250, 250, 1)
    assert await store.checkpoint(job_id) == (250, STATE)


@pytest.mark.parametrize(("kept", "step"), [(250, 250), (None, 0)], ids=["with a checkpoint", "without one"])
async def test_a_job_handed_back_shows_the_step_its_next_attempt_starts_at(
    store: Store, kept: int | None, step: int
) -> None:
    job_id, token = await running(store)
    if kept is not None:
        assert await store.save_checkpoint(job_id, token, step=kept, data=STATE)
    assert await store.report_progress(job_id, token, step=300, steps_per_s=9.5)  # past its last checkpoint
    assert await store.release(job_id, token)
    queued = await store.get(job_id)
    assert queued is not None and queued.state is JobState.QUEUED
    assert (queued.step, queued.steps_per_s) == (step, None)
    (again,) = await store.claim("gpu-1", lease_seconds=30)
    assert (again.job.step, again.job.resumed_from_step) == (step, kept)
    shown = await store.get(job_id)
    assert shown is not None and (shown.step, shown.resumed_from_step) == (step, kept)


async def test_a_job_without_a_checkpoint_starts_at_step_zero(store: Store, clock: FakeClock) -> None:
    job_id, token = await running(store)
    assert await store.report_progress(job_id, token, step=40)
    clock.advance(31)
    (again,) = await store.claim("gpu-1", lease_seconds=30)
    assert again.job.step == 0 and again.job.resumed_from_step is None


async def test_a_stale_worker_changes_no_checkpoint(store: Store, clock: FakeClock) -> None:
    job_id, stale = await running(store)
    clock.advance(31)
    (again,) = await store.claim("gpu-1", lease_seconds=30)
    assert await store.save_checkpoint(job_id, again.token, step=10, data=b"new holder")
    assert not await store.save_checkpoint(job_id, stale, step=400, data=b"stale")
    assert not await store.save_checkpoint(job_id, "not a token", step=400, data=b"stale")
    assert not await store.save_checkpoint(987654, again.token, step=1, data=b"no such job")
    assert not await store.discard_checkpoint(job_id, stale)
    assert await store.checkpoint(job_id) == (10, b"new holder")


Ending = Callable[[Store, int, str], object]
ENDINGS: dict[str, Ending] = {
    "finish": lambda s, job, token: s.finish(job, token, result_png=PNG, gpu_seconds=1),
    "fail": lambda s, job, token: s.fail(job, token, error="The init image is not a picture.", gpu_seconds=1),
    "fail, retries used up": lambda s, job, token: s.fail(job, token, error="x", gpu_seconds=1, retry=True),
}


@pytest.mark.parametrize("ending", ENDINGS)
async def test_a_job_that_ends_loses_its_checkpoint(store: Store, ending: str) -> None:
    job = await store.enqueue(new_job(steps=500, max_attempts=1))
    (claim,) = await store.claim("gpu-0", lease_seconds=30)
    assert await store.save_checkpoint(job.id, claim.token, step=300, data=STATE)
    assert await ENDINGS[ending](store, job.id, claim.token)  # type: ignore[misc]
    ended = await store.get(job.id)
    assert ended is not None and ended.state in (JobState.SUCCEEDED, JobState.FAILED)
    assert await store.checkpoint(job.id) is None


async def test_a_cancelled_job_loses_its_checkpoint_running_or_queued(store: Store) -> None:
    first, token = await running(store)
    assert await store.save_checkpoint(first, token, step=300, data=STATE)
    await store.request_cancel(first, by_user=100, is_admin=False)
    assert await store.confirm_cancelled(first, token, gpu_seconds=1)
    assert await store.checkpoint(first) is None
    assert await store.claim("gpu-0", lease_seconds=30) == []
    job = await store.enqueue(new_job(steps=500))
    (claim,) = await store.claim("gpu-0", lease_seconds=30)
    assert await store.save_checkpoint(job.id, claim.token, step=20, data=STATE)
    assert await store.release(job.id, claim.token)
    cancelled = await store.request_cancel(job.id, by_user=100, is_admin=False)
    assert cancelled.state is JobState.CANCELLED and await store.checkpoint(job.id) is None


async def test_a_retried_job_keeps_its_checkpoint(store: Store, clock: FakeClock) -> None:
    job_id, token = await running(store)
    assert await store.save_checkpoint(job_id, token, step=300, data=STATE)
    assert await store.fail(job_id, token, error="CUDA error", gpu_seconds=1, retry=True)
    clock.advance(3600)
    (again,) = await store.claim("gpu-0", lease_seconds=30)
    assert again.job.resumed_from_step == 300 and await store.checkpoint(job_id) == (300, STATE)


async def test_an_unusable_checkpoint_is_discarded_and_the_job_starts_over(store: Store, clock: FakeClock) -> None:
    job_id, token = await running(store)
    assert await store.save_checkpoint(job_id, token, step=300, data=b"torn")
    clock.advance(31)
    (again,) = await store.claim("gpu-1", lease_seconds=30)
    assert again.job.resumed_from_step == 300
    assert await store.discard_checkpoint(job_id, again.token)
    job = await store.get(job_id)
    assert job is not None and job.step == 0 and job.resumed_from_step is None
    assert await store.checkpoint(job_id) is None


async def test_a_checkpoint_too_big_or_malformed_is_refused(store: Store) -> None:
    job_id, token = await running(store)
    for bad, field in (
        ({"data": b"x" * (MAX_CHECKPOINT_BYTES + 1)}, "data"),
        ({"data": "not bytes"}, "data"),
        ({"step": -1}, "step"),
        ({"step": 501}, "step"),  # past the job's 500 steps
        ({"step": True}, "step"),
    ):
        arguments: dict[str, object] = {"step": 10, "data": b"ok"} | bad
        with pytest.raises(InvalidInput) as refused:
            await store.save_checkpoint(job_id, token, **arguments)  # type: ignore[arg-type]
        assert refused.value.field == field
    assert await store.checkpoint(job_id) is None
    assert await store.save_checkpoint(job_id, token, step=500, data=b"x" * MAX_CHECKPOINT_BYTES)


async def test_prune_deletes_checkpoints_of_ended_jobs(store: Store, raw_sql: RawSql) -> None:
    job = await store.enqueue(new_job())
    (claim,) = await store.claim("gpu-0", lease_seconds=30)
    assert await store.finish(job.id, claim.token, result_png=PNG, gpu_seconds=1)
    live, token = await running(store)
    assert await store.save_checkpoint(live, token, step=5, data=b"live")
    # A checkpoint an older vqbot (or a crash between two statements) left behind.
    raw_sql("INSERT INTO checkpoints (job_id, step, data, saved_at) VALUES (?, 1, ?, 0)", (job.id, b"left"))
    pruned = await store.prune()
    assert pruned["checkpoints"] == 1
    assert await store.checkpoint(job.id) is None and await store.checkpoint(live) == (5, b"live")
    assert (await store.prune())["checkpoints"] == 0
