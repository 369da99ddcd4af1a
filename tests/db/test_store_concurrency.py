"""Several connections and processes claiming at once never share a job."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from collections import Counter
from pathlib import Path

from db import SqliteStore
from tests.db.factories import OPEN_LIMITS, PNG, new_job

REPO = Path(__file__).resolve().parents[2]

CLAIMER = """
import asyncio, json, sys
from db import SqliteStore

async def main(path, worker):
    claimed = []
    async with await SqliteStore.open(path) as store:
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


async def fill(path: Path, count: int) -> set[int]:
    async with await SqliteStore.open(path, defaults=OPEN_LIMITS) as store:
        jobs = await store.enqueue_many(
            [
                new_job(guild=1 + i % 7, user=100 + i % 13, seed=i, width=256 + 16 * (i % 2))
                for i in range(count)
            ],
            enforce_limits=False,
        )
    return {job.id for job in jobs}


async def test_concurrent_connections_claim_every_job_exactly_once(db_path: Path) -> None:
    expected = await fill(db_path, 600)
    stores = [await SqliteStore.open(db_path) for _ in range(4)]

    async def drain(store: SqliteStore, worker: str) -> list[int]:
        claimed = []
        while claims := await store.claim(worker, lease_seconds=600, max_jobs=3):
            for claim in claims:
                claimed.append(claim.job.id)
                assert await store.finish(
                    claim.job.id, claim.token, result_png=PNG, gpu_seconds=0.01
                )
        return claimed

    try:
        results = await asyncio.gather(*(drain(s, f"gpu-{i}") for i, s in enumerate(stores)))
    finally:
        for store in stores:
            await store.close()
    counts = Counter(job_id for claimed in results for job_id in claimed)
    assert set(counts) == expected
    assert max(counts.values()) == 1
    assert sum(1 for claimed in results if claimed) > 1  # the claimers really took turns


async def test_concurrent_processes_claim_every_job_exactly_once(db_path: Path) -> None:
    expected = await fill(db_path, 900)
    env = dict(
        os.environ, PYTHONPATH=os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])
    )
    procs = [
        await asyncio.create_subprocess_exec(
            sys.executable,
            "-c",
            CLAIMER,
            str(db_path),
            f"proc-{i}",
            cwd=REPO,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        for i in range(3)
    ]
    outputs = [await proc.communicate() for proc in procs]
    for proc, (_, err) in zip(procs, outputs, strict=True):
        assert proc.returncode == 0, err.decode()
    claimed = [job_id for out, _ in outputs for job_id in json.loads(out)]
    assert Counter(claimed).most_common(1)[0][1] == 1
    assert set(claimed) == expected
    async with await SqliteStore.open(db_path) as store:
        stats = await store.stats()
    assert stats["queued"] == 0 and stats["running"] == 0
