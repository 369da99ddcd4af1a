"""Leases: a dead worker's job comes back, a stale worker changes nothing."""

from __future__ import annotations

from db import FakeClock, JobState, SqliteStore
from tests.db.factories import PNG, new_job


async def test_expired_lease_is_reclaimed_and_the_attempt_counted(
    store: SqliteStore, clock: FakeClock
) -> None:
    job = await store.enqueue(new_job())
    (first,) = await store.claim("gpu-0", lease_seconds=30)
    clock.advance(31)  # gpu-0 died without a word
    (second,) = await store.claim("gpu-1", lease_seconds=30)
    assert second.job.id == job.id
    assert second.job.attempts == 2 and second.job.worker == "gpu-1"
    assert second.token != first.token


async def test_a_lease_kept_alive_by_heartbeats_is_not_reclaimed(
    store: SqliteStore, clock: FakeClock
) -> None:
    await store.enqueue(new_job())
    (claim,) = await store.claim("gpu-0", lease_seconds=30)
    for _ in range(5):
        clock.advance(20)
        assert await store.heartbeat(claim.job.id, claim.token, lease_seconds=30)
    assert await store.claim("gpu-1", lease_seconds=30) == []
    assert await store.reclaim_expired() == 0


async def test_progress_with_a_lease_extends_it(store: SqliteStore, clock: FakeClock) -> None:
    await store.enqueue(new_job())
    (claim,) = await store.claim("gpu-0", lease_seconds=30)
    clock.advance(25)
    assert await store.report_progress(claim.job.id, claim.token, step=1, lease_seconds=30)
    clock.advance(25)
    assert await store.claim("gpu-1", lease_seconds=30) == []


async def test_job_fails_with_a_reason_once_its_attempts_run_out(
    store: SqliteStore, clock: FakeClock
) -> None:
    job = await store.enqueue(new_job(max_attempts=2))
    for _ in range(2):
        assert [c.job.id for c in await store.claim("gpu-0", lease_seconds=10)] == [job.id]
        clock.advance(11)
    assert await store.claim("gpu-0", lease_seconds=10) == []
    failed = await store.get(job.id)
    assert failed is not None and failed.state is JobState.FAILED
    assert failed.attempts == 2 and failed.finished_at == clock.now()
    assert failed.error is not None and "stopped responding on all 2 attempts" in failed.error
    assert [j.id for j in await store.undelivered()] == [job.id]


async def test_reclaim_without_a_claim_puts_expired_jobs_back(
    store: SqliteStore, clock: FakeClock
) -> None:
    job = await store.enqueue(new_job())
    await store.claim("gpu-0", lease_seconds=10)
    clock.advance(11)
    assert await store.reclaim_expired() == 1
    back = await store.get(job.id)
    assert back is not None and back.state is JobState.QUEUED and back.worker is None


async def test_a_cancelling_job_whose_worker_died_ends_cancelled(
    store: SqliteStore, clock: FakeClock
) -> None:
    job = await store.enqueue(new_job())
    await store.claim("gpu-0", lease_seconds=10)
    await store.request_cancel(job.id, by_user=job.user_id, is_admin=False)
    clock.advance(11)
    await store.reclaim_expired()
    assert (await store.get(job.id)).state is JobState.CANCELLED  # type: ignore[union-attr]


async def test_stale_worker_finish_after_reclaim_has_no_effect(
    store: SqliteStore, clock: FakeClock
) -> None:
    job = await store.enqueue(new_job())
    (stale,) = await store.claim("gpu-0", lease_seconds=10)
    clock.advance(11)
    (fresh,) = await store.claim("gpu-1", lease_seconds=30)
    before = await store.get(job.id)

    assert not await store.finish(job.id, stale.token, result_png=PNG, gpu_seconds=9)
    assert not await store.fail(job.id, stale.token, error="boom", gpu_seconds=9)
    assert not await store.heartbeat(job.id, stale.token, lease_seconds=600)
    assert not await store.release(job.id, stale.token)
    assert not await store.confirm_cancelled(job.id, stale.token, gpu_seconds=1)
    ack = await store.report_progress(job.id, stale.token, step=99, preview=b"stale")
    assert not ack and not ack.ok

    assert await store.get(job.id) == before
    assert await store.result(job.id) is None and await store.preview(job.id) is None
    assert await store.finish(job.id, fresh.token, result_png=PNG, gpu_seconds=3)
    done = await store.get(job.id)
    assert done is not None and done.state is JobState.SUCCEEDED and done.gpu_seconds == 3


async def test_a_finished_job_rejects_a_second_finish(store: SqliteStore) -> None:
    job = await store.enqueue(new_job())
    (claim,) = await store.claim("gpu-0", lease_seconds=30)
    assert await store.finish(job.id, claim.token, result_png=PNG, gpu_seconds=1)
    assert not await store.finish(job.id, claim.token, result_png=b"other", gpu_seconds=1)
    assert await store.result(job.id) == PNG


async def test_a_wrong_token_changes_nothing(store: SqliteStore) -> None:
    job = await store.enqueue(new_job())
    await store.claim("gpu-0", lease_seconds=30)
    assert not await store.finish(job.id, "not-the-token", result_png=PNG, gpu_seconds=1)
    assert (await store.get(job.id)).state is JobState.RUNNING  # type: ignore[union-attr]
