"""PostgreSQL: claimers, enqueuers and dying workers on many connections and processes at once."""

from __future__ import annotations

import asyncio
import json
import signal
from collections import Counter

from db import GuildSettings, JobState, LimitExceeded
from db.postgres import PostgresStore, scheduler
from tests.db.factories import OPEN_LIMITS, PNG, new_job
from tests.db.postgres_checks import (
    assert_counters_match,
    open_transaction,
    rows,
    start_python,
    until_waiting_for_a_lock,
)

CLAIMER = """
import asyncio, json, sys
from db.postgres import PostgresStore

async def main(url, worker):
    claimed = []
    async with await PostgresStore.open(url, pool_size=1) as store:
        while claims := await store.claim(worker, lease_seconds=600, max_jobs=int(sys.argv[3])):
            for claim in claims:
                claimed.append(claim.job.id)
                assert await store.finish(claim.job.id, claim.token, result_png=b"png", gpu_seconds=0.01)
    print(json.dumps(claimed))

asyncio.run(main(sys.argv[1], sys.argv[2]))
"""

# Claims inside a transaction it never commits: it prints the job ids, then waits to be killed.
HOLDER = """
import asyncio, json, sys, time
from db.postgres import scheduler
from db.postgres.connection import SessionSettings, Tx, connect

async def main(url, idle_s):
    conn = await connect(url, SessionSettings(idle_in_transaction_s=float(idle_s)), "vqbot-holder")
    async with conn.transaction():
        claims = await scheduler.claim(Tx(conn), "holder", lease_s=600, max_jobs=3, now=time.time())
        print(json.dumps([c.job.id for c in claims]), flush=True)
        await asyncio.sleep(3600)

asyncio.run(main(sys.argv[1], sys.argv[2]))
"""


async def fill(url: str, count: int) -> set[int]:
    async with await PostgresStore.open(url, defaults=OPEN_LIMITS) as store:
        jobs = await store.enqueue_many(
            [new_job(guild=1 + i % 7, user=100 + i % 13, seed=i, width=256 + 16 * (i % 2)) for i in range(count)],
            enforce_limits=False,
        )
    return {job.id for job in jobs}


async def test_16_claimer_processes_never_claim_one_job_twice(pg_url: str) -> None:
    expected = await fill(pg_url, 1200)
    procs = [await start_python(CLAIMER, pg_url, f"proc-{i}", str(1 + i % 3)) for i in range(16)]
    outputs = [await proc.communicate() for proc in procs]
    for proc, (_, err) in zip(procs, outputs, strict=True):
        assert proc.returncode == 0, err.decode()
    claimed = [job_id for out, _ in outputs for job_id in json.loads(out)]
    assert Counter(claimed).most_common(1)[0][1] == 1
    assert set(claimed) == expected
    assert sum(1 for out, _ in outputs if json.loads(out)) > 1  # they really claimed side by side
    async with await PostgresStore.open(pg_url) as store:
        stats = await store.stats()
    assert stats["queued"] == 0 and stats["running"] == 0
    assert_counters_match(pg_url)


async def test_racing_enqueues_never_pass_the_members_cap(pg_url: str) -> None:
    stores = [await PostgresStore.open(pg_url, defaults=GuildSettings(cooldown_s=0)) for _ in range(4)]
    try:
        results = await asyncio.gather(
            *(store.enqueue(new_job(seed=i)) for i in range(5) for store in stores), return_exceptions=True
        )
    finally:
        for store in stores:
            await store.close()
    admitted = [r for r in results if not isinstance(r, BaseException)]
    refused = [r for r in results if isinstance(r, LimitExceeded)]
    assert len(admitted) == GuildSettings().max_queued_per_user
    assert len(refused) == len(results) - len(admitted)
    assert {r.limit for r in refused} == {"max_queued_per_user"}
    assert_counters_match(pg_url)


async def test_a_claimer_killed_mid_transaction_leaves_nothing_half_done(pg_url: str) -> None:
    expected = await fill(pg_url, 6)
    holder = await start_python(HOLDER, pg_url, "0")
    try:
        assert holder.stdout is not None
        held = set(json.loads(await holder.stdout.readline()))
        assert len(held) == 3
        async with await PostgresStore.open(pg_url) as store:
            # While the holder's transaction is open, other claimers pass its jobs by.
            passing = {c.job.id for c in await store.claim("gpu-1", lease_seconds=60, max_jobs=3)}
            assert passing and not passing & held
            holder.send_signal(signal.SIGKILL)
            await holder.wait()
            # Waits until the server has rolled the dead session's transaction back.
            rows(pg_url, "SELECT id FROM jobs WHERE id = ANY(%s) FOR UPDATE", (list(held),))
            jobs = [await store.get(job_id) for job_id in held]
            assert all(j is not None and j.state is JobState.QUEUED and j.attempts == 0 for j in jobs)
            assert rows(pg_url, "SELECT job_id FROM job_progress WHERE job_id = ANY(%s)", (list(held),)) == []
            assert_counters_match(pg_url)
            rest = {c.job.id for c in await store.claim("gpu-1", lease_seconds=60, max_jobs=6)}
            assert passing | rest == expected
    finally:
        if holder.returncode is None:
            holder.kill()
            await holder.wait()


async def test_a_frozen_session_is_ended_by_the_server_and_its_jobs_come_back(pg_url: str) -> None:
    await fill(pg_url, 3)
    holder = await start_python(HOLDER, pg_url, "0.5")  # idle_in_transaction_session_timeout 0.5 s
    try:
        assert holder.stdout is not None
        held = json.loads(await holder.stdout.readline())
        # The holder still runs (asleep inside its transaction); the server ends its session.
        rows(pg_url, "SELECT id FROM jobs WHERE id = ANY(%s) FOR UPDATE", (held,))
        assert holder.returncode is None
        async with await PostgresStore.open(pg_url) as store:
            assert sorted(c.job.id for c in await store.claim("gpu-1", lease_seconds=60, max_jobs=3)) == sorted(held)
    finally:
        holder.kill()
        await holder.wait()


async def test_a_stale_finish_that_waited_for_the_reclaim_changes_nothing(pg_url: str) -> None:
    async with await PostgresStore.open(pg_url, defaults=OPEN_LIMITS, application_name="stale-worker") as stale:
        job = await stale.enqueue(new_job())
        (old,) = await stale.claim("gpu-0", lease_seconds=10)
        async with open_transaction(pg_url) as tx:
            # Another worker reclaims and claims the job; its transaction is still open when
            # the stale worker's finish arrives and waits for the job row.
            expired = old.job.lease_expires_at
            assert expired is not None
            (fresh,) = await scheduler.claim(tx, "gpu-1", lease_s=60, max_jobs=1, now=expired.timestamp() + 1)
            finishing = asyncio.create_task(stale.finish(job.id, old.token, result_png=PNG, gpu_seconds=5))
            await until_waiting_for_a_lock(pg_url, "stale-worker")
        assert not await finishing
        assert not await stale.heartbeat(job.id, old.token, lease_seconds=600)
        now = await stale.get(job.id)
        assert now is not None and now.state is JobState.RUNNING and now.worker == "gpu-1" and now.attempts == 2
        assert await stale.result(job.id) is None
        assert await stale.finish(job.id, fresh.token, result_png=PNG, gpu_seconds=3)
    assert_counters_match(pg_url)


async def test_concurrent_batch_claims_on_one_store_share_no_job(pg_url: str) -> None:
    expected, claimers = await fill(pg_url, 300), 4
    async with await PostgresStore.open(pg_url, pool_size=claimers) as store:

        async def drain(worker: str) -> list[int]:
            claimed = []
            while claims := await store.claim(worker, lease_seconds=600, max_jobs=4):
                claimed += [c.job.id for c in claims]
            return claimed

        results = await asyncio.gather(*(drain(f"gpu-{i}") for i in range(claimers)))
    counts = Counter(job_id for claimed in results for job_id in claimed)
    assert set(counts) == expected and max(counts.values()) == 1
