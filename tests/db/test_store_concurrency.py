"""Several connections and processes claiming at once never share a job (on either backend)."""

from __future__ import annotations

import asyncio
import json
from collections import Counter
from collections.abc import Awaitable, Callable

from db import Store
from tests.db.factories import OPEN_LIMITS, PNG, new_job
from tests.db.processes import start_python

OpenStore = Callable[..., Awaitable[Store]]

CLAIMER = """
import asyncio, json, sys
from db import open_store

async def main(spec, worker):
    claimed = []
    async with await open_store(spec) as store:
        while True:
            claims = await store.claim(worker, lease_seconds=600, max_jobs=2)
            if not claims:
                break
            for claim in claims:
                claimed.append(claim.job.id)
                await store.finish(claim.job.id, claim.token, result_png=b"png", gpu_seconds=0.01)
    print(json.dumps(claimed))

asyncio.run(main(sys.argv[1], sys.argv[2]))
"""


async def fill(open_store: OpenStore, count: int) -> set[int]:
    store = await open_store(defaults=OPEN_LIMITS)
    jobs = await store.enqueue_many(
        [new_job(guild=1 + i % 7, user=100 + i % 13, seed=i, width=256 + 16 * (i % 2)) for i in range(count)],
        enforce_limits=False,
    )
    return {job.id for job in jobs}


async def test_concurrent_connections_claim_every_job_exactly_once(open_store: OpenStore) -> None:
    expected = await fill(open_store, 600)
    stores = [await open_store() for _ in range(4)]

    async def drain(store: Store, worker: str) -> list[int]:
        claimed = []
        while claims := await store.claim(worker, lease_seconds=600, max_jobs=3):
            for claim in claims:
                claimed.append(claim.job.id)
                assert await store.finish(claim.job.id, claim.token, result_png=PNG, gpu_seconds=0.01)
        return claimed

    results = await asyncio.gather(*(drain(s, f"gpu-{i}") for i, s in enumerate(stores)))
    counts = Counter(job_id for claimed in results for job_id in claimed)
    assert set(counts) == expected
    assert max(counts.values()) == 1
    assert sum(1 for claimed in results if claimed) > 1  # the claimers really took turns


async def test_concurrent_processes_claim_every_job_exactly_once(
    open_store: OpenStore, database_spec: str, counters_match: Callable[[Store], None]
) -> None:
    expected = await fill(open_store, 900)
    procs = [await start_python(CLAIMER, database_spec, f"proc-{i}") for i in range(3)]
    outputs = [await proc.communicate() for proc in procs]
    for proc, (_, err) in zip(procs, outputs, strict=True):
        assert proc.returncode == 0, err.decode()
    claimed = [job_id for out, _ in outputs for job_id in json.loads(out)]
    assert Counter(claimed).most_common(1)[0][1] == 1
    assert set(claimed) == expected
    store = await open_store()
    stats = await store.stats()
    assert stats["queued"] == 0 and stats["running"] == 0
    counters_match(store)
