"""A job's life through the store, as the bot and a worker see it."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import timedelta

import pytest

from db import FakeClock, JobState, NotAllowed, NotFound, Relation, SqliteStore, Store
from tests.db.factories import PNG, new_job


async def test_enqueued_job_reads_back_with_cost_and_utc_times(
    store: SqliteStore, clock: FakeClock
) -> None:
    job = await store.enqueue(new_job(steps=50, width=128, height=64, cutn=8))
    assert job.state is JobState.QUEUED
    assert job.cost == 50 * 128 * 64 * 8
    assert job.total_steps == 50 and job.step == 0 and job.attempts == 0
    assert job.created_at == clock.now() and job.created_at.tzinfo is not None
    assert (job.model, job.width, job.height, job.cutn) == ("vqgan_imagenet_f16_16384", 128, 64, 8)
    assert await store.get(job.id) == job


async def test_claimed_job_runs_reports_progress_and_succeeds(
    store: SqliteStore, clock: FakeClock
) -> None:
    job = await store.enqueue(new_job())
    (claim,) = await store.claim("gpu-0", lease_seconds=30)
    assert claim.job.id == job.id and claim.job.state is JobState.RUNNING
    assert claim.job.attempts == 1 and claim.job.worker == "gpu-0"
    assert claim.job.lease_expires_at == clock.now() + timedelta(seconds=30)

    ack = await store.report_progress(
        job.id, claim.token, step=40, preview=b"jpeg-1", steps_per_s=12.5
    )
    assert ack.ok and not ack.cancel and ack
    await store.report_progress(job.id, claim.token, step=60, preview=b"jpeg-2")
    assert await store.preview(job.id) == (60, b"jpeg-2")
    running = await store.get(job.id)
    assert running is not None and running.step == 60 and running.steps_per_s == 12.5

    clock.advance(8)
    assert await store.finish(job.id, claim.token, result_png=PNG, gpu_seconds=8.0)
    done = await store.get(job.id)
    assert done is not None and done.state is JobState.SUCCEEDED
    assert done.step == done.total_steps and done.gpu_seconds == 8.0
    assert done.finished_at == clock.now() and done.worker is None
    assert await store.result(job.id) == PNG


async def test_claim_on_an_empty_queue_returns_nothing(store: SqliteStore) -> None:
    assert await store.claim("gpu-0", lease_seconds=30) == []


async def test_cancelling_a_queued_job_cancels_it_at_once(store: SqliteStore) -> None:
    job = await store.enqueue(new_job())
    cancelled = await store.request_cancel(job.id, by_user=job.user_id, is_admin=False)
    assert cancelled.state is JobState.CANCELLED and cancelled.finished_at is not None
    assert await store.claim("gpu-0", lease_seconds=30) == []


async def test_cancelling_a_running_job_asks_the_worker_to_stop(store: SqliteStore) -> None:
    job = await store.enqueue(new_job())
    (claim,) = await store.claim("gpu-0", lease_seconds=30)
    cancelling = await store.request_cancel(job.id, by_user=999, is_admin=True)
    assert cancelling.state is JobState.CANCELLING and await store.cancel_requested(job.id)
    ack = await store.report_progress(job.id, claim.token, step=5)
    assert ack.ok and ack.cancel
    assert await store.confirm_cancelled(job.id, claim.token, gpu_seconds=1.5)
    done = await store.get(job.id)
    assert done is not None and done.state is JobState.CANCELLED and done.gpu_seconds == 1.5


async def test_only_the_owner_or_an_admin_may_cancel(store: SqliteStore) -> None:
    job = await store.enqueue(new_job(user=100))
    with pytest.raises(NotAllowed):
        await store.request_cancel(job.id, by_user=200, is_admin=False)
    with pytest.raises(NotFound):
        await store.request_cancel(12345, by_user=100, is_admin=False)
    assert (await store.get(job.id)).state is JobState.QUEUED  # type: ignore[union-attr]


async def test_cancel_of_a_finished_job_changes_nothing(store: SqliteStore) -> None:
    job = await store.enqueue(new_job())
    (claim,) = await store.claim("gpu-0", lease_seconds=30)
    await store.finish(job.id, claim.token, result_png=PNG, gpu_seconds=1)
    assert (
        await store.request_cancel(job.id, by_user=100, is_admin=False)
    ).state is JobState.SUCCEEDED


async def test_a_finish_after_a_cancel_request_still_succeeds(store: SqliteStore) -> None:
    job = await store.enqueue(new_job())
    (claim,) = await store.claim("gpu-0", lease_seconds=30)
    await store.request_cancel(job.id, by_user=100, is_admin=False)
    assert await store.finish(job.id, claim.token, result_png=PNG, gpu_seconds=1)
    assert (await store.get(job.id)).state is JobState.SUCCEEDED  # type: ignore[union-attr]


async def test_failure_without_retry_fails_with_the_error(store: SqliteStore) -> None:
    job = await store.enqueue(new_job())
    (claim,) = await store.claim("gpu-0", lease_seconds=30)
    assert await store.fail(job.id, claim.token, error="Out of GPU memory.", gpu_seconds=2)
    failed = await store.get(job.id)
    assert (
        failed is not None
        and failed.state is JobState.FAILED
        and failed.error == "Out of GPU memory."
    )


async def test_failure_with_retry_requeues_until_attempts_run_out(store: SqliteStore, clock: FakeClock) -> None:
    job = await store.enqueue(new_job(max_attempts=2))
    for attempt in (1, 2):
        (claim,) = await store.claim("gpu-0", lease_seconds=30)
        assert claim.job.attempts == attempt
        assert await store.fail(job.id, claim.token, error="CUDA error", gpu_seconds=1, retry=True)
        clock.advance(3600)  # past any backoff (tests/db/test_store_retries.py says how long)
    final = await store.get(job.id)
    assert final is not None and final.state is JobState.FAILED and final.attempts == 2
    assert await store.claim("gpu-0", lease_seconds=30) == []


async def test_release_puts_the_job_back_without_counting_the_attempt(store: SqliteStore) -> None:
    job = await store.enqueue(new_job())
    (claim,) = await store.claim("gpu-0", lease_seconds=30)
    assert await store.release(job.id, claim.token)
    back = await store.get(job.id)
    assert (
        back is not None
        and back.state is JobState.QUEUED
        and back.attempts == 0
        and back.worker is None
    )
    (again,) = await store.claim("gpu-1", lease_seconds=30)
    assert again.job.id == job.id and again.job.attempts == 1


async def test_jobs_are_found_by_card_and_result_message(store: SqliteStore) -> None:
    job = await store.enqueue(new_job())
    await store.set_message(job.id, 555, kind="card")
    await store.set_message(job.id, 777, kind="result")
    assert (await store.by_message(555)).id == job.id  # type: ignore[union-attr]
    assert (await store.by_message(777)).id == job.id  # type: ignore[union-attr]
    assert await store.by_message(999) is None
    with pytest.raises(NotFound):
        await store.set_message(4242, 1, kind="card")


async def test_delivering_records_the_result_message_and_the_delivery_together(store: Store) -> None:
    job = await store.enqueue(new_job())
    (claim,) = await store.claim("gpu-0", lease_seconds=30)
    await store.finish(job.id, claim.token, result_png=PNG, gpu_seconds=1)
    assert await store.mark_delivered(job.id, result_message_id=777)
    delivered = await store.get(job.id)
    assert delivered is not None and delivered.delivered and delivered.result_message_id == 777
    assert delivered.version > job.version  # the bot's change feed sees it
    assert await store.by_message(777) == delivered
    assert await store.undelivered() == []
    assert not await store.mark_delivered(job.id, result_message_id=888)  # once only
    assert await store.get(job.id) == delivered


async def test_a_job_that_is_not_finished_takes_no_result_message(store: Store) -> None:
    job = await store.enqueue(new_job())
    assert not await store.mark_delivered(job.id, result_message_id=777)
    assert await store.get(job.id) == job and await store.by_message(777) is None


async def test_rerun_records_its_parent_and_relation(store: SqliteStore) -> None:
    parent = await store.enqueue(new_job())
    child = await store.enqueue(new_job(parent_id=parent.id, relation="rerun", seed=8))
    assert child.parent_id == parent.id and child.relation is Relation.RERUN


async def test_finished_jobs_stay_undelivered_across_a_restart_until_marked(
    store: Store, open_store: Callable[..., Awaitable[Store]]
) -> None:
    job = await store.enqueue(new_job())
    (claim,) = await store.claim("gpu-0", lease_seconds=30)
    await store.finish(job.id, claim.token, result_png=PNG, gpu_seconds=1)
    await store.close()
    reopened = await open_store()
    assert [j.id for j in await reopened.undelivered()] == [job.id]
    assert await reopened.mark_delivered(job.id)
    assert not await reopened.mark_delivered(job.id)
    assert await reopened.undelivered() == []


async def test_a_job_that_is_not_finished_cannot_be_marked_delivered(store: SqliteStore) -> None:
    job = await store.enqueue(new_job())
    assert not await store.mark_delivered(job.id)
