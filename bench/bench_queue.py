"""Queue benchmark: enqueue and claim throughput, claim latency and wake-up latency, at 100,000 jobs.

    python bench/bench_queue.py [--backend sqlite|postgres] [--jobs 100000] [--guilds 1000]
                                [--claims 20000] [--postgres URL]

Queues ``--jobs`` jobs from ``--guilds`` guilds: the first ``--enqueue-calls``
one ``enqueue`` call at a time (limits checked, as the bot does; that is the
enqueue rate), the rest in bulk. Then, on a fresh copy of that queue for each
claimer count, lets 1, 4 and 16 worker processes claim ``--claims`` jobs in
all as fast as they can, and checks that no job was claimed twice. With
``--backend postgres`` the same runs on SQLite first (the baseline) and then on
a PostgreSQL server (``--postgres``, an admin URL; it creates and drops its
own databases), plus the wake-up latency: from an ``enqueue`` call to a
waiting worker's ``wait_for_change`` returning. Ends with one JSON line.
Targets: no double claims ever; a claim under 10 ms at p99 with 16 claimers.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing as mp
import os
import platform
import random
import secrets
import shutil
import sqlite3
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from db import GuildSettings, NewJob, open_store

OPEN_LIMITS = GuildSettings(
    cooldown_s=0,
    max_queued_per_user=1_000_000,
    max_queued_per_guild=1_000_000,
    gpu_budget_guild_s=0,
    gpu_budget_user_s=0,
)
SHAPES = [(512, 512), (512, 512), (512, 384), (256, 256)]
MODELS = ["vqgan_imagenet_f16_16384", "vqgan_imagenet_f16_16384", "wikiart_16384"]
CLAIMERS = (1, 4, 16)
DEFAULT_POSTGRES = "postgresql://postgres@127.0.0.1:5432/postgres"


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


async def enqueue_all(target: str, news: list[NewJob], calls: int) -> tuple[float, float]:
    """(enqueue calls per second with limits checked, jobs per second in bulk)."""
    async with await open_store(target, defaults=OPEN_LIMITS) as store:
        start = time.perf_counter()
        for new in news[:calls]:
            await store.enqueue(new)
        per_call = calls / (time.perf_counter() - start)
        start = time.perf_counter()
        rest = news[calls:]
        for i in range(0, len(rest), 2000):
            await store.enqueue_many(rest[i : i + 2000], enforce_limits=False)
        bulk = len(rest) / (time.perf_counter() - start) if rest else 0.0
    return per_call, bulk


def claimer(target: str, worker: str, claims: int, options: dict[str, Any], go: Any, out: Any) -> None:
    async def run() -> tuple[list[float], list[int]]:
        latencies, claimed = [], []
        async with await open_store(target, **options) as store:
            await store.version()  # connection warm before the start signal
            go.wait()
            for _ in range(claims):
                start = time.perf_counter()
                got = await store.claim(worker, lease_seconds=600)
                latencies.append(time.perf_counter() - start)
                if not got:
                    break
                claimed += [c.job.id for c in got]
        return latencies, claimed

    latencies, claimed = asyncio.run(run())
    out.put((time.perf_counter(), latencies, claimed))


def claim_round(target: str, claimers: int, claims: int, **options: Any) -> dict[str, Any]:
    ctx = mp.get_context("spawn")
    go, out = ctx.Event(), ctx.Queue()
    procs = [
        ctx.Process(target=claimer, args=(target, f"gpu-{k}", claims // claimers, options, go, out))
        for k in range(claimers)
    ]
    for proc in procs:
        proc.start()
    time.sleep(3.0)  # let every process import and open its store
    start = time.perf_counter()
    go.set()
    results = [out.get(timeout=900) for _ in procs]
    for proc in procs:
        proc.join()
        if proc.exitcode != 0:
            raise RuntimeError(f"claimer {proc.name} exited with {proc.exitcode}")
    end = max(finished for finished, _, _ in results)
    latencies = sorted(x for _, lat, _ in results for x in lat)
    claimed = Counter(job_id for _, _, ids in results for job_id in ids)
    n = len(latencies)
    return {
        "claims": n,
        "double_claims": sum(1 for count in claimed.values() if count > 1),
        "claims_per_s": round(n / (end - start)),
        "p50_claim_ms": round(latencies[n // 2] * 1e3, 3),
        "p99_claim_ms": round(latencies[int(n * 0.99)] * 1e3, 3),
        "max_claim_ms": round(latencies[-1] * 1e3, 3),
    }


def waiter(target: str, wakes: int, ready: Any, out: Any) -> None:
    async def run() -> list[float]:
        woke = []
        async with await open_store(target, poll_interval_s=60.0) as store:
            await store.listen()
            version = await store.version()
            ready.set()
            for _ in range(wakes):
                version = await store.wait_for_change(version, timeout=30)
                woke.append(time.perf_counter())
            out.put(store.wakeups.notified)
        return woke

    out.put(asyncio.run(run()))


def wake_round(target: str, news: list[NewJob]) -> dict[str, Any]:
    """Latency from an enqueue call to a waiting worker (another process) waking up."""
    ctx = mp.get_context("spawn")
    ready, out = ctx.Event(), ctx.Queue()
    proc = ctx.Process(target=waiter, args=(target, len(news), ready, out))
    proc.start()
    ready.wait(60)

    async def send() -> list[tuple[float, float]]:
        sent = []
        async with await open_store(target, defaults=OPEN_LIMITS) as store:
            for new in news:
                await asyncio.sleep(0.05)  # one change per wake-up
                called = time.perf_counter()
                await store.enqueue(new)
                sent.append((called, time.perf_counter()))
        return sent

    sent = asyncio.run(send())
    notified, woke = out.get(timeout=120), out.get(timeout=120)
    proc.join()
    from_call = sorted(w - called for (called, _), w in zip(sent, woke, strict=True))
    calls = sorted(done - called for called, done in sent)
    n = len(from_call)
    return {
        "wakeups": n,
        "by_notification": notified,
        "p50_wake_ms": round(from_call[n // 2] * 1e3, 3),
        "p99_wake_ms": round(from_call[int(n * 0.99)] * 1e3, 3),
        "p50_enqueue_call_ms": round(calls[n // 2] * 1e3, 3),
    }


@contextmanager
def sqlite_copies(folder: Path) -> Iterator[tuple[str, Callable[[int], str]]]:
    template = folder / "queue.sqlite3"

    def copy(k: int) -> str:
        path = folder / f"claims-{k}.sqlite3"
        shutil.copy(template, path)
        return str(path)

    yield str(template), copy


@contextmanager
def postgres_copies(admin: str) -> Iterator[tuple[str, Callable[[int], str]]]:
    import psycopg
    from psycopg import sql

    from db.postgres.connection import with_database

    prefix = f"vqbench_{secrets.token_hex(4)}"
    made = [f"{prefix}_template"]

    def create(name: str, template: str | None = None) -> str:
        with psycopg.connect(admin, autocommit=True) as conn:
            query = sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name))
            if template:
                query = sql.SQL("{} TEMPLATE {}").format(query, sql.Identifier(template))
            conn.execute(query)
        return with_database(admin, name)

    def copy(k: int) -> str:
        made.append(f"{prefix}_{k}")
        return create(made[-1], made[0])

    try:
        yield create(made[0]), copy
    finally:
        with psycopg.connect(admin, autocommit=True) as conn:
            for name in made:
                conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))


def bench(backend: str, copies: Any, news: list[NewJob], args: argparse.Namespace) -> dict[str, Any]:
    with copies as (template, copy):
        per_call, bulk = asyncio.run(enqueue_all(template, news, args.enqueue_calls))
        print(f"{backend}: {per_call:.0f} enqueue calls/s, {bulk:.0f} jobs/s in bulk", file=sys.stderr)
        result: dict[str, Any] = {"enqueue_per_s": round(per_call), "bulk_enqueue_per_s": round(bulk), "claimers": {}}
        for k in CLAIMERS:
            result["claimers"][str(k)] = claim_round(copy(k), k, args.claims)
            print(f"{backend}, {k} claimer(s): {result['claimers'][str(k)]}", file=sys.stderr)
        if backend == "postgres" and args.async_claims:
            result["claimers_async_commit"] = {}
            for k in CLAIMERS:
                figures = claim_round(copy(100 + k), k, args.claims, durable_claims=False)
                result["claimers_async_commit"][str(k)] = figures
                print(f"{backend}, {k} claimer(s), durable_claims=False: {figures}", file=sys.stderr)
        if backend == "postgres":
            result["wake"] = wake_round(template, jobs(args.wakes, 10, random.Random(2)))
            print(f"{backend} wake-ups: {result['wake']}", file=sys.stderr)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backend", default="postgres", choices=["sqlite", "postgres"],
                        help="postgres: SQLite first, then PostgreSQL (default); sqlite: SQLite alone")
    parser.add_argument("--jobs", type=int, default=100_000)
    parser.add_argument("--guilds", type=int, default=1000)
    parser.add_argument("--enqueue-calls", type=int, default=5_000, help="jobs queued one call at a time")
    parser.add_argument("--claims", type=int, default=20_000, help="claims per round, all claimers")
    parser.add_argument("--wakes", type=int, default=200, help="wake-ups timed (PostgreSQL)")
    parser.add_argument("--postgres", default=os.environ.get("VQBOT_TEST_POSTGRES") or DEFAULT_POSTGRES,
                        help="admin URL of the PostgreSQL server")
    parser.add_argument("--async-claims", action="store_true",
                        help="also claim on PostgreSQL with durable_claims=False (commits that don't wait for the disk)")
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()

    news = jobs(args.jobs, args.guilds, random.Random(args.seed))
    figures: dict[str, Any] = {}
    with tempfile.TemporaryDirectory() as tmp:
        figures["sqlite"] = bench("sqlite", sqlite_copies(Path(tmp)), news, args)
    if args.backend == "postgres":
        figures["postgres"] = bench("postgres", postgres_copies(args.postgres), news, args)
    print(
        json.dumps(
            {
                "jobs": args.jobs,
                "guilds": len({n.guild_id for n in news}),
                **figures,
                "sqlite_version": sqlite3.sqlite_version,
                "python": platform.python_version(),
                "cpus": os.cpu_count(),
                "load_before": os.getloadavg()[0],
            }
        )
    )


if __name__ == "__main__":
    main()
