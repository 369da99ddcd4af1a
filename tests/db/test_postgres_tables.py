"""PostgreSQL: hot rows stay small, the change feed waits for late commits (of its own database only), claims
pass locked rows by."""

from __future__ import annotations

from collections.abc import Callable

from db import FakeClock, JobState
from db.postgres import PostgresStore, transitions
from tests.db.factories import OPEN_LIMITS, PNG, new_job
from tests.db.postgres_checks import assert_counters_match, open_transaction, rows


def row_version(url: str, job_id: int) -> object:
    """The job row's xmin: it changes whenever the row is rewritten."""
    return rows(url, "SELECT xmin::text FROM jobs WHERE id = %s", (job_id,))[0][0]


async def test_progress_and_heartbeats_do_not_rewrite_the_job_row(pg_url: str) -> None:
    async with await PostgresStore.open(pg_url, defaults=OPEN_LIMITS) as store:
        job = await store.enqueue(new_job(steps=100))
        (claim,) = await store.claim("gpu-0", lease_seconds=60)
        claimed = row_version(pg_url, job.id)
        for step in range(1, 30):
            await store.report_progress(job.id, claim.token, step=step, preview=b"jpeg", steps_per_s=9.5)
            await store.heartbeat(job.id, claim.token, lease_seconds=60)
        assert row_version(pg_url, job.id) == claimed
        running = await store.get(job.id)
        assert running is not None and running.step == 29 and running.steps_per_s == 9.5
        assert running.version > claim.job.version
        assert await store.preview(job.id) == (29, b"jpeg")
        assert await store.fail(job.id, claim.token, error="Out of memory.", gpu_seconds=1)
        failed = await store.get(job.id)
        assert failed is not None and failed.step == 29 and failed.steps_per_s == 9.5  # kept, as in SQLite
        assert rows(pg_url, "SELECT count(*) FROM job_progress") == [(0,)]


async def test_the_hot_tables_vacuum_by_rows_not_by_fraction(pg_url: str) -> None:
    async with await PostgresStore.open(pg_url):
        pass
    options = dict(
        rows(
            pg_url,
            "SELECT relname, reloptions FROM pg_class WHERE relname IN "
            "('jobs', 'job_progress', 'guild_queues', 'user_queues', 'previews')",
        )
    )
    assert set(options) == {"jobs", "job_progress", "guild_queues", "user_queues", "previews"}
    for table, settings in options.items():
        assert "autovacuum_vacuum_scale_factor=0.0" in settings, table  # type: ignore[operator]
        assert any(s.startswith("fillfactor=") for s in settings), table  # type: ignore[union-attr]


async def test_the_change_feed_never_skips_a_change_that_commits_late(pg_url: str) -> None:
    async with await PostgresStore.open(pg_url, defaults=OPEN_LIMITS) as store:
        early, late = await store.enqueue_many([new_job(seed=1), new_job(seed=2)])
        seen = await store.version()
        polled: list[int] = []
        async with open_transaction(pg_url) as slow:
            # This transaction takes its change number first and commits last.
            await transitions.set_message(slow, early.id, 111, kind="card")
            await store.set_message(late.id, 222)
            for job in await store.changed_since(seen):
                polled.append(job.id)
                seen = max(seen, job.version)
            assert await store.version() == seen  # the feed stops short of the open transaction
        for job in await store.changed_since(seen):
            polled.append(job.id)
        assert sorted(polled) == sorted({early.id, late.id}) and len(polled) == 2



async def test_a_transaction_in_another_database_does_not_hold_the_feed_back(
    pg_url: str, make_database: Callable[[], str]
) -> None:
    """Another database of the server (another app, another test process) never writes the store's
    tables: its open transaction, older than the change, does not hide the change."""
    async with await PostgresStore.open(pg_url, defaults=OPEN_LIMITS) as store:
        seen = await store.version()
        async with open_transaction(make_database()) as elsewhere:
            await elsewhere.one("SELECT pg_current_xact_id()")  # an id older than the change below
            job = await store.enqueue(new_job())
            assert [j.id for j in await store.changed_since(seen)] == [job.id]
            assert await store.version() == job.version

async def test_a_claim_passes_by_a_job_a_cancel_is_holding(pg_url: str) -> None:
    async with await PostgresStore.open(pg_url, defaults=OPEN_LIMITS) as store:
        held = await store.enqueue(new_job(guild=1))
        other = await store.enqueue(new_job(guild=2))
        async with open_transaction(pg_url) as cancel:
            await cancel.run("SELECT 1 FROM jobs WHERE id = %s FOR UPDATE", (held.id,))
            assert [c.job.id for c in await store.claim("gpu-0", lease_seconds=60)] == [other.id]
        assert [c.job.id for c in await store.claim("gpu-0", lease_seconds=60)] == [held.id]
    assert_counters_match(pg_url)


async def test_claim_repairs_counters_that_disagree_with_the_jobs(pg_url: str) -> None:
    async with await PostgresStore.open(pg_url, defaults=OPEN_LIMITS) as store:
        job = await store.enqueue(new_job(guild=2))
        rows(pg_url, "INSERT INTO guild_queues (guild_id, vtime, queued, pending) VALUES (1, -5, 3, 3)")
        assert [c.job.id for c in await store.claim("gpu-0", lease_seconds=60)] == [job.id]
    assert_counters_match(pg_url)


async def test_a_finished_job_reopened_by_another_store_is_undelivered_until_marked(
    pg_url: str, clock: FakeClock
) -> None:
    async with await PostgresStore.open(pg_url, clock=clock, defaults=OPEN_LIMITS) as store:
        job = await store.enqueue(new_job())
        (claim,) = await store.claim("gpu-0", lease_seconds=30)
        await store.finish(job.id, claim.token, result_png=PNG, gpu_seconds=1)
    async with await PostgresStore.open(pg_url, clock=clock) as reopened:
        (undelivered,) = await reopened.undelivered()
        assert undelivered.id == job.id and undelivered.state is JobState.SUCCEEDED
        assert await reopened.mark_delivered(job.id) and not await reopened.mark_delivered(job.id)
        assert await reopened.undelivered() == []
