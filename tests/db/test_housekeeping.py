"""Housekeeping: old previews, delivered results, ended jobs' checkpoints and unused uploads go, on a schedule."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from pathlib import Path

import pytest

from db import FakeClock, Store
from db.clock import to_epoch
from tests.db.conftest import OpenStore
from tests.db.factories import PNG, new_job
from worker.housekeeping import DAY_S, Housekeeping, HousekeepingConfig

HASH_A, HASH_B, HASH_C = "a" * 64, "b" * 64, "c" * 64


def upload(folder: Path, name: str, clock: FakeClock, *, age_s: float) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    path.write_bytes(b"picture")
    at = to_epoch(clock.now()) - age_s
    os.utime(path, (at, at))
    return path


async def finished(store: Store, **params: object) -> int:
    job = await store.enqueue(new_job(**params))
    (claim,) = await store.claim("gpu-0", lease_seconds=30)
    assert await store.report_progress(job.id, claim.token, step=50, preview=b"webp")
    assert await store.finish(job.id, claim.token, result_png=PNG, gpu_seconds=1)
    return job.id


async def test_delivered_results_go_after_the_retention_and_previews_after_an_hour(
    store: Store, clock: FakeClock
) -> None:
    keeper = Housekeeping(store, HousekeepingConfig(keep_results_days=30), clock=clock)
    delivered, undelivered = await finished(store), await finished(store)
    assert await store.mark_delivered(delivered)
    clock.advance(3601)
    done = await keeper.run_once()
    assert (done.previews, done.results) == (2, 0)
    assert await store.preview(delivered) is None and await store.result(delivered) == PNG
    clock.advance(30 * DAY_S)
    assert (await keeper.run_once()).results == 1
    assert await store.result(delivered) is None
    assert await store.result(undelivered) == PNG  # not posted yet: never deleted


async def test_results_are_kept_for_ever_with_a_retention_of_zero(store: Store, clock: FakeClock) -> None:
    job = await finished(store)
    assert await store.mark_delivered(job)
    clock.advance(3650 * DAY_S)
    assert (await Housekeeping(store, HousekeepingConfig(keep_results_days=0), clock=clock).run_once()).results == 0
    assert await store.result(job) == PNG


async def test_uploads_no_job_refers_to_go_and_the_others_stay(
    store: Store, clock: FakeClock, tmp_path: Path
) -> None:
    folder = tmp_path / "attachments"
    used_by_queued = upload(folder, f"{HASH_A}.png", clock, age_s=7200)
    used_by_recent = upload(folder, f"{HASH_B}.jpg", clock, age_s=7200)
    unused = upload(folder, f"{HASH_C}.webp", clock, age_s=7200)
    torn = upload(folder, f"{HASH_C}.part", clock, age_s=7200)
    fresh = upload(folder, f"{'d' * 64}.png", clock, age_s=60)  # saved a minute ago: its job may be on its way
    operator = upload(folder, "notes.txt", clock, age_s=10 * DAY_S)  # not named as uploads are
    await finished(store, image_prompts=[{"text": f"data/attachments/{used_by_recent.name}", "weight": 1.0}])
    await store.enqueue(new_job(init_image=str(used_by_queued)))
    keeper = Housekeeping(store, HousekeepingConfig(uploads_dir=folder, keep_uploads_days=30), clock=clock)
    done = await keeper.run_once()
    assert (done.uploads, done.kept_uploads) == (2, 2)
    assert sorted(p.name for p in folder.iterdir()) == sorted(
        p.name for p in (used_by_queued, used_by_recent, fresh, operator))
    assert not unused.exists() and not torn.exists()
    clock.advance(31 * DAY_S)  # the finished job's retention is over; the queued job still waits
    assert (await keeper.run_once()).uploads == 2
    assert used_by_queued.exists() and not used_by_recent.exists() and operator.exists()


async def test_a_missing_uploads_folder_is_no_error(store: Store, clock: FakeClock, tmp_path: Path) -> None:
    keeper = Housekeeping(store, HousekeepingConfig(uploads_dir=tmp_path / "none yet"), clock=clock)
    assert (await keeper.run_once()).uploads == 0


class Ticks:
    """A sleep that returns at once, counting the waits; sets ``stop`` after ``rounds`` of them."""

    def __init__(self, stop: asyncio.Event, rounds: int) -> None:
        self.stop, self.rounds, self.waits = stop, rounds, []

    async def __call__(self, seconds: float) -> None:
        self.waits.append(seconds)
        if len(self.waits) >= self.rounds:
            self.stop.set()


async def test_rounds_come_every_prune_interval_until_stopped(store: Store, clock: FakeClock) -> None:
    stop = asyncio.Event()
    ticks = Ticks(stop, rounds=3)
    keeper = Housekeeping(store, HousekeepingConfig(every_s=900), clock=clock, sleep=ticks)
    await keeper.run_forever(stop)
    assert ticks.waits == [900, 900, 900] and keeper.rounds == 3


async def test_a_failed_round_is_logged_and_the_next_one_comes(
    open_store: OpenStore, clock: FakeClock, caplog: pytest.LogCaptureFixture
) -> None:
    gone = await open_store()
    await gone.close()  # every call fails now, as on a database that went away
    stop = asyncio.Event()
    keeper = Housekeeping(gone, HousekeepingConfig(every_s=60), clock=clock, sleep=Ticks(stop, rounds=2))
    await keeper.run_forever(stop)
    assert keeper.failed_rounds == 2 and keeper.rounds == 0
    assert "housekeeping round failed" in caplog.text


def test_housekeeping_loads_neither_torch_nor_the_engine() -> None:
    """A bot without a worker (`vqbot run --no-worker`) runs it where no GPU stack is installed."""
    code = ("import sys, worker.housekeeping; "
            "bad = sorted(m for m in sys.modules if m == 'torch' or m.startswith(('torch.', 'engine'))); "
            "print(bad); sys.exit(1 if bad else 0)")
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert run.returncode == 0, run.stdout + run.stderr
