"""Where a batch's engine thread and the worker's event loop meet: the news the engine thread posts
(``Progress``, ``Finished``, ``Stopped``, ``Refused``, and ``worker.checkpointing``'s ``Checkpoint`` and
``Unusable``), and the ``Handoff`` that carries them one way and stops and joining jobs the other.

News carry pictures as tensors, not bytes: encoding them (WebP, PNG, a timelapse) is the event loop's
work, in a thread of its own, so the engine thread never keeps the GPU waiting for a CPU codec.
"""

from __future__ import annotations

import asyncio
import threading
from collections import deque
from dataclasses import dataclass
from enum import StrEnum
from typing import TYPE_CHECKING

from db import Claim
from jobspec import JobParams
from worker.checkpointing import Checkpoint, Unusable
from worker.waiting import Wakeup

if TYPE_CHECKING:
    import torch

    from engine.runner import Result

ClaimedJob = tuple[Claim, JobParams]  # a claimed job and its parameters


class StopReason(StrEnum):
    CANCELLED = "cancelled"  # its owner asked
    LEASE_LOST = "lease lost"  # another worker holds the job now
    SHUTDOWN = "shutdown"  # this worker is stopping: the job goes back to the queue


@dataclass(frozen=True)
class Progress:
    job_id: int
    step: int
    picture: torch.Tensor  # (3, H, W) in [0, 1] on the CPU; the event loop makes the WebP preview
    steps_per_s: float


@dataclass(frozen=True)
class Finished:
    job_id: int
    result: Result
    frames: list[torch.Tensor] | None  # the timelapse's frames (engine.runner.timelapse_frame), if it has one
    gpu_seconds: float = 0.0  # its share of the steps it was in: each step's time over the jobs in it


@dataclass(frozen=True)
class Stopped:
    job_id: int
    reason: StopReason
    steps_done: int
    gpu_seconds: float = 0.0
    checkpoint: tuple[int, bytes] | None = None  # (step, bytes) of a job handed back by a clean stop


@dataclass(frozen=True)
class Refused:
    """A job that could not join the batch: its own input, or a fault of its own."""

    job_id: int
    error: Exception


News = Progress | Finished | Stopped | Refused | Checkpoint | Unusable
ENDINGS = (Finished, Stopped, Refused)  # the news that end a job's attempt in the batch


class Handoff:
    """Where the engine thread and the event loop meet.

    Engine thread: ``post`` (returns at once), ``stops`` and ``joiners``. Event loop: ``next``,
    ``stop`` and ``join``; ``joiners`` again once the engine thread is done, for the jobs that came late.
    """

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._news: deque[News] = deque()  # event loop only
        self._arrived = Wakeup()
        self._closed = False
        self._stops: dict[int, StopReason] = {}  # both threads, under the lock
        self._joining: list[ClaimedJob] = []  # both threads, under the lock
        self._lock = threading.Lock()

    # engine thread
    def post(self, news: News) -> None:
        self._loop.call_soon_threadsafe(self._arrive, news)

    def stops(self) -> dict[int, StopReason]:
        with self._lock:
            return dict(self._stops)

    def joiners(self) -> list[ClaimedJob]:
        """The jobs handed over to join since the last call (taken: each is returned once)."""
        with self._lock:
            jobs, self._joining = self._joining, []
        return jobs

    # event loop
    def join(self, jobs: list[ClaimedJob]) -> None:
        """Jobs to add before the next step; stops asked for an earlier attempt of one no longer hold."""
        with self._lock:
            self._joining.extend(jobs)
            for claim, _ in jobs:
                self._stops.pop(claim.job.id, None)

    def stop(self, job_id: int, reason: StopReason) -> None:
        with self._lock:
            self._stops.setdefault(job_id, reason)

    def close(self) -> None:
        """The engine thread is done: ``next`` returns None once the news that came is taken."""
        self._closed = True
        self._arrived.wake()

    async def next(self) -> News | None:
        while not self._news:
            if self._closed:
                return None
            await self._arrived.sleep()
        return self._news.popleft()

    def _arrive(self, news: News) -> None:
        if self._closed:
            return
        if isinstance(news, Progress):  # only the newest progress of a job is worth writing
            for i, waiting in enumerate(self._news):
                if isinstance(waiting, Progress) and waiting.job_id == news.job_id:
                    self._news[i] = news
                    return
        self._news.append(news)
        self._arrived.wake()


