"""One fault run: a queue file, jobs as the bot queues them, worker processes in slots, and waiting for moments.

Waits are on the store's change feed (``wait_for_change``), each bounded by ``HANG_GUARD_S``: a run that
stops making progress fails with the workers' logs instead of blocking the suite; no wait is a measurement.
"""

from __future__ import annotations

import sqlite3
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from db import Job, JobState, NewJob, SqliteStore
from tests.faults.injection import KillPoint
from tests.faults.ledger import Poster
from tests.faults.workers import WorkerProcess, WorkerSpec, worker_env
from tests.worker.engine_fixtures import TinyModels

GUILD, CHANNEL, USER = 1001, 2002, 3003
STEPS = 20  # per job: a report at step 10 (the worker's progress_every), done at 20
HANG_GUARD_S = 120.0
WATCH_S = 0.5  # how long one wait for a change lasts before the processes are looked at again


def job_params(models: TinyModels, seed: int) -> dict:
    """A 32x32 job of 20 steps with 2 cutouts on the tiny models (standing in for the default VQGAN, which
    the worker loads at its start): about as cheap as a real job gets."""
    from jobspec import JobParams, parse_prompts

    return JobParams(prompts=parse_prompts(f"a small cat number {seed}"), width=32, height=32, steps=STEPS, cutn=2,
                     seed=seed, clip_model=models.clip_model, clip_pretrained="").to_json()


@dataclass
class FaultRun:
    root: Path
    models: TinyModels
    store: SqliteStore
    poster: Poster
    workers: dict[str, WorkerProcess] = field(default_factory=dict)  # slot -> its current process
    ended: list[WorkerProcess] = field(default_factory=list)
    kills: Counter[str] = field(default_factory=Counter)
    clean_stops: int = 0
    queued_jobs: int = 0
    _started: Counter[str] = field(default_factory=Counter)
    _version: int = 0
    jobs: dict[int, Job] = field(default_factory=dict)  # the newest row of every job seen

    @classmethod
    async def open(cls, root: Path, models: TinyModels) -> FaultRun:
        store = await SqliteStore.open(root / "data" / "vqbot.sqlite3")
        run = cls(root, models, store, Poster(store))
        run._version = await store.version()
        return run

    @property
    def database(self) -> Path:
        return self.root / "data" / "vqbot.sqlite3"

    async def close(self) -> None:
        for worker in self.workers.values():
            worker.kill()
        await self.store.close()

    # ---------------------------------------------------------------- jobs
    async def enqueue(self, count: int) -> None:
        news = [NewJob(GUILD, CHANNEL, USER + i % 3, f"a small cat number {self.queued_jobs + i}",
                       job_params(self.models, self.queued_jobs + i), seed=self.queued_jobs + i, max_attempts=20)
                for i in range(count)]
        for job in await self.store.enqueue_many(news, enforce_limits=False):
            self.jobs[job.id] = job
        self.queued_jobs += count

    async def refresh(self) -> None:
        for job in await self.store.changed_since(self._version, limit=1000):
            self.jobs[job.id] = job
            self._version = max(self._version, job.version)

    async def final_jobs(self) -> list[Job]:
        """Every job's row as the store has it now, by id."""
        jobs = [await self.store.get(job_id) for job_id in sorted(self.jobs)]
        assert None not in jobs
        return [job for job in jobs if job is not None]

    def queued(self) -> int:
        return sum(job.state is JobState.QUEUED for job in self.jobs.values())

    def running_on(self, worker: str, at_least_step: int) -> list[Job]:
        return [job for job in self.jobs.values()
                if job.state is JobState.RUNNING and job.worker == worker and job.step >= at_least_step]

    def succeeded_undelivered(self) -> list[Job]:
        return [job for job in self.jobs.values() if job.state is JobState.SUCCEEDED and not job.delivered]

    # ---------------------------------------------------------------- workers
    def start(self, slot: str, kill_point: KillPoint | None = None, *, disk_full_at_step: int | None = None,
              **env: str) -> WorkerProcess:
        self._started[slot] += 1
        name = f"{slot}{self._started[slot]}"
        spec = WorkerSpec(name, self.root, worker_env(self.root, self.models, name, **env), kill_point,
                          disk_full_at_step=disk_full_at_step)
        self.workers[slot] = worker = WorkerProcess(spec)
        return worker

    async def kill(self, slot: str, moment: str) -> WorkerProcess:
        """SIGKILL the slot's worker (or note that it killed itself at its kill point), then let its lease run out."""
        worker = self.workers.pop(slot)
        if worker.alive:
            worker.kill()
        else:
            worker.reap()
        assert worker.process.exitcode == -9, (worker.name, worker.process.exitcode, worker.log_text()[-3000:])
        self.kills[moment] += 1
        self.ended.append(worker)
        await self.lease_runs_out(worker.name)
        return worker

    async def stop(self, slot: str) -> int:
        worker = self.workers.pop(slot)
        status = await worker.stop()
        self.ended.append(worker)
        self.clean_stops += 1
        return status

    async def lease_runs_out(self, worker: str) -> int:
        """Stands in for VQBOT_LEASE_S (15 s) passing after ``worker`` died: its leases, and no live worker's,
        end now; the store then takes its jobs back as the next claim would (``reclaim_expired``)."""
        with sqlite3.connect(self.database) as conn:
            conn.execute("UPDATE jobs SET lease_expires_at = 0 WHERE lease_owner = ?", (worker,))
        conn.close()
        return await self.store.reclaim_expired()

    # ---------------------------------------------------------------- waiting
    async def until(self, moment: Callable[[], object], what: str) -> object:
        """Wait on the store's change feed until ``moment()`` is true (its value is returned). Every worker
        without a kill point must stay alive meanwhile."""
        deadline = time.monotonic() + HANG_GUARD_S
        while True:
            await self.refresh()
            if found := moment():
                return found
            dead = [w.name for w in self.workers.values() if not w.alive and w.spec.kill_point is None]
            assert not dead, f"{dead} ended while waiting for {what}\n{self.log_tails()}"
            if time.monotonic() > deadline:
                raise AssertionError(f"hang guard: no {what} within {HANG_GUARD_S:.0f} s\n{self.log_tails()}")
            await self.store.wait_for_change(self._version, WATCH_S)

    def log_tails(self) -> str:
        return "\n".join(f"--- {w.name} ({w.how_it_ended})\n{w.log_text()[-2000:]}"
                         for w in [*self.ended, *self.workers.values()])
