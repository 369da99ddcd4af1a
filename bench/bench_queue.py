"""Queue benchmark: enqueue and claim throughput, and claim latency, at 100,000 jobs.

    python bench/bench_queue.py [--jobs 100000] [--guilds 1000] [--claims 20000]

Enqueues ``--jobs`` jobs across ``--guilds`` guilds one ``enqueue`` call at a
time (limits checked, as the bot does), then, on a copy of that database for
each claimer count, lets 1 and 4 worker processes claim ``--claims`` jobs in
all as fast as they can. Ends with one JSON line of the figures. The target
is a claim under 5 ms at p99 with 100,000 jobs queued.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing as mp
import os
import platform
import random
import shutil
import sqlite3
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from db import GuildSettings, NewJob, SqliteStore

OPEN_LIMITS = GuildSettings(
    cooldown_s=0,
    max_queued_per_user=1_000_000,
    max_queued_per_guild=1_000_000,
    gpu_budget_guild_s=0,
    gpu_budget_user_s=0,
)
SHAPES = [(512, 512), (512, 512), (512, 384), (256, 256)]
MODELS = ["vqgan_imagenet_f16_16384", "vqgan_imagenet_f16_16384", "wikiart_16384"]


def jobs(count: int, guilds: int, rng: random.Random) -> list[NewJob]:
    """Jobs from ``guilds`` guilds of up to 20 members; some guilds much busier."""
    made = []
    for i in range(count):
        busy = 1 + min(int(rng.paretovariate(1.2)) - 1, guilds - 1)
        guild = busy if i % 2 else 1 + (i // 2) % guilds
        width, height = rng.choice(SHAPES)
        params = {
            "steps": rng.choice([100, 250, 500]),
            "width": width,
            "height": height,
            "cutn": rng.choice([16, 32, 64]),
            "model": rng.choice(MODELS),
            "lr": 0.1,
        }
        made.append(
            NewJob(
                guild_id=guild,
                channel_id=guild * 10,
                user_id=guild * 100 + rng.randrange(20),
                prompt=f"Wooden banana temple in an underwater kingdom | style {i % 21}",
                params=params,
                seed=rng.randrange(2**31),
            )
        )
    return made


async def enqueue_all(path: Path, news: list[NewJob], synchronous: str) -> float:
    async with await SqliteStore.open(path, defaults=OPEN_LIMITS, synchronous=synchronous) as store:
        start = time.perf_counter()
        for new in news:
            await store.enqueue(new)
        return len(news) / (time.perf_counter() - start)


def claimer(path: str, worker: str, claims: int, synchronous: str, go: mp.Event, out: mp.Queue) -> None:
    async def run() -> list[float]:
        latencies = []
        async with await SqliteStore.open(path, synchronous=synchronous) as store:
            await store.version()  # connection warm before the start signal
            go.wait()
            for _ in range(claims):
                start = time.perf_counter()
                claimed = await store.claim(worker, lease_seconds=600)
                latencies.append(time.perf_counter() - start)
                if not claimed:
                    break
        return latencies

    latencies = asyncio.run(run())
    out.put((time.perf_counter(), latencies))


def claim_round(template: Path, folder: Path, claimers: int, claims: int, synchronous: str) -> dict:
    path = folder / f"claims-{claimers}.sqlite3"
    shutil.copy(template, path)
    ctx = mp.get_context("spawn")
    go, out = ctx.Event(), ctx.Queue()
    procs = [
        ctx.Process(
            target=claimer,
            args=(str(path), f"gpu-{k}", claims // claimers, synchronous, go, out),
        )
        for k in range(claimers)
    ]
    for proc in procs:
        proc.start()
    time.sleep(2.0)  # let every process import and open its store
    start = time.perf_counter()
    go.set()
    results = [out.get(timeout=600) for _ in procs]
    for proc in procs:
        proc.join()
        if proc.exitcode != 0:
            raise RuntimeError(f"claimer {proc.name} exited with {proc.exitcode}")
    end = max(finished for finished, _ in results)
    latencies = sorted(x for _, lat in results for x in lat)
    n = len(latencies)
    return {
        "claims": n,
        "claims_per_s": round(n / (end - start)),
        "p50_claim_ms": round(latencies[n // 2] * 1e3, 3),
        "p99_claim_ms": round(latencies[int(n * 0.99)] * 1e3, 3),
        "max_claim_ms": round(latencies[-1] * 1e3, 3),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=100_000)
    parser.add_argument("--guilds", type=int, default=1000)
    parser.add_argument("--claims", type=int, default=20_000, help="claims per round, all claimers")
    parser.add_argument("--synchronous", default="NORMAL", choices=["NORMAL", "FULL"])
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        template = folder / "queue.sqlite3"
        news = jobs(args.jobs, args.guilds, random.Random(args.seed))
        enqueue_per_s = asyncio.run(enqueue_all(template, news, args.synchronous))
        guilds = len({n.guild_id for n in news})
        print(f"enqueued {args.jobs} jobs from {guilds} guilds: {enqueue_per_s:.0f}/s", file=sys.stderr)
        rounds = {}
        for claimers in (1, 4):
            rounds[str(claimers)] = claim_round(
                template, folder, claimers, args.claims, args.synchronous
            )
            print(f"{claimers} claimer(s): {rounds[str(claimers)]}", file=sys.stderr)
    print(
        json.dumps(
            {
                "jobs": args.jobs,
                "guilds": guilds,
                "synchronous": args.synchronous,
                "enqueue_per_s": round(enqueue_per_s),
                "claimers": rounds,
                "sqlite": sqlite3.sqlite_version,
                "python": platform.python_version(),
                "cpus": os.cpu_count(),
            }
        )
    )


if __name__ == "__main__":
    main()
