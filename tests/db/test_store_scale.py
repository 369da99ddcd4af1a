"""With 100,000 jobs queued, claims use their indexes and stay fast."""

from __future__ import annotations

import shutil
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from db import SqliteStore
from db.clock import SystemClock, to_epoch
from db.jobs import check_new_job
from db.migrations import migrate
from db.settings import GuildSettings
from db.sqlite import admission, scheduler
from db.sqlite.connection import connect
from tests.db.factories import new_job

GUILDS = 1000
USERS_PER_GUILD = 10


def build(path: Path, jobs: int) -> Path:
    """``jobs`` queued jobs spread evenly over 1,000 guilds of 10 members each."""
    conn = connect(path)
    try:
        migrate(conn)
        news = [
            new_job(
                guild=1 + i % GUILDS,
                user=1000 + (i % GUILDS) * USERS_PER_GUILD + (i // GUILDS) % USERS_PER_GUILD,
                seed=i,
                width=(256, 512)[i % 3 == 0],
            )
            for i in range(jobs)
        ]
        admission.enqueue(
            conn,
            [check_new_job(new) for new in news],
            defaults=GuildSettings(),
            enforce_limits=False,
            now=to_epoch(SystemClock().now()),
        )
    finally:
        conn.close()
    return path


@pytest.fixture(scope="module")
def big_db(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build(tmp_path_factory.mktemp("big") / "template.sqlite3", 100_000)


@pytest.fixture
def big(big_db: Path, tmp_path: Path) -> Iterator[Path]:
    copy = tmp_path / "big.sqlite3"
    shutil.copy(big_db, copy)
    yield copy


CLAIM_PLANS = {
    "CLAIM_GUILD": "guild_queues_fair",
    "CLAIM_USER": "user_queues_fair",
    "CLAIM_JOB": "jobs_queued_fifo",
    "SHAPE_GUILD": "jobs_queued_batch",
    "SHAPE_USER": "jobs_queued_batch",
    "SHAPE_JOB": "jobs_queued_batch",
    "EXPIRED": "jobs_lease",
}


@pytest.mark.parametrize(("query", "index"), CLAIM_PLANS.items())
def test_claim_queries_use_their_indexes(big: Path, query: str, index: str) -> None:
    sql = getattr(scheduler, query)
    conn = connect(big)
    try:
        conn.execute("ANALYZE")  # plan with real statistics, as after PRAGMA optimize
        plan = [row[3] for row in conn.execute(f"EXPLAIN QUERY PLAN {sql}", (1,) * sql.count("?"))]
    finally:
        conn.close()
    assert any(f"USING INDEX {index}" in step for step in plan), plan
    assert not any(step.startswith("SCAN") and "USING" not in step for step in plan), plan
    if query in ("CLAIM_GUILD", "SHAPE_GUILD"):  # never sort the guilds
        assert not any("TEMP B-TREE" in step for step in plan), plan


def claim_instructions(path: Path, claims: int) -> float:
    """SQLite VM instructions per claim: grows with the rows a claim touches."""
    conn = connect(path)
    counted = [0]

    def count() -> int:
        counted[0] += 1
        return 0

    try:
        conn.set_progress_handler(count, 1)
        for _ in range(claims):
            assert scheduler.claim(conn, "gpu-0", lease_s=60, max_jobs=1, now=time.time())
    finally:
        conn.close()
    return counted[0] / claims


def test_claim_work_does_not_grow_with_the_queue(big: Path, tmp_path: Path) -> None:
    small = build(tmp_path / "small.sqlite3", 2_000)
    assert claim_instructions(big, 200) < 2 * claim_instructions(small, 200)


async def test_a_thousand_claims_through_the_store_each_take_a_new_job(big: Path) -> None:
    """What a claim costs is test_claim_work_does_not_grow_with_the_queue's business (in
    SQLite instructions, not seconds: bench/bench_queue.py measures the time); this checks
    that the store's own path takes 1,000 different jobs off a 100,000-job queue."""
    taken = set()
    async with await SqliteStore.open(big) as store:
        for _ in range(1000):
            (claim,) = await store.claim("gpu-0", lease_seconds=60)
            taken.add(claim.job.id)
        stats = await store.stats()
    assert len(taken) == 1000
    assert stats["running"] == 1000 and stats["queued"] == 100_000 - 1000


async def test_batch_claims_and_listings_work_at_scale(big: Path) -> None:
    async with await SqliteStore.open(big) as store:
        claims = await store.claim("gpu-0", lease_seconds=60, max_jobs=8)
        assert len(claims) == 8 and len({c.job.batch_key for c in claims}) == 1
        queued = (await store.queue(1, limit=100))[-1]
        ahead, _ = await store.position(queued.id)
        assert 90_000 < ahead < 100_000
        assert (await store.stats())["queued"] == 100_000 - 8
