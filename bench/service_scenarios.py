"""The service benchmark's scenarios: when jobs arrive, how they are submitted, what is seen of them.

Jobs go into the queue through the store, as the bot puts them there (``enqueue_many`` with the guild
limits off, the jobs still checked), from the benchmark's own process. A watcher follows the store's
change counter (``changed_since``, as the bot's delivery loop does) to see each job's first progress;
the job rows give the rest (created, started, finished, state, attempts).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from db import Job, JobState, NewJob, Store
from jobspec import JobParams, parse_prompts
from jobspec.params import DEFAULT_VQGAN

STYLES = ("concept art", "painting by Hokusai", "pixelart", "Studio Ghibli style", "watercolour", "ink drawing",
          "trending on artstation", "matte painting")
GUILDS = 4


@dataclass(frozen=True)
class Arrival:
    """One job of a scenario: when it is submitted (seconds after the scenario's start) and its size."""

    at_s: float
    width: int
    height: int


@dataclass(frozen=True)
class Scenario:
    name: str
    description: str
    arrivals: tuple[Arrival, ...]
    limit_s: float  # seconds after the last submission to wait for the jobs before cancelling what is left

    @property
    def last_submit_s(self) -> float:
        return max(a.at_s for a in self.arrivals)


@dataclass(frozen=True)
class Workload:
    """What every scenario's jobs share."""

    size: int
    other_size: int  # the mixed stream's second size
    steps: int
    cutn: int
    clip_model: str


def burst(work: Workload, jobs: int, limit_s: float) -> Scenario:
    return Scenario("burst", f"{jobs} jobs at once from {GUILDS} guilds",
                    tuple(Arrival(0.0, work.size, work.size) for _ in range(jobs)), limit_s)


def stream(name: str, work: Workload, every_s: float, duration_s: float, limit_s: float, *,
           mixed: bool = False) -> Scenario:
    count = max(1, int(duration_s / every_s + 1e-9))
    sizes = (work.size, work.other_size) if mixed else (work.size,)
    arrivals = tuple(Arrival(i * every_s, sizes[i % len(sizes)], sizes[i % len(sizes)]) for i in range(count))
    what = " and ".join(f"{s}x{s}" for s in sizes)
    return Scenario(name, f"one {what} job every {every_s:g} s for {duration_s:g} s", arrivals, limit_s)


def new_job(work: Workload, arrival: Arrival, number: int) -> NewJob:
    """A two-prompt /imagine job from guild ``number % 4``, each guild's jobs from two members."""
    prompt = f"Wooden banana temple in an underwater kingdom | {STYLES[number % len(STYLES)]}"
    params = JobParams(prompts=parse_prompts(prompt), width=arrival.width, height=arrival.height, steps=work.steps,
                       cutn=work.cutn, seed=number, model=DEFAULT_VQGAN, clip_model=work.clip_model,
                       clip_pretrained="")
    guild = 1 + number % GUILDS
    return NewJob(guild_id=guild, channel_id=guild * 10, user_id=guild * 100 + (number // GUILDS) % 2,
                  prompt=params.prompt_text, params=params.to_json(), seed=params.seed)


@dataclass
class Seen:
    """One submitted job as the benchmark saw it. Times are Unix seconds."""

    job_id: int
    user_id: int
    width: int
    height: int
    steps: int
    submitted_at: float
    first_progress_at: float | None = None  # when the watcher first saw a step above 0
    first_progress_step: int = 0
    later_progress: tuple[float, int] | None = None  # (when, step) of the next progress seen
    cancelled_by_bench: bool = False
    final: Job | None = None
    has_picture: bool = False

    @property
    def size(self) -> str:
        return f"{self.width}x{self.height}"


class Watcher:
    """Follows the store's change counter and notes each tracked job's first progress and last row."""

    def __init__(self, store: Store, poll_s: float) -> None:
        self.store = store
        self.poll_s = poll_s
        self.tracked: dict[int, Seen] = {}
        self.rows: dict[int, Job] = {}
        self.version = 0
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        self.version = await self.store.version()
        self._task = asyncio.create_task(self._follow())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)

    async def poll(self) -> None:
        while True:
            changed = await self.store.changed_since(self.version)
            now = time.time()
            for job in changed:
                self.version = max(self.version, job.version)
                if job.id in self.rows and self.rows[job.id].version > job.version:
                    continue  # an older look (polls may overlap)
                self.rows[job.id] = job
                seen = self.tracked.get(job.id)
                if seen is None or job.step <= 0 or not job.state.is_active:
                    continue
                if seen.first_progress_at is None:
                    seen.first_progress_at, seen.first_progress_step = now, job.step
                elif seen.later_progress is None and job.step > seen.first_progress_step:
                    seen.later_progress = (now, job.step)
            if len(changed) < 500:
                return

    async def _follow(self) -> None:
        while True:
            await self.poll()
            await asyncio.sleep(self.poll_s)

    def pending(self, seen: list[Seen]) -> list[Seen]:
        return [s for s in seen if s.job_id not in self.rows or not self.rows[s.job_id].state.is_terminal]


@dataclass
class Run:
    """A scenario as it went: its jobs and the moments that bound it (Unix seconds)."""

    scenario: Scenario
    started_at: float
    seen: list[Seen] = field(default_factory=list)
    last_submit_at: float = 0.0
    cancel_at: float | None = None  # when the benchmark cancelled what was left (None: every job ended)
    ended_at: float = 0.0
    stuck: int = 0  # jobs that had not ended when the benchmark gave up waiting for them


async def submit(store: Store, watcher: Watcher, work: Workload, arrivals: list[tuple[int, Arrival]]) -> list[Seen]:
    """Queue jobs in one transaction, as a burst of /imagine commands would reach the store."""
    news = [new_job(work, arrival, number) for number, arrival in arrivals]
    submitted_at = time.time()
    jobs = await store.enqueue_many(news, enforce_limits=False)
    seen = [Seen(job.id, job.user_id, job.width, job.height, int(job.params["steps"]), submitted_at)
            for job in jobs]
    for s in seen:
        watcher.tracked[s.job_id] = s
    return seen


async def run_scenario(store: Store, watcher: Watcher, work: Workload, scenario: Scenario, *, first_number: int,
                       cancel_grace_s: float, poll_s: float, check: Callable[[], None]) -> Run:
    """Submit on schedule, wait until every job ended or the limit passed, then cancel what is left.
    ``check`` raises if the worker is gone."""
    run = Run(scenario, started_at=time.time())
    groups: dict[float, list[tuple[int, Arrival]]] = {}
    for i, arrival in enumerate(scenario.arrivals):
        groups.setdefault(arrival.at_s, []).append((first_number + i, arrival))
    for at_s, arrivals in sorted(groups.items()):
        delay = run.started_at + at_s - time.time()
        if delay > 0:
            await asyncio.sleep(delay)
        run.seen.extend(await submit(store, watcher, work, arrivals))
    run.last_submit_at = time.time()
    deadline = run.last_submit_at + scenario.limit_s
    while watcher.pending(run.seen) and time.time() < deadline:
        check()
        await asyncio.sleep(poll_s)
    await watcher.poll()
    left = watcher.pending(run.seen)
    if left:
        run.cancel_at = time.time()
        for s in left:
            s.cancelled_by_bench = True
            await store.request_cancel(s.job_id, by_user=s.user_id, is_admin=True)
        grace = time.time() + cancel_grace_s
        while watcher.pending(run.seen) and time.time() < grace:
            check()
            await asyncio.sleep(poll_s)
    await watcher.poll()
    run.stuck = len(watcher.pending(run.seen))
    for s in run.seen:
        s.final = await store.get(s.job_id)
        if s.final is not None and s.final.state is JobState.SUCCEEDED:
            picture = await store.result(s.job_id)
            s.has_picture = picture is not None and picture.startswith(b"\x89PNG\r\n\x1a\n")
    finished = [s.final.finished_at.timestamp() for s in run.seen if s.final is not None and s.final.finished_at]
    run.ended_at = run.cancel_at if run.cancel_at is not None else max(finished, default=run.last_submit_at)
    return run


def lone_job(work: Workload, limit_s: float) -> Scenario:
    return Scenario("lone job", "one job on an idle ready worker", (Arrival(0.0, work.size, work.size),), limit_s)


def job_outcomes(runs: list[Run]) -> dict[str, Any]:
    """How every submitted job ended: each once, succeeded with its picture or cancelled by the benchmark."""
    seen = [s for run in runs for s in run.seen]
    states = [s.final.state if s.final is not None else None for s in seen]
    succeeded = [s for s, state in zip(seen, states, strict=True) if state is JobState.SUCCEEDED]
    cancelled = [s for s, state in zip(seen, states, strict=True) if state is JobState.CANCELLED]
    failed = [s for s, state in zip(seen, states, strict=True) if state is JobState.FAILED]
    return {
        "submitted": len(seen),
        "succeeded": len(succeeded),
        "succeeded_without_picture": sum(not s.has_picture for s in succeeded),
        "cancelled_by_bench": sum(s.cancelled_by_bench for s in cancelled),
        "cancelled_otherwise": sum(not s.cancelled_by_bench for s in cancelled),
        "failed": len(failed),
        "failed_errors": sorted({str(s.final.error) for s in failed if s.final is not None})[:5],
        "not_ended": sum(state is None or not state.is_terminal for state in states),
        "claimed_more_than_once": sum(s.final is not None and s.final.attempts > 1 for s in seen),
    }
