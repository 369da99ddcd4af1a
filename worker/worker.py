"""Claim jobs, run them on the engine in a thread, report progress, finish, fail or hand back.

``run_once`` claims one batch (jobs of one shape) and runs it to the end, so
tests can drive the worker step by step; ``run_forever`` loops over it until
``stop`` is called, which interrupts the running batch and hands its jobs back
to the queue (``release``) so that they are picked up again.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import logging
import socket
import threading
import time
from collections import defaultdict
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from db import Claim, Store
from engine.images import ImageInputError
from engine.runner import Engine, Progress, Result
from jobspec import JobParams, ParamError, PromptError
from worker.status import WorkerStatus

log = logging.getLogger(__name__)

USER_ERRORS = (ImageInputError, ParamError, PromptError)
REPORT_TIMEOUT_S = 60.0


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


def batch_key(params: JobParams) -> tuple[Any, ...]:
    """What must be equal for jobs to share one ``Engine.run``."""
    return (params.model, params.clip_model, params.clip_pretrained, params.width, params.height, params.cutn,
            bool(params.extra.get("timelapse")))


class Worker:
    def __init__(self, store: Store, engine: Engine, config: WorkerConfig, *,
                 on_change: Callable[[], Awaitable[None]] | None = None, warm_up: JobParams | None = None) -> None:
        """``warm_up``: a job shape to compile before taking jobs (the usual one), or None."""
        self.store = store
        self.engine = engine
        self.config = config
        self.on_change = on_change
        self.warm_up = warm_up
        self._stopping = threading.Event()
        self._wake = asyncio.Event()
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
        self._wake.set()

    def stop(self) -> None:
        """Stop soon: the running batch is interrupted and its jobs handed back."""
        self._state = "stopping"
        self._stopping.set()
        self._wake.set()

    async def _in_engine_thread(self, fn: Callable[..., Any], *args: Any) -> Any:
        """Run ``fn`` on the engine's own thread, in the caller's context (as asyncio.to_thread would)."""
        context = contextvars.copy_context()
        return await asyncio.get_running_loop().run_in_executor(self._engine_thread, context.run, fn, *args)

    async def _warm_up(self, params: JobParams) -> None:
        self._state = "warming up"
        log.info("worker %s: preparing %dx%d jobs with %d cutouts before taking any", self.config.name,
                 params.width, params.height, params.cutn)
        try:
            seconds = await self._in_engine_thread(
                lambda: self.engine.warm_up(params, is_cancelled=lambda _: self._stopping.is_set()))
            log.info("worker %s: ready after %.0f s", self.config.name, seconds)
        except Exception:  # a failed warm-up costs speed, not service: real jobs will compile as they come
            log.exception("worker %s: warm-up failed; going on without it", self.config.name)
        if not self._stopping.is_set():
            self._state = "idle"

    async def run_forever(self) -> None:
        log.info("worker %s started on %s", self.config.name, self.engine.device)
        if self.warm_up is not None and not self._stopping.is_set():
            await self._warm_up(self.warm_up)
        while not self._stopping.is_set():
            try:
                done = await self.run_once()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("worker %s: batch failed; going on", self.config.name)
                done = 0
            if done == 0 and not self._stopping.is_set():
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), timeout=self.config.poll_interval_s)
                self._wake.clear()
        self._state = "stopped"
        log.info("worker %s stopped", self.config.name)

    async def _changed(self) -> None:
        if self.on_change is not None:
            await self.on_change()

    # ---------------------------------------------------------------- one batch
    async def run_once(self) -> int:
        """Claim a batch and run it to the end; the number of jobs it held (0: queue empty)."""
        if self._stopping.is_set():
            return 0
        claims = await self.store.claim(self.config.name, lease_seconds=self.config.lease_s,
                                        max_jobs=self.config.max_batch)
        if not claims:
            return 0
        await self._changed()
        groups: dict[tuple[Any, ...], list[tuple[Claim, JobParams]]] = defaultdict(list)
        for claim in claims:
            try:
                params = JobParams.from_json(claim.job.params)
            except (ParamError, PromptError, TypeError) as exc:
                log.warning("job %s: unusable parameters: %s", claim.job.id, exc)
                await self.store.fail(claim.job.id, claim.token, error=f"The job's parameters are invalid: {exc}",
                                      gpu_seconds=0.0)
                continue
            groups[batch_key(params)].append((claim, params))
        heartbeat = asyncio.create_task(self._heartbeat(list(claims)))
        try:
            for group in groups.values():
                await self._run_group(group)
        finally:
            heartbeat.cancel()
            self._state, self._jobs = ("stopping" if self._stopping.is_set() else "idle"), ()
            await self._changed()
        return len(claims)

    async def _heartbeat(self, claims: list[Claim]) -> None:
        while True:
            await asyncio.sleep(self.config.lease_s / 3)
            for claim in claims:
                try:
                    await self.store.heartbeat(claim.job.id, claim.token, lease_seconds=self.config.lease_s)
                except Exception:
                    log.exception("job %s: heartbeat failed", claim.job.id)

    async def _run_group(self, group: list[tuple[Claim, JobParams]]) -> None:
        loop = asyncio.get_running_loop()
        by_id = {claim.job.id: claim for claim, _ in group}
        cancelled: set[int] = set()
        lost: set[int] = set()
        last_report: dict[int, float] = {}
        ended: set[int] = set()
        self._state, self._jobs = "running", tuple(by_id)
        timelapse = bool(group[0][1].extra.get("timelapse")) and self.config.timelapse_dir is not None
        log.info("jobs %s: starting a batch of %d", list(by_id), len(by_id))

        def call(coro: Awaitable[Any]) -> Any:  # from the engine thread onto the loop, and wait
            return asyncio.run_coroutine_threadsafe(coro, loop).result(timeout=REPORT_TIMEOUT_S)  # type: ignore[arg-type]

        def wants_progress(key: Any, now: float | None = None) -> bool:
            """The time gate; the engine asks it first, so it encodes only previews we keep."""
            now = time.monotonic() if now is None else now
            return now - last_report.get(int(key), float("-inf")) >= self.config.progress_min_interval_s

        def on_progress(progress: Progress) -> None:
            now = time.monotonic()
            job_id = int(progress.key)  # type: ignore[call-overload]
            if progress.steps_per_s:
                self._rate, self._rate_at = progress.steps_per_s, datetime.now(UTC)
            if not wants_progress(job_id, now):
                return
            last_report[job_id] = now
            try:
                call(self._report(by_id[job_id], progress, cancelled, lost))
            except Exception:
                log.exception("job %s: progress not recorded", job_id)

        def is_cancelled(key: Any) -> bool:
            return self._stopping.is_set() or key in cancelled or key in lost

        def run_batch() -> None:
            results = self.engine.run(
                [(claim.job.id, params) for claim, params in group],
                on_progress=on_progress, progress_every=self.config.progress_every, is_cancelled=is_cancelled,
                progress_filter=wants_progress, frames_every=self.config.frames_every if timelapse else 0,
                timelapse_format=self.config.timelapse_format if timelapse else None,
            )
            for result in results:
                ended.add(int(result.key))  # type: ignore[call-overload]
                call(self._end(by_id[int(result.key)], result, len(group), cancelled, lost))  # type: ignore[call-overload]

        try:
            await self._in_engine_thread(run_batch)
        except Exception as exc:  # noqa: BLE001 - every engine failure ends the batch's jobs with a reason
            await self._fail_rest([by_id[i] for i in by_id if i not in ended], exc)

    async def _report(self, claim: Claim, progress: Progress, cancelled: set[int], lost: set[int]) -> None:
        ack = await self.store.report_progress(
            claim.job.id, claim.token, step=progress.step, preview=progress.preview,
            steps_per_s=progress.steps_per_s, lease_seconds=self.config.lease_s)
        if not ack:
            log.warning("job %s: lease lost; stopping it", claim.job.id)
            lost.add(claim.job.id)
        elif ack.cancel:
            log.info("job %s: cancel requested at step %d", claim.job.id, progress.step)
            cancelled.add(claim.job.id)
        await self._changed()

    async def _end(self, claim: Claim, result: Result, batch: int, cancelled: set[int], lost: set[int]) -> None:
        job_id, token = claim.job.id, claim.token
        gpu_s = result.seconds / batch
        if job_id in lost:
            log.info("job %s: result dropped (lease lost)", job_id)
        elif result.cancelled and job_id not in cancelled and not await self.store.cancel_requested(job_id):
            await self.store.release(job_id, token)  # interrupted by shutdown: run it again later
            log.info("job %s: handed back at step %d (worker stopping)", job_id, result.steps_done)
        elif result.cancelled:
            await self.store.confirm_cancelled(job_id, token, gpu_seconds=gpu_s)
            log.info("job %s: cancelled at step %d", job_id, result.steps_done)
        else:
            if result.timelapse is not None and self.config.timelapse_dir is not None:
                self.config.timelapse_dir.mkdir(parents=True, exist_ok=True)
                (self.config.timelapse_dir / f"{job_id}.{self.config.timelapse_format}").write_bytes(result.timelapse)
            await self.store.finish(job_id, token, result_png=result.png, gpu_seconds=gpu_s)
            log.info("job %s: finished, %d steps in %.1f s (loss %.3f)", job_id, result.steps_done,
                     result.seconds, result.loss)
        await self._changed()

    async def _fail_rest(self, claims: list[Claim], exc: Exception) -> None:
        ids = [c.job.id for c in claims]
        if isinstance(exc, USER_ERRORS):
            error, retry = str(exc), False
            log.warning("jobs %s: refused by the engine: %s", ids, exc)
        elif type(exc).__name__ == "InsufficientMemoryError":  # the admission check: other work holds the GPU
            error, retry = str(exc), True
            log.warning("jobs %s: not enough free GPU memory now; back to the queue", ids)
        elif type(exc).__name__ == "OutOfMemoryError":
            error, retry = "The GPU ran out of memory; try a smaller size or fewer cutouts.", False
            log.error("jobs %s: out of GPU memory", ids)
        else:
            error, retry = "The picture could not be made because of an internal error.", True
            log.error("jobs %s: engine failed", ids, exc_info=exc)
        for claim in claims:
            await self.store.fail(claim.job.id, claim.token, error=error, gpu_seconds=0.0, retry=retry)
        await self._changed()
