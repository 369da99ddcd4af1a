"""Claim jobs, run them on the engine in a thread, report progress, finish, fail or hand back.

``run_once`` claims one batch (jobs of one shape) and runs it to the end, so
tests can drive the worker step by step; ``run_forever`` loops over it until
``stop`` is called, which interrupts the running batch and hands its jobs back
to the queue (``release``) so that they are picked up again. One batch's run
is a ``worker.batch_run.BatchRun``; what a failure means, ``worker.failures``;
store writes that must not be lost, ``worker.outbox``.
"""

from __future__ import annotations

import asyncio
import contextvars
import logging
import socket
import threading
from collections import defaultdict
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import partial
from pathlib import Path
from typing import Any, TypeVar

from db import Claim, Store
from engine.runner import Engine, batch_shape
from jobspec import JobParams, ParamError, PromptError
from worker.batch_run import BatchRun, ClaimedJob
from worker.describe_run import run_describe_jobs
from worker.failures import policy_for
from worker.outbox import Outbox
from worker.status import WorkerStatus
from worker.waiting import Backoff, Wakeup

log = logging.getLogger(__name__)
T = TypeVar("T")


@dataclass(frozen=True)
class WorkerConfig:
    name: str = field(default_factory=lambda: f"{socket.gethostname()}-worker")
    lease_s: float = 120.0
    max_batch: int = 4
    progress_every: int = 10  # steps between progress pictures
    progress_min_interval_s: float = 2.0  # and at most one report per job this often
    poll_interval_s: float = 5.0
    timelapse_dir: Path | None = None
    timelapse_format: str = "webp"
    frames_every: int = 10
    store_retry: Backoff = field(default_factory=Backoff)  # waits between tries of a store write that failed
    unstored_dir: Path | None = None  # finished pictures wait here while the store can't take them


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
                 on_change: Callable[[], Awaitable[None]] | None = None, warm_up: JobParams | None = None) -> None:
        """``warm_up``: a job shape to compile before taking jobs (the usual one), or None."""
        self.store = store
        self.engine = engine
        self.config = config
        self.on_change = on_change
        self.warm_up = warm_up
        self._stopping = threading.Event()  # read by the engine thread between steps
        self._wakeup = Wakeup()
        self.outbox = Outbox(store, config.unstored_dir, config.store_retry, self._stopping)
        self._state = "idle"
        self._jobs: tuple[int, ...] = ()
        self._rate: float | None = None  # the last measured speed, kept between batches for /status
        self._rate_at: datetime | None = None
        self._device_name = device_name(engine.device)
        # One thread runs every batch: compiled steps with CUDA graphs keep their graphs and memory
        # pool per thread, so batches hopping between pool threads would each record their own.
        self._engine_thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="vqbot-engine")

    # ---------------------------------------------------------------- control
    def status(self) -> WorkerStatus:
        return WorkerStatus(name=self.config.name, device=str(self.engine.device), state=self._state,
                            steps_per_s=self._rate, jobs=self._jobs, device_name=self._device_name,
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

    async def _warm_up(self, params: JobParams) -> None:
        self._state = "warming up"
        log.info("worker %s: preparing %dx%d jobs with %d cutouts before taking any", self.config.name,
                 params.width, params.height, params.cutn)
        try:
            seconds = await self.in_engine_thread(lambda: self.engine.warm_up(params, should_stop=self._stopping.is_set))
            log.info("worker %s: ready after %.0f s", self.config.name, seconds)
        except Exception:  # a failed warm-up costs speed, not service: real jobs will compile as they come
            log.exception("worker %s: warm-up failed; going on without it", self.config.name)
        if not self.stopping:
            self._state = "idle"

    async def run_forever(self) -> None:
        log.info("worker %s started on %s", self.config.name, self.engine.device)
        if self.warm_up is not None and not self.stopping:
            await self._warm_up(self.warm_up)
        while not self.stopping:
            try:
                done = await self.run_once()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("worker %s: could not take or run jobs; going on", self.config.name)
                done = 0
            if done == 0 and not self.stopping:
                await self._wakeup.sleep(self.config.poll_interval_s)
        self._state = "stopped"
        log.info("worker %s stopped", self.config.name)

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
        await self.changed()

    # ---------------------------------------------------------------- one claim
    async def run_once(self) -> int:
        """Claim a batch and run it to the end; the number of jobs it held (0: queue empty).

        Pictures an earlier run could not store are stored first."""
        if self.stopping:
            return 0
        await self.outbox.store_kept()
        claims = await self.store.claim(self.config.name, lease_seconds=self.config.lease_s,
                                        max_jobs=self.config.max_batch)
        if not claims:
            return 0
        await self.changed()
        heartbeat = asyncio.create_task(self._heartbeat(list(claims)))
        try:
            pictures = await run_describe_jobs(self, claims)  # each alone, before the pictures
            for group in (await self._by_batch_key(pictures)).values():
                await self._run_group(group)
        finally:
            heartbeat.cancel()
            self._state, self._jobs = ("stopping" if self.stopping else "idle"), ()
            await self.changed()
        return len(claims)

    async def _by_batch_key(self, claims: list[Claim]) -> dict[tuple[Any, ...], list[ClaimedJob]]:
        """The claimed jobs by what they must share to run together; jobs with unusable parameters fail."""
        groups: dict[tuple[Any, ...], list[ClaimedJob]] = defaultdict(list)
        for claim in claims:
            try:
                params = JobParams.from_json(claim.job.params)
            except (ParamError, PromptError, TypeError) as exc:
                log.warning("job %s: unusable parameters: %s", claim.job.id, exc)
                await self.outbox.write("record the failure", claim.job.id, partial(
                    self.store.fail, claim.job.id, claim.token, error=f"The job's parameters are invalid: {exc}",
                    gpu_seconds=0.0))
                continue
            groups[batch_shape(params)].append((claim, params))
        return groups

    async def _heartbeat(self, claims: list[Claim]) -> None:
        while True:
            await asyncio.sleep(self.config.lease_s / 3)
            for claim in claims:
                try:
                    await self.store.heartbeat(claim.job.id, claim.token, lease_seconds=self.config.lease_s)
                except Exception as exc:  # noqa: BLE001 - the next beat tries again
                    log.warning("job %s: heartbeat not recorded: the database is unavailable (%s)", claim.job.id, exc)

    async def _run_group(self, group: list[ClaimedJob]) -> None:
        """Jobs of one batch key, in turns of as many as fit in the GPU's memory."""
        try:
            fits = await self.in_engine_thread(self.engine.admit, group[0][1], len(group))
        except Exception as exc:  # noqa: BLE001 - judged by its type (worker/failures.py)
            await self.charge([claim for claim, _ in group], exc)
            return
        for start in range(0, len(group), fits):
            await self._run_batch(group[start:start + fits])

    async def _run_batch(self, jobs: list[ClaimedJob]) -> None:
        """Run one batch; if the engine crashes it, find the job that causes it before charging anyone."""
        self._state, self._jobs = "running", tuple(claim.job.id for claim, _ in jobs)
        crash = await BatchRun(self, jobs).run()
        if crash is None:
            return
        suspects = crash.unfinished
        if not (policy_for(crash.error).isolate and len(jobs) > 1 and len(suspects) > 0):
            await self.charge([claim for claim, _ in suspects], crash.error)
            return
        log.warning("jobs %s: their batch of %d crashed (%s); running each alone to find the job that causes it",
                    [claim.job.id for claim, _ in suspects], len(jobs), crash.error, exc_info=crash.error)
        crash.error.__traceback__ = None  # its frames hold the crashed batch's tensors
        for i, suspect in enumerate(suspects):
            if self.stopping:
                await self._hand_back([claim for claim, _ in suspects[i:]])
                return
            await self._run_batch([suspect])

    async def _hand_back(self, claims: list[Claim]) -> None:
        for claim in claims:
            await self.outbox.write("hand the job back", claim.job.id, partial(self.store.release, claim.job.id,
                                                                               claim.token))
            log.info("job %s: handed back before it ran (worker stopping)", claim.job.id)
        await self.changed()
