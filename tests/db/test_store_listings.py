"""Reading the queue back: positions, ETAs, listings, the change feed, stats."""

from __future__ import annotations

import pytest

from db import FakeClock, JobState, NotFound, SqliteStore
from tests.db.factories import PNG, new_job


async def test_position_counts_the_jobs_ahead_in_fifo_order(store: SqliteStore) -> None:
    jobs = await store.enqueue_many([new_job(seed=i) for i in range(3)])
    assert [(await store.position(j.id))[0] for j in jobs] == [0, 1, 2]


async def test_position_interleaves_guilds(store: SqliteStore) -> None:
    busy = await store.enqueue_many([new_job(guild=1, seed=i) for i in range(5)])
    newcomer = await store.enqueue(new_job(guild=2))
    assert (await store.position(newcomer.id))[0] <= 1
    assert (await store.position(busy[-1].id))[0] == 5


async def test_eta_is_unknown_until_speed_is_measured_then_grows_with_the_queue(
    store: SqliteStore,
) -> None:
    first = await store.enqueue(new_job(steps=100))
    (claim,) = await store.claim("gpu-0", lease_seconds=60)
    later = await store.enqueue_many([new_job(steps=100, seed=i) for i in range(3)])
    assert (await store.position(later[0].id)) == (0, None)

    await store.report_progress(first.id, claim.token, step=50, steps_per_s=10.0)
    assert await store.position(first.id) == (0, pytest.approx(5.0))  # 50 steps left at 10/s
    etas = [(await store.position(j.id))[1] for j in later]
    # Each later job waits for the running half (5 s) and 10 s per job before it.
    assert etas == [pytest.approx(15.0), pytest.approx(25.0), pytest.approx(35.0)]

    await store.finish(first.id, claim.token, result_png=PNG, gpu_seconds=10.0)
    assert (await store.position(first.id)) == (0, 0.0)
    assert (await store.position(later[0].id))[1] is not None  # from finished jobs now


async def test_position_of_a_missing_job_is_not_found(store: SqliteStore) -> None:
    with pytest.raises(NotFound):
        await store.position(404)


async def test_queue_lists_running_jobs_then_waiting_ones(store: SqliteStore) -> None:
    jobs = await store.enqueue_many([new_job(seed=i) for i in range(3)] + [new_job(guild=2)])
    await store.claim("gpu-0", lease_seconds=60)
    listed = await store.queue(1)
    assert [j.state for j in listed] == [JobState.RUNNING, JobState.QUEUED, JobState.QUEUED]
    assert [j.id for j in listed] == [j.id for j in jobs[:3]]
    assert len(await store.queue(1, limit=2)) == 2


async def test_history_is_newest_first_and_can_stay_in_one_guild(store: SqliteStore) -> None:
    a = await store.enqueue(new_job(guild=1))
    b = await store.enqueue(new_job(guild=2))
    c = await store.enqueue(new_job(guild=1))
    assert [j.id for j in await store.history(100)] == [c.id, b.id, a.id]
    assert [j.id for j in await store.history(100, guild_id=1, limit=1)] == [c.id]
    assert await store.history(555) == []


async def test_change_feed_returns_each_change_once_in_order(store: SqliteStore) -> None:
    start = await store.version()
    job = await store.enqueue(new_job())
    (claim,) = await store.claim("gpu-0", lease_seconds=60)
    changed = await store.changed_since(start)
    assert [(j.id, j.state) for j in changed] == [(job.id, JobState.RUNNING)]
    seen = changed[-1].version
    assert await store.changed_since(seen) == []
    await store.report_progress(job.id, claim.token, step=3)
    (progressed,) = await store.changed_since(seen)
    assert progressed.step == 3 and progressed.version > seen


async def test_change_feed_never_splits_one_change(store: SqliteStore) -> None:
    batch = await store.enqueue_many([new_job(seed=i) for i in range(10)])
    assert len({j.version for j in batch}) == 1
    assert len(await store.changed_since(0, limit=3)) == 10
    later = await store.enqueue(new_job())
    assert [j.id for j in await store.changed_since(batch[0].version, limit=1)] == [later.id]


async def test_only_the_latest_preview_is_kept_and_old_ones_are_pruned(
    store: SqliteStore, clock: FakeClock
) -> None:
    job = await store.enqueue(new_job())
    (claim,) = await store.claim("gpu-0", lease_seconds=60)
    for step in (10, 20, 30):
        await store.report_progress(
            job.id, claim.token, step=step, preview=f"frame {step}".encode()
        )
    assert await store.preview(job.id) == (30, b"frame 30")
    await store.finish(job.id, claim.token, result_png=PNG, gpu_seconds=1)
    assert await store.prune() == {"previews": 0, "results": 0, "checkpoints": 0, "gpu_usage": 0}
    clock.advance(3601)
    assert (await store.prune())["previews"] == 1
    assert await store.preview(job.id) is None
    assert await store.result(job.id) == PNG  # results stay unless asked
    await store.mark_delivered(job.id)
    assert (await store.prune(results_older_than_s=60))["results"] == 1
    assert await store.result(job.id) is None


async def test_stats_describe_the_queue_and_the_workers(store: SqliteStore) -> None:
    await store.enqueue_many([new_job(guild=g, seed=g) for g in (1, 2, 2)])
    (a,) = await store.claim("gpu-0", lease_seconds=60)
    (b,) = await store.claim("gpu-1", lease_seconds=60)
    await store.report_progress(a.job.id, a.token, step=1, steps_per_s=10)
    await store.report_progress(b.job.id, b.token, step=1, steps_per_s=20)
    stats = await store.stats()
    assert stats["queued"] == 1 and stats["running"] == 2 and stats["workers"] == 2
    assert stats["guilds_waiting"] == 1 and stats["steps_per_s"] == 30
    await store.finish(a.job.id, a.token, result_png=PNG, gpu_seconds=12.5)
    assert (await store.stats())["gpu_seconds_today"] == 12.5


async def test_batch_claims_share_one_shape_and_stay_fair(store: SqliteStore) -> None:
    small = {"width": 256, "height": 256}
    large = {"width": 512, "height": 512}
    await store.enqueue_many(
        [new_job(guild=1, seed=i, **small) for i in range(3)]
        + [new_job(guild=2, seed=i, **large) for i in range(2)]
        + [new_job(guild=3, seed=i, **small) for i in range(3)]
        + [new_job(guild=1, seed=9, model="wikiart_16384", **small)]
    )
    claims = await store.claim("gpu-0", lease_seconds=60, max_jobs=4)
    shapes = {c.job.batch_key for c in claims}
    assert len(shapes) == 1 and len(claims) == 4
    assert sorted(c.job.guild_id for c in claims) == [1, 1, 3, 3]  # alternating guilds 1 and 3
    rest = await store.claim("gpu-1", lease_seconds=60, max_jobs=8)
    assert {c.job.guild_id for c in rest} == {2} and len(rest) == 2
