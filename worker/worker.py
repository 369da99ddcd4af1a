"""Claim jobs, run them on the engine in a thread, report progress, finish, fail or hand back.

``run_once`` claims a job and runs it in a batch of its batch key, which queued
jobs of that key join between steps (``worker.top_up``) until none is left, so
tests can drive the worker batch by batch; ``run_forever`` loops over it, waiting
for the store to change while the queue is empty, until ``stop`` is called, which
interrupts the running batch and hands its jobs back to the queue (``release``), each
with a checkpoint of its last step, so that they are picked up again where they were
(``worker.checkpointing``, which also checkpoints running jobs periodically). One batch's run
is a ``worker.batch_run.BatchRun``; what a failure means, ``worker.failures``;
store writes that must not be lost, ``worker.outbox``.
"""

from __future__ import annotations

import asyncio
import contextvars
import logging
import socket
import threading
import time
from collections.abc import Awaitable, Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import partial
from pathlib import Path
from typing import Any, TypeVar

from db import Claim, JobKind, Store
from db.jobs import MAX_BATCH
from engine.runner import Engine
from jobspec import JobParams, ParamError, PromptError, batch_key
from worker import checkpointing
from worker.batch_run import BatchRun, ClaimedJob
from worker.describe_run import run_describe
from worker.failures import policy_for
from worker.outbox import Outbox
from worker.status import WorkerStatus
from worker.waiting import Backoff, Wakeup, first_of, idle_timeout

log = logging.getLogger(__name__)
T = TypeVar("T")

RUN_ALONE: dict[JobKind, Callable[[Worker, Claim], Awaitable[None]]] = {JobKind.DESCRIBE: run_describe}
"""Kinds of job that are short and never batched (each kind's batch key is its own), and how each runs as
it is claimed; every other kind is a picture, stepped in a batch (worker.batch_run)."""


@dataclass(frozen=True)
class WorkerConfig:
    name: str = field(default_factory=lambda: f"{socket.gethostname()}-worker")
    lease_s: float = 120.0
    max_batch: int | None = None  # a cap on jobs per batch; None: as many as fit in memory (Engine.admit)
    progress_every: int = 10  # steps between progress pictures
    progress_min_interval_s: float = 2.0  # and at most one report per job this often
    poll_interval_s: float = 5.0  # an idle worker looks at the queue this often even when no change woke it
    timelapse_dir: Path | None = None
    timelapse_format: str = "webp"
    frames_every: int = 10
    store_retry: Backoff = field(default_factory=Backoff)  # waits between tries of a store write that failed
    unstored_dir: Path | None = None  # finished pictures wait here while the store can't take them
    # Periodic checkpoints of running jobs (worker/checkpointing.py): every this many seconds of a job's
    # work and/or steps, whichever comes first; None (or 0) turns that one off. Clean stops always take one.
    checkpoint_every_s: float | None = checkpointing.DEFAULT_EVERY_S
    checkpoint_every_steps: int | None = None


def device_name(device: Any) -> str | None:
    """The accelerator's name ("NVIDIA H100 80GB HBM3"), "CPU", or None when it can't be told."""
    try:
        import torch

        dev = torch.device(device)
        if dev.type == "cuda":
            return str(torch.cuda.get_device_name(dev))
        if dev.type == "mps":
            return "Apple GPU (MPS)"
        if dev.type == "cpu":
            return "CPU"
    except Exception:  # a driver problem must not stop the worker; /status just says less
        log.debug("no name for device %s", device, exc_info=True)
    return None


class Worker:
    def __init__(self, store: Store, engine: Engine, config: WorkerConfig, *,
                 on_change: Callable[[], Awaitable[None]] | None = None, warm_up: Sequence[JobParams] = ()) -> None:
        """``warm_up``: the job shapes to prepare before taking jobs (the usual ones), or none."""
        self.store = store
        self.engine = engine
        self.config = config
        self.on_change = on_change
        self.warm_up = warm_up
        self._stopping = threading.Event()  # read by the engine thread between steps
        self._wakeup = Wakeup()
        self.idle_waits = 0  # how often the worker waited for the queue (read by tests)
        self.outbox = Outbox(store, config.unstored_dir, config.store_retry, self._stopping)
        self._state = "idle"
        self._held: dict[int, Claim] = {}  # the jobs this worker holds a lease on, by id
        self.resumes = checkpointing.Resumes()  # checkpoints of claimed jobs, until the engine thread adds them
        self._claimed = 0  # jobs claimed since the start
        self._rate: float | None = None  # the last measured speed, kept between batches for /status
        self._rate_at: datetime | None = None
        self._device_name = device_name(engine.device)
        # One thread runs every batch: compiled steps with CUDA graphs keep their graphs and memory
        # pool per thread, so batches hopping between pool threads would each record their own.
        self._engine_thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="vqbot-engine")

    # ---------------------------------------------------------------- control
    def status(self) -> WorkerStatus:
        return WorkerStatus(name=self.config.name, device=str(self.engine.device), state=self._state,
                            steps_per_s=self._rate, jobs=tuple(self._held), device_name=self._device_name,
                            measured_at=self._rate_at)

    def wake(self) -> None:
        """A job was queued: look at the queue now rather than at the next poll."""
        self._wakeup.wake()

    def stop(self) -> None:
        """Stop soon: the running batch is interrupted and its jobs handed back."""
        self._state = "stopping"
        self._stopping.set()
        self._wakeup.wake()
        self.outbox.wake()

    @property
    def stopping(self) -> bool:
        return self._stopping.is_set()

    async def in_engine_thread(self, fn: Callable[..., T], *args: Any) -> T:
        """Run ``fn`` on the engine's own thread, in the caller's context (as asyncio.to_thread would)."""
        context = contextvars.copy_context()
        return await asyncio.get_running_loop().run_in_executor(self._engine_thread, context.run, fn, *args)

    async def _warm_up(self, shapes: Sequence[JobParams]) -> None:
        self._state = "warming up"
        started = time.perf_counter()
        try:
            for params in shapes:
                if self.stopping:
                    break
                log.info("worker %s: preparing %dx%d jobs with %d cutouts before taking any", self.config.name,
                         params.width, params.height, params.cutn)
                await self.in_engine_thread(lambda p=params: self.engine.warm_up(
                    p, limit=self.batch_limit, should_stop=self._stopping.is_set))
            log.info("worker %s: ready after %.0f s", self.config.name, time.perf_counter() - started)
        except Exception:  # a failed warm-up costs speed, not service: real jobs will compile as they come
            log.exception("worker %s: warm-up failed; going on without it", self.config.name)
        if not self.stopping:
            self._state = "idle"

    async def run_forever(self) -> None:
        log.info("worker %s started on %s", self.config.name, self.engine.device)
        if self.warm_up and not self.stopping:
            await self._warm_up(self.warm_up)
        while not self.stopping:
            since: int | None = None
            try:
                since = await self.store.version()  # before the claim: a job queued after it moves the version
                done = await self.run_once()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("worker %s: could not take or run jobs; going on", self.config.name)
                done = 0
            if done == 0 and not self.stopping:
                await self._idle(since)
        self._state = "stopped"
        log.info("worker %s stopped", self.config.name)

    async def _idle(self, since: int | None) -> None:
        """Wait for a job: until the store changes after ``since`` (a job queued by any process wakes
        it at once), ``wake`` or ``stop``, the earliest waiting retry is due (no change marks that:
        ``Store.next_due_in``), or ``poll_interval_s`` (leases to reclaim, a store that failed)."""
        self.idle_waits += 1
        if since is None:
            await self._wakeup.sleep(self.config.poll_interval_s)
            return
        try:
            due_in = await self.store.next_due_in()
        except Exception as exc:  # noqa: BLE001 - the poll interval bounds the wait instead
            log.warning("worker %s: could not tell when the next retry is due (%s)", self.config.name, exc)
            due_in = None
        timeout = idle_timeout(self.config.poll_interval_s, due_in)
        await first_of(self.store.wait_for_change(since, timeout), self._wakeup.sleep())

    # ---------------------------------------------------------------- what batches tell the worker
    async def changed(self) -> None:
        if self.on_change is not None:
            await self.on_change()

    def note_speed(self, steps_per_s: float) -> None:
        self._rate, self._rate_at = steps_per_s, datetime.now(UTC)

    async def charge(self, claims: list[Claim], error: Exception) -> None:
        """End these jobs' attempts with ``error``, as its failure policy says."""
        policy = policy_for(error)
        ids = [claim.job.id for claim in claims]
        log.log(policy.level, "jobs %s: %s: %s", ids, policy.what, error,
                exc_info=error if policy.level >= logging.ERROR else None)
        message = policy.message or str(error)
        for claim in claims:
            await self.outbox.write("record the failure", claim.job.id, partial(
                self.store.fail, claim.job.id, claim.token, error=message, gpu_seconds=0.0, retry=policy.retry,
                count_attempt=policy.counts))
            self.let_go(claim)
        await self.changed()

    # ---------------------------------------------------------------- claims
    @property
    def batch_limit(self) -> int:
        """The most jobs a batch may hold: ``max_batch`` if set, else the most one claim takes
        (memory admission, ``Engine.admit``, decides how many of those fit)."""
        return self.config.max_batch or MAX_BATCH

    def hold(self, claim: Claim) -> None:
        self._held[claim.job.id] = claim

    def let_go(self, claim: Claim) -> None:
        """The claimed attempt has ended here: no more heartbeats for it (a newer claim of the job stays)."""
        if self._held.get(claim.job.id) == claim:
            del self._held[claim.job.id]
        self.resumes.drop(claim)

    async def claim_jobs(self, count: int, *, batch_key: str | None = None) -> list[ClaimedJob]:
        """Claim up to ``count`` jobs fairly (of ``batch_key`` if given; otherwise of the first job's
        key); jobs with unusable parameters fail at once and are not returned."""
        claims = await self.store.claim(self.config.name, lease_seconds=self.config.lease_s, max_jobs=count,
                                        batch_key=batch_key)
        jobs: list[ClaimedJob] = []
        for claim in claims:
            self._claimed += 1
            alone = RUN_ALONE.get(claim.job.kind)
            if alone is not None:
                await alone(self, claim)
                continue
            self.hold(claim)
            try:
                jobs.append((claim, JobParams.from_json(claim.job.params)))
                await checkpointing.fetch(self, claim)
            except (ParamError, PromptError, TypeError) as exc:
                log.warning("job %s: unusable parameters: %s", claim.job.id, exc)
                await self.outbox.write("record the failure", claim.job.id, partial(
                    self.store.fail, claim.job.id, claim.token, error=f"The job's parameters are invalid: {exc}",
                    gpu_seconds=0.0))
                self.let_go(claim)
        if claims:
            await self.changed()
        return jobs

    # ---------------------------------------------------------------- one claim
    async def run_once(self) -> int:
        """Claim a job and run it, in a batch that queued jobs of its batch key join while it runs,
        until no job of that key is left to run; the number of jobs it held (0: queue empty).

        Pictures an earlier run could not store are stored first."""
        if self.stopping:
            return 0
        await self.outbox.store_kept()
        claimed = self._claimed
        jobs = await self.claim_jobs(1)
        if self._claimed == claimed:
            return 0
        heartbeat = asyncio.create_task(self._heartbeat())
        try:
            while jobs:
                if self.stopping:
                    await self._hand_back([claim for claim, _ in jobs])
                    break
                jobs = await self._run_key(jobs)
        finally:
            heartbeat.cancel()
            self._state = "stopping" if self.stopping else "idle"
            await self.changed()
        return self._claimed - claimed

    async def _heartbeat(self) -> None:
        while True:
            await asyncio.sleep(self.config.lease_s / 3)
            for claim in list(self._held.values()):
                try:
                    await self.store.heartbeat(claim.job.id, claim.token, lease_seconds=self.config.lease_s)
                except Exception as exc:  # noqa: BLE001 - the next beat tries again
                    log.warning("job %s: heartbeat not recorded: the database is unavailable (%s)", claim.job.id, exc)

    async def _run_key(self, jobs: list[ClaimedJob]) -> list[ClaimedJob]:
        """Run jobs of one batch key in a batch as large as memory admission allows, filled up from
        the queue first; returns the jobs claimed for it that it ended without (to run next)."""
        params = jobs[0][1]
        try:
            capacity = await self.in_engine_thread(self.engine.admit, params, self.batch_limit)
        except Exception as exc:  # noqa: BLE001 - judged by its type (worker/failures.py)
            await self.charge([claim for claim, _ in jobs], exc)
            return []
        key = batch_key(params)
        if len(jobs) < capacity:
            jobs = jobs + await self.claim_jobs(capacity - len(jobs), batch_key=key)
        now, later = jobs[:capacity], jobs[capacity:]
        return later + await self._run_batch(now, key=key, capacity=capacity)

    async def _run_batch(self, jobs: list[ClaimedJob], *, key: str, capacity: int,
                         top_up: bool = True) -> list[ClaimedJob]:
        """Run one batch; if the engine crashes it, find the job that causes it before charging anyone.
        Returns the jobs claimed to join it that came after it ended."""
        self._state = "running"
        run = BatchRun(self, jobs, key=key, capacity=capacity, top_up=top_up)
        crash = await run.run()
        if crash is None:
            return run.leftovers
        suspects = crash.unfinished
        if not (policy_for(crash.error).isolate and len(run.jobs) > 1 and len(suspects) > 0):
            await self.charge([claim for claim, _ in suspects], crash.error)
            return run.leftovers
        log.warning("jobs %s: their batch of %d crashed (%s); running each alone to find the job that causes it",
                    [claim.job.id for claim, _ in suspects], len(run.jobs), crash.error, exc_info=crash.error)
        crash.error.__traceback__ = None  # its frames hold the crashed batch's tensors
        for i, suspect in enumerate(suspects):
            if self.stopping:
                await self._hand_back([claim for claim, _ in suspects[i:]])
                break
            await self._run_batch([suspect], key=key, capacity=1, top_up=False)
        return run.leftovers

    async def _hand_back(self, claims: list[Claim]) -> None:
        for claim in claims:
            await self.outbox.write("hand the job back", claim.job.id, partial(self.store.release, claim.job.id,
                                                                               claim.token))
            self.let_go(claim)
            log.info("job %s: handed back before it ran (worker stopping)", claim.job.id)
        await self.changed()
