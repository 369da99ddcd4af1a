"""One batch of claimed jobs on the engine: the engine thread steps it, the event loop talks to the store.

The two meet only in the ``Handoff``. The engine thread posts what happened (``Progress``, ``Finished``,
``Stopped``, ``Refused``, ``Checkpoint``, ``Unusable``) and never waits for the database; between steps it reads
which jobs must stop and which joined. The event loop writes the news to the store in order,
keeping only the newest progress of each job when the store is slower than the engine, posts the
stops it learns from the store (a cancel request, a lost lease), and tops the batch up: while it
has room, queued jobs of its batch key are claimed (``worker.top_up``) and handed to the engine
thread, which adds them before its next step. The batch ends when it is empty; jobs claimed for
it that came too late to join are returned to the worker (``BatchRun.leftovers``). Checkpoints (resume,
periodic, at a clean stop): ``worker.checkpointing``.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Hashable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import TYPE_CHECKING, TypeVar, cast

from engine.images import preview_bytes, timelapse_bytes
from engine.optimiser import Step
from engine.runner import Batch, timelapse_frame
from worker import checkpointing
from worker.checkpointing import Checkpoint, Checkpointer, Unusable
from worker.engine_time import EngineTime
from worker.handoff import (
    ENDINGS,
    ClaimedJob,
    Finished,
    Handoff,
    Progress,
    Refused,
    Stopped,
    StopReason,
)
from worker.outbox import Picture
from worker.top_up import top_up
from worker.waiting import Wakeup

if TYPE_CHECKING:
    import torch

    from worker.worker import Worker

__all__ = ["BatchRun", "ClaimedJob", "Crash"]
T = TypeVar("T")

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Crash:
    """How a batch ended early: the error, and the jobs it left without an ending."""

    error: Exception
    unfinished: list[ClaimedJob]


class BatchRun:
    """One batch from its first step to the last job's ending in the store: ``await BatchRun(...).run()``.

    ``capacity``: how many jobs it may hold at once (memory admission); with ``top_up``, queued jobs
    of its ``key`` join it between steps while it has room."""

    def __init__(self, worker: Worker, jobs: list[ClaimedJob], *, key: str, capacity: int,
                 top_up: bool = True) -> None:
        self.worker, self.config, self.store = worker, worker.config, worker.store
        self.key, self.capacity, self.top_up = key, capacity, top_up
        self._initial = tuple(jobs)  # read by the engine thread; joiners come through the handoff
        # event loop only:
        self.jobs = {claim.job.id: (claim, params) for claim, params in jobs}  # all it held, joiners included
        self.claims = {claim.job.id: claim for claim, _ in jobs}  # the attempt whose news are written
        self.handoff = Handoff(asyncio.get_running_loop())
        self.leftovers: list[ClaimedJob] = []  # claimed to join, but the batch had ended: the worker runs them
        self._members = set(self.claims)  # handed to the engine thread, no ending written yet
        # Claimed again (a new attempt, its lease lost here and reclaimed) while the old attempt is still
        # in the batch: it joins once the old one's ending is written.
        self._rejoin: dict[int, ClaimedJob] = {}
        self._room = Wakeup()  # a job ended, or the batch did
        self._closing = False
        self._timelapse: set[int] = set()
        self._note_timelapse(jobs)
        # engine thread only:
        self._started = time.perf_counter()
        self._last_report: dict[int, float] = {}
        self._frames: dict[int, list[torch.Tensor]] = {}
        self._gpu: dict[int, float] = {}  # each job's share of the steps so far
        self._rate_mark = (self._started, 0)  # (time, steps) at the last progress report
        self.engine_time = EngineTime()  # its ``steps``: the batch's steps so far
        self._encoder: ThreadPoolExecutor | None = None  # event loop: encodes pictures (WebP, PNG, timelapses)
        self.checkpoints = Checkpointer(self.config.checkpoint_every_s, self.config.checkpoint_every_steps)

    async def run(self) -> Crash | None:
        """Run the batch to its end; None, or how the engine crashed (the error keeps its traceback)."""
        log.info("jobs %s: starting a batch of %d (room for %d)", list(self.claims), len(self.jobs), self.capacity)
        self._encoder = ThreadPoolExecutor(1, thread_name_prefix="vqbot-encode")
        writer = asyncio.create_task(self._write_news())
        topping = asyncio.create_task(top_up(self)) if self.top_up else None
        crash: Exception | None = None
        try:
            await self.worker.in_engine_thread(self._step_until_empty)
        except Exception as exc:  # noqa: BLE001 - the worker judges it by its type (worker/failures.py)
            crash = exc
        finally:
            self._closing = True
            self._room.wake()
            if topping is not None:
                await topping  # never cancelled: a claim it has started must come back with its jobs
            self.handoff.close()
            await writer
            self._encoder.shutdown()
            log.info("jobs %s: batch done; engine thread: %s", sorted(self.jobs), self.engine_time.summary())
            self.leftovers = self.handoff.joiners() + list(self._rejoin.values())
            self._rejoin.clear()
        for claim, _ in self.leftovers:
            self._members.discard(claim.job.id)
            if self.claims.get(claim.job.id) is claim:
                del self.jobs[claim.job.id], self.claims[claim.job.id]
        if crash is None:
            return None
        return Crash(crash, [self.jobs[job_id] for job_id in self.jobs if job_id in self._members])

    # ---------------------------------------------------------------- what worker.top_up reads and does
    @property
    def closing(self) -> bool:
        return self._closing

    def room(self) -> int:
        """How many more jobs the batch can take now (jobs that ended have left it)."""
        return self.capacity - len(self._members) - len(self._rejoin)

    async def wait_for_room(self, timeout: float | None = None) -> None:
        """Until a job ends, the batch closes, or ``timeout`` seconds pass."""
        await self._room.sleep(timeout)

    def join(self, jobs: list[ClaimedJob]) -> None:
        """Hand claimed jobs of this batch's key to the engine thread: they join before its next step."""
        joining = []
        for claim, params in jobs:
            job_id = claim.job.id
            if job_id in self._members:
                log.info("job %s: claimed again while its lost attempt is still in the batch; it joins when that "
                         "one has left", job_id)
                self._rejoin[job_id] = (claim, params)
                continue
            self.jobs[job_id], self.claims[job_id] = (claim, params), claim
            self._members.add(job_id)
            joining.append((claim, params))
        if not joining:
            return
        self._note_timelapse(joining)
        log.info("jobs %s: joining the running batch of %s", [claim.job.id for claim, _ in joining],
                 sorted(self._members))
        self.handoff.join(joining)

    def _note_timelapse(self, jobs: list[ClaimedJob]) -> None:
        if self.config.timelapse_dir is not None:
            self._timelapse.update(claim.job.id for claim, params in jobs if params.extra.get("timelapse"))

    # ---------------------------------------------------------------- engine thread
    def _step_until_empty(self) -> None:
        batch = self.worker.engine.batch(self._initial[0][1])
        clock = self.engine_time = EngineTime()
        self._started = time.perf_counter()
        self._rate_mark = (self._started, 0)
        with clock.phase("joining"):
            self._add(batch, list(self._initial))
        while True:
            if not self.worker.stopping:  # a stopping worker hands late joiners back untouched
                with clock.phase("joining"):
                    self._add(batch, self.handoff.joiners())
            if not batch:
                return
            began = time.perf_counter()
            with clock.phase("stepping"):
                step = batch.step()
            clock.steps += 1
            with clock.phase("checkpoints"):
                done = {as_job_id(k): n for k, n in step.done.items()}
                for checkpoint in self.checkpoints.take_due(batch, done):
                    self.handoff.post(checkpoint)  # before the step's progress: a report then finds it stored
            with clock.phase("pictures"):
                self._report(step)
            # Each job's share of the GPU: the step and what it asked for (its pictures, its checkpoint),
            # split evenly. On a GPU the step runs asynchronously, so the time is only whole once a result
            # has been read back (a picture, a loss): timing the step alone would leave the wait out.
            share = (time.perf_counter() - began) / max(len(done), 1)
            for job in done:
                self._gpu[job] = self._gpu.get(job, 0.0) + share
            with clock.phase("finishing"):
                for key in step.finished:
                    self._finish(batch, as_job_id(key))
            with clock.phase("stops"):
                for job, reason in self._stops(batch):
                    self._frames.pop(job, None)
                    kept = self.checkpoints.leaving(batch, job, keep=reason is StopReason.SHUTDOWN)
                    self.handoff.post(Stopped(job, reason, batch.remove(job), self._gpu.pop(job, 0.0), kept))

    def _add(self, batch: Batch, jobs: list[ClaimedJob]) -> None:
        for claim, params in jobs:
            try:
                self.checkpoints.add(batch, claim, params, self.worker.resumes, self.handoff.post)
            except Exception as exc:  # noqa: BLE001 - this job's own input or fault; the others go on
                self.handoff.post(Refused(claim.job.id, exc))

    def _report(self, step: Step) -> None:
        """Progress pictures (each job's at most every ``progress_min_interval_s``) and timelapse frames."""
        now = time.monotonic()
        every, frames_every = self.config.progress_every, self.config.frames_every
        done = {as_job_id(key): steps for key, steps in step.done.items()}
        due = [job for job, steps in done.items() if every and steps % every == 0
               and now - self._last_report.get(job, float("-inf")) >= self.config.progress_min_interval_s]
        framed = [job for job, steps in done.items() if frames_every and steps % frames_every == 0
                  and job in self._timelapse]
        if not due and not framed:
            return
        pictures = step.pictures({*due, *framed})  # only these jobs' pictures are decoded
        for job in framed:
            self._frames.setdefault(job, []).append(timelapse_frame(pictures[job]))
        if due:
            then, steps_then = self._rate_mark
            steps = self.engine_time.steps
            self._rate_mark = (time.perf_counter(), steps)
            rate = (steps - steps_then) / max(self._rate_mark[0] - then, 1e-9)
            for job in due:
                self._last_report[job] = now
                self.handoff.post(Progress(job, done[job], pictures[job], rate))

    def _finish(self, batch: Batch, job_id: int) -> None:
        result = batch.finish(job_id)
        self.checkpoints.left(job_id)
        frames = self._frames.pop(job_id, None) or None
        log.info("job %s: picture made, %d steps in %.1f s (loss %.3f)", job_id, result.steps_done, result.seconds,
                 result.loss)
        self.handoff.post(Finished(job_id, result, frames, self._gpu.pop(job_id, 0.0)))

    def _stops(self, batch: Batch) -> list[tuple[int, StopReason]]:
        asked = self.handoff.stops()
        if self.worker.stopping:
            return [(as_job_id(key), asked.get(as_job_id(key), StopReason.SHUTDOWN)) for key in batch.keys]
        return [(job, reason) for job, reason in asked.items() if job in batch]

    # ---------------------------------------------------------------- event loop
    async def _write_news(self) -> None:
        while (news := await self.handoff.next()) is not None:
            try:
                match news:
                    case Progress():
                        await self._write_progress(news)
                    case Finished():
                        await self._write_picture(news)
                    case Stopped():
                        await self._write_stop(news)
                    case Refused():
                        await self.worker.charge([self.claims[news.job_id]], news.error)
                    case Checkpoint() | Unusable():
                        await checkpointing.record(self.worker, self.checkpoints, self.claims[news.job_id], news)
            except Exception:  # one job's news that can't be written must not hold up the others'
                log.exception("job %s: could not record %s", news.job_id, type(news).__name__.lower())
            if isinstance(news, ENDINGS):
                self._members.discard(news.job_id)
                self.worker.let_go(self.claims[news.job_id])
                self._room.wake()
                if news.job_id in self._rejoin:
                    self.join([self._rejoin.pop(news.job_id)])

    async def _encode(self, encode: Callable[[], T]) -> T:
        """``encode()`` in the batch's encoding thread: neither the engine thread nor the event loop waits."""
        return await asyncio.get_running_loop().run_in_executor(self._encoder, encode)

    async def _write_progress(self, progress: Progress) -> None:
        claim = self.claims[progress.job_id]
        self.worker.note_speed(progress.steps_per_s)
        preview = await self._encode(lambda: preview_bytes(progress.picture))
        try:
            ack = await self.store.report_progress(
                claim.job.id, claim.token, step=progress.step, preview=preview,
                steps_per_s=progress.steps_per_s, lease_seconds=self.config.lease_s)
        except Exception as exc:  # noqa: BLE001 - progress is worth no wait: the next report brings news anyway
            log.warning("job %s: progress at step %d not recorded: the database is unavailable (%s)",
                        claim.job.id, progress.step, exc)
            return
        if not ack:
            log.warning("job %s: lease lost; stopping it", claim.job.id)
            self.handoff.stop(claim.job.id, StopReason.LEASE_LOST)
        elif ack.cancel:
            log.info("job %s: cancel requested at step %d", claim.job.id, progress.step)
            self.handoff.stop(claim.job.id, StopReason.CANCELLED)
        await self.worker.changed()

    async def _write_picture(self, finished: Finished) -> None:
        claim, result = self.claims[finished.job_id], finished.result
        try:
            png = await self._encode(lambda: result.png)
        except Exception as exc:  # a picture that can't be encoded fails its job alone
            log.exception("job %s: its picture could not be encoded", claim.job.id)
            await self.worker.charge([claim], exc)
            return
        frames, folder, fmt = finished.frames, self.config.timelapse_dir, self.config.timelapse_format
        if frames and folder is not None:
            timelapse = await self._encode(lambda: timelapse_bytes(frames, fmt=fmt))
            folder.mkdir(parents=True, exist_ok=True)
            (folder / f"{claim.job.id}.{fmt}").write_bytes(timelapse)
        await self.worker.outbox.finish(Picture(claim.job.id, claim.token, png, finished.gpu_seconds))
        await self.worker.changed()

    async def _write_stop(self, stopped: Stopped) -> None:
        claim, outbox = self.claims[stopped.job_id], self.worker.outbox
        job_id, token = claim.job.id, claim.token
        reason = stopped.reason
        if reason is StopReason.LEASE_LOST:
            log.info("job %s: dropped at step %d (lease lost)", job_id, stopped.steps_done)
            return
        if reason is StopReason.SHUTDOWN and not await outbox.write(
                "check for a cancel request", job_id, lambda: self.store.cancel_requested(job_id)):
            kept = await checkpointing.keep_at_stop(self.worker, claim, stopped.checkpoint)
            await outbox.write("hand the job back", job_id, lambda: self.store.release(job_id, token))
            log.info("job %s: handed back at step %d (worker stopping)%s", job_id, stopped.steps_done,
                     "; it resumes there" if kept else "")
        else:
            await outbox.write("record the cancel", job_id, lambda: self.store.confirm_cancelled(
                job_id, token, gpu_seconds=stopped.gpu_seconds))
            log.info("job %s: cancelled at step %d", job_id, stopped.steps_done)
        await self.worker.changed()


def as_job_id(key: Hashable) -> int:
    """The worker keys the engine's jobs by their job ids."""
    return cast(int, key)
