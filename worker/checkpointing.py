"""Checkpoints of running jobs: resumed when a job is claimed again, taken on a clean stop and periodically.

A job claimed with a checkpoint (``Job.resumed_from_step``) has its bytes fetched on the event loop
(``fetch``) and kept in ``Resumes`` until the engine thread adds the job (``add_job``): decoded there
(``engine.checkpoints.decode``), the job goes on from the checkpoint's step. A checkpoint that can't
be resumed (torn, corrupt, another shape, an older format, a state the batch refuses) costs one log
line: the job starts from step 0 and the event loop deletes it (``Unusable`` news,
``Store.discard_checkpoint``).

Between steps the engine thread takes the state of every job that is due (``Checkpointer``) (a GPU
sync and a 3 MiB copy a 512x512 job, ~11 ms to encode), and posts the bytes as ``Checkpoint`` news;
the event loop stores them (``write``), one try, since the next interval brings a newer one anyway.
A job whose last checkpoint is still being written is not checkpointed again meanwhile. A clean stop
takes every running job's state (``Stopped.checkpoint``) and stores it through the outbox before the
job is handed back, so that the next attempt redoes no step.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from db import Claim
from engine.checkpoints import CheckpointError, decode, encode
from jobspec import JobParams

if TYPE_CHECKING:
    from engine.runner import Batch
    from worker.worker import Worker

log = logging.getLogger(__name__)

# VQBOT_CHECKPOINT_EVERY_S's default. A 512x512 job's checkpoint is ~3 MiB: every 30 s that is ~0.1 MB/s
# of database writes a job (~1.6 MB/s for a batch of 16), and ~12 ms of the engine thread's time a job
# (state copy and encoding), 0.04% of it; a crash then costs a job at most 30 s of its GPU time. The usual
# 500-step 512x512 job takes 8 to 40 s on one GPU, so most jobs write none or one.
DEFAULT_EVERY_S = 30.0


@dataclass(frozen=True)
class Checkpoint:
    """A periodic checkpoint of a running job, taken after its ``step``-th step."""

    job_id: int
    step: int
    data: bytes


@dataclass(frozen=True)
class Unusable:
    """The job's stored checkpoint can't be resumed; it started from step 0 (``reason``: one sentence)."""

    job_id: int
    reason: str


class Resumes:
    """Checkpoint bytes fetched for claimed jobs, until the engine thread adds them (both threads)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._kept: dict[int, tuple[str, int, bytes]] = {}  # job id -> (lease token, step, bytes)

    def put(self, claim: Claim, step: int, data: bytes) -> None:
        with self._lock:
            self._kept[claim.job.id] = (claim.token, step, data)

    def take(self, claim: Claim) -> tuple[int, bytes] | None:
        """The (step, bytes) fetched for this attempt of the job (taken: once), or None."""
        with self._lock:
            kept = self._kept.get(claim.job.id)
            if kept is None or kept[0] != claim.token:
                return None
            del self._kept[claim.job.id]
            return kept[1], kept[2]

    def drop(self, claim: Claim) -> None:
        with self._lock:
            if self._kept.get(claim.job.id, ("",))[0] == claim.token:
                del self._kept[claim.job.id]


async def fetch(worker: Worker, claim: Claim) -> None:
    """Event loop, at a claim: keep the checkpoint the claimed job starts from, if it has one."""
    job = claim.job
    if job.resumed_from_step is None:
        return
    try:
        found = await worker.store.checkpoint(job.id)
    except Exception as exc:  # noqa: BLE001 - the job runs anyway; its checkpoint stays for a later attempt
        log.warning("job %s: could not read its checkpoint at step %s: the database is unavailable (%s); "
                    "starting from step 0", job.id, job.resumed_from_step, exc)
        return
    if found is None:
        log.warning("job %s: its checkpoint at step %s is gone; starting from step 0", job.id, job.resumed_from_step)
        return
    worker.resumes.put(claim, *found)


def add_job(batch: Batch, claim: Claim, params: JobParams, resumes: Resumes,
            unusable: Callable[[Unusable], None]) -> int:
    """Engine thread: add the job to ``batch``, from its checkpoint if it has a usable one; the step it
    starts from. A checkpoint that can't go on is reported (``unusable``) and the job starts from 0; the
    job's own faults raise as ``Batch.add`` raises them."""
    job_id = claim.job.id
    kept = resumes.take(claim)
    if kept is None:
        batch.add(job_id, params)
        return 0
    stored_step, data = kept
    try:
        state = decode(data, params)
        batch.add(job_id, params, state=state)
        log.info("job %s: resuming at step %d of %d", job_id, state.step, params.steps)
        return state.step
    except Exception as exc:  # noqa: BLE001 - unusable bytes, a state this batch can't take, or the job's own input
        reason = str(exc) if isinstance(exc, CheckpointError) else f"the batch refused its state: {exc}"
    batch.add(job_id, params)  # the job's own input raises again here, and is refused as without a checkpoint
    log.warning("job %s: its checkpoint at step %d can't be resumed (%s); starting from step 0", job_id,
                stored_step, reason)
    unusable(Unusable(job_id, reason))
    return 0


class Checkpointer:
    """Engine thread: which running jobs are due a periodic checkpoint, and taking them.

    A job is due once ``every_s`` seconds or ``every_steps`` steps (whichever is set and comes first)
    have passed since its last checkpoint, or since it joined the batch, unless its last checkpoint is
    still being written or this step was its last. So a job with less than one interval of work left
    when it joins never writes one, and a crash costs a job at most one interval of its steps (plus those
    made while a write was under way). Jobs near their end are not skipped: one skipped with most of an
    interval left could lose nearly two.
    """

    def __init__(self, every_s: float | None, every_steps: int | None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.every_s, self.every_steps, self.clock = every_s or None, every_steps or None, clock
        self._jobs: dict[int, JobParams] = {}
        self._start: dict[int, int] = {}  # the step each job joined the batch at
        self._last: dict[int, tuple[float, int]] = {}  # (time, step) of its last checkpoint or its start
        self._writing: set[int] = set()  # both threads, under the lock
        self._lock = threading.Lock()

    def add(self, batch: Batch, claim: Claim, params: JobParams, resumes: Resumes,
            unusable: Callable[[Unusable], None]) -> None:
        """Add the job to ``batch`` (``add_job``: from its checkpoint where it has a usable one)."""
        step = add_job(batch, claim, params, resumes, unusable)
        self._jobs[claim.job.id], self._start[claim.job.id] = params, step
        self._last[claim.job.id] = (self.clock(), step)

    def left(self, job_id: int) -> None:
        for kept in (self._jobs, self._start, self._last):
            kept.pop(job_id, None)

    def due(self, job_id: int, steps_done: int) -> bool:
        params = self._jobs.get(job_id)
        if params is None or steps_done >= params.steps:
            return False
        with self._lock:
            if job_id in self._writing:
                return False
        at, step = self._last[job_id]
        return ((self.every_steps is not None and steps_done - step >= self.every_steps)
                or (self.every_s is not None and self.clock() - at >= self.every_s))

    def take_due(self, batch: Batch, done: dict[int, int]) -> list[Checkpoint]:
        """The checkpoints due after this step (``done``: each job's steps), marked as being written."""
        due = [job_id for job_id, steps in done.items() if self.due(job_id, steps)]
        taken = []
        for job_id in due:
            self._last[job_id] = (self.clock(), done[job_id])
            kept = self._take(batch, job_id)
            if kept is not None:
                with self._lock:
                    self._writing.add(job_id)
                taken.append(Checkpoint(job_id, *kept))
        return taken

    def leaving(self, batch: Batch, job_id: int, *, keep: bool) -> tuple[int, bytes] | None:
        """The job is about to leave the batch without a picture; with ``keep`` (a clean stop), its
        checkpoint (step, bytes), or None when it made no step here."""
        start = self._start.get(job_id)
        kept = self._take(batch, job_id) if keep and start is not None else None
        self.left(job_id)
        return kept if kept is not None and start is not None and kept[0] > start else None

    def _take(self, batch: Batch, job_id: int) -> tuple[int, bytes] | None:
        try:
            state = batch.state(job_id)  # a GPU sync and a copy to the CPU
            return state.step, encode(state, self._jobs[job_id])
        except ValueError as exc:  # a state that can't be kept (not finite): the job goes on without one
            log.warning("job %s: no checkpoint taken: %s", job_id, exc)
            return None

    # event loop
    def written(self, job_id: int) -> None:
        """The job's checkpoint is stored, or its write failed: the next may be taken."""
        with self._lock:
            self._writing.discard(job_id)


async def record(worker: Worker, checkpointer: Checkpointer, claim: Claim, news: Checkpoint | Unusable) -> None:
    """Event loop: store a periodic checkpoint, or discard an unusable one."""
    if isinstance(news, Unusable):
        await discard(worker, claim)
        return
    try:
        await write(worker, claim, news)
    finally:
        checkpointer.written(news.job_id)


async def write(worker: Worker, claim: Claim, checkpoint: Checkpoint) -> None:
    """Store a periodic checkpoint, one try (the next interval brings a newer one)."""
    try:
        stored = await worker.store.save_checkpoint(claim.job.id, claim.token, step=checkpoint.step,
                                                    data=checkpoint.data)
    except Exception as exc:  # noqa: BLE001 - the job runs on; its previous checkpoint stays
        log.warning("job %s: checkpoint at step %d not stored: the database is unavailable (%s)", claim.job.id,
                    checkpoint.step, exc)
        return
    if stored:
        log.debug("job %s: checkpoint at step %d stored (%d bytes)", claim.job.id, checkpoint.step,
                  len(checkpoint.data))


async def discard(worker: Worker, claim: Claim) -> None:
    """Delete the unusable checkpoint the job started without (through the outbox)."""
    job_id, token = claim.job.id, claim.token
    await worker.outbox.write("discard its unusable checkpoint", job_id,
                              lambda: worker.store.discard_checkpoint(job_id, token))


async def keep_at_stop(worker: Worker, claim: Claim, checkpoint: tuple[int, bytes] | None) -> bool:
    """Event loop, on a clean stop: store the job's checkpoint (step, bytes) before it is handed back
    (through the outbox); whether the store has it."""
    if checkpoint is None:
        return False
    (step, data), job_id, token = checkpoint, claim.job.id, claim.token
    stored = await worker.outbox.write("store its checkpoint", job_id, lambda: worker.store.save_checkpoint(
        job_id, token, step=step, data=data))
    return bool(stored)
