"""Retries that wait: a failed job comes back after a backoff with jitter, and a busy GPU burns no attempts."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta

import pytest

from db import FakeClock, InvalidInput, JobState, Store
from db.retries import RetryBackoff
from tests.db.conftest import OpenStore
from tests.db.factories import OPEN_LIMITS, new_job

# Backoffs of 10 s, 20 s, then the 30 s cap; jitter draws of 0 wait half of each: 5 s, 10 s, 15 s, 15 s.
LOWEST = RetryBackoff(base_s=10, cap_s=30, max_deferrals=2, jitter=lambda: 0.0)


@pytest.fixture
async def retrying(open_store: OpenStore) -> Store:
    return await open_store(defaults=OPEN_LIMITS, retry_backoff=LOWEST)


async def fail_once(store: Store, job_id: int, **options: object) -> float:
    """Claim the job and fail it; the seconds it must wait now (0 when it ended)."""
    (claim,) = await store.claim("gpu-0", lease_seconds=30)
    assert claim.job.id == job_id
    assert await store.fail(job_id, claim.token, error="CUDA error: an illegal memory access", gpu_seconds=1,
                            **options)  # type: ignore[arg-type]
    job = await store.get(job_id)
    assert job is not None
    if job.not_before is None:
        return 0.0
    return (job.not_before - store.clock.now()).total_seconds()


async def test_a_retried_job_waits_out_its_backoff_before_it_is_claimed(retrying: Store, clock: FakeClock) -> None:
    job = await retrying.enqueue(new_job(max_attempts=3))
    wait = await fail_once(retrying, job.id, retry=True)
    assert wait == 5.0  # 10 s backoff, jitter draw 0: half of it
    waiting = await retrying.get(job.id)
    assert waiting is not None and waiting.state is JobState.QUEUED
    assert waiting.error == "CUDA error: an illegal memory access" and waiting.attempts == 1
    clock.advance(4.9)
    assert await retrying.claim("gpu-0", lease_seconds=30) == []
    clock.advance(0.1)
    (claim,) = await retrying.claim("gpu-0", lease_seconds=30)
    assert claim.job.id == job.id and claim.job.attempts == 2 and claim.job.not_before is None


async def test_each_retry_waits_twice_as_long_up_to_the_cap(retrying: Store, clock: FakeClock) -> None:
    job = await retrying.enqueue(new_job(max_attempts=5))
    waits = []
    for _ in range(4):
        waits.append(await fail_once(retrying, job.id, retry=True))
        clock.advance(timedelta(hours=1))
    assert waits == [5.0, 10.0, 15.0, 15.0]  # 10, 20, then the 30 s cap; jitter draw 0 halves each


@pytest.mark.parametrize(("draw", "wait"), [(0.0, 5.0), (0.5, 7.5), (0.999, 9.995)])
async def test_jitter_spreads_the_wait_between_half_and_all_of_the_backoff(
    open_store: OpenStore, draw: float, wait: float
) -> None:
    store = await open_store(defaults=OPEN_LIMITS, retry_backoff=RetryBackoff(jitter=lambda: draw))
    job = await store.enqueue(new_job())
    assert await fail_once(store, job.id, retry=True) == pytest.approx(wait)


async def test_a_waiting_job_holds_up_no_one_else(retrying: Store, clock: FakeClock) -> None:
    failing = await retrying.enqueue(new_job(guild=1, user=100, priority=5))
    same_member = await retrying.enqueue(new_job(guild=1, user=100))
    other_guild = await retrying.enqueue(new_job(guild=2, user=200))
    await fail_once(retrying, failing.id, retry=True)
    claimed = await retrying.claim("gpu-0", lease_seconds=30, max_jobs=4)
    assert sorted(c.job.id for c in claimed) == [same_member.id, other_guild.id]
    stats = await retrying.stats()
    assert stats["retrying"] == 1 and stats["queued"] == 0
    clock.advance(5)
    (back,) = await retrying.claim("gpu-0", lease_seconds=30)
    assert back.job.id == failing.id


async def test_a_busy_gpu_counts_no_attempt_even_on_the_last_one(retrying: Store, clock: FakeClock) -> None:
    job = await retrying.enqueue(new_job(max_attempts=1))
    waits = []
    for _ in range(LOWEST.max_deferrals):  # the GPU's memory is held by other work
        waits.append(await fail_once(retrying, job.id, retry=True, count_attempt=False))
        back = await retrying.get(job.id)
        assert back is not None and back.state is JobState.QUEUED and back.attempts == 0
        clock.advance(timedelta(hours=1))
    assert waits == [5.0, 10.0]
    # Past max_deferrals the attempt counts after all: a job that never fits ends.
    assert await fail_once(retrying, job.id, retry=True, count_attempt=False) == 0.0
    ended = await retrying.get(job.id)
    assert ended is not None and ended.state is JobState.FAILED and ended.attempts == 1


async def test_a_waiting_job_can_be_cancelled(
    retrying: Store, clock: FakeClock, counters_match: Callable[[Store], None]
) -> None:
    job = await retrying.enqueue(new_job())
    await fail_once(retrying, job.id, retry=True)
    cancelled = await retrying.request_cancel(job.id, by_user=100, is_admin=False)
    assert cancelled.state is JobState.CANCELLED and cancelled.not_before is None
    counters_match(retrying)
    clock.advance(3600)
    assert await retrying.claim("gpu-0", lease_seconds=30) == []
    counters_match(retrying)


async def test_a_failure_without_retry_ends_the_job_at_once(retrying: Store) -> None:
    job = await retrying.enqueue(new_job(max_attempts=3))
    assert await fail_once(retrying, job.id) == 0.0
    ended = await retrying.get(job.id)
    assert ended is not None and ended.state is JobState.FAILED and ended.not_before is None


async def test_retry_arguments_are_checked(retrying: Store, open_store: OpenStore) -> None:
    job = await retrying.enqueue(new_job())
    (claim,) = await retrying.claim("gpu-0", lease_seconds=30)
    with pytest.raises(InvalidInput) as refused:
        await retrying.fail(job.id, claim.token, error="x", gpu_seconds=1, retry=True,
                            count_attempt="no")  # type: ignore[arg-type]
    assert refused.value.field == "count_attempt"
    for bad in ({"base_s": 0}, {"base_s": 60, "cap_s": 30}, {"max_deferrals": -1}):
        with pytest.raises(InvalidInput):
            RetryBackoff(**bad)  # type: ignore[arg-type]
    with pytest.raises(InvalidInput):
        await open_store(retry_backoff=30)


async def test_the_store_says_when_the_first_waiting_retry_is_due(retrying: Store, clock: FakeClock) -> None:
    """Nothing in the change feed marks the end of a retry's wait: ``next_due_in`` tells idle workers when it is."""
    assert await retrying.next_due_in() is None  # no retry waits
    first = await retrying.enqueue(new_job(guild=1, user=100, max_attempts=3))
    second = await retrying.enqueue(new_job(guild=2, user=200, max_attempts=3))
    assert await retrying.next_due_in() is None  # queued jobs don't wait
    assert await fail_once(retrying, first.id, retry=True) == 5.0
    assert await retrying.next_due_in() == 5.0
    clock.advance(2)
    assert await retrying.next_due_in() == 3.0
    assert await fail_once(retrying, second.id, retry=True) == 5.0  # due 7 s after the first failed
    assert await retrying.next_due_in() == 3.0  # the earliest of the two
    clock.advance(4)
    assert await retrying.next_due_in() == 0.0  # overdue: due now, never negative
    (claim,) = await retrying.claim("gpu-0", lease_seconds=30)
    assert claim.job.id == first.id
    assert await retrying.next_due_in() == 1.0  # the second one's
    await retrying.request_cancel(second.id, by_user=200, is_admin=False)
    assert await retrying.next_due_in() is None
