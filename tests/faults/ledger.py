"""What happened to every job across all worker processes: the engine's step journals, the workers' logs,
the bot's deliveries; the checks the fault suite makes of them; and the bound that resume tightens.

An *attempt* here is one worker process's run of a job as its journal shows it: the steps it made,
from which step to which, and when. Steps redone are the steps the engine made beyond each job's
``steps``; an interrupted attempt *loses* the steps between where it got to and where the job's
next attempt starts again from.
"""

from __future__ import annotations

import re
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from itertools import pairwise
from pathlib import Path

from db import Job, JobState, Store
from tests.faults.workers import CHECKPOINT_EVERY_STEPS


# ---------------------------------------------------------------- THE RESUME BOUNDS
def most_steps_a_kill_may_lose(steps_done: int) -> int:
    """Steps a job's SIGKILLed attempt may cost it, having made ``steps_done``.

    The worker checkpoints a job every CHECKPOINT_EVERY_STEPS steps and a reclaimed job resumes from its
    last stored checkpoint, so a kill costs the steps since then: one interval, plus the steps the engine
    made while that interval's checkpoint was on its way to the store (it never waits for the database;
    a kill inside the checkpoint's own transaction loses it). Those come to less than another interval
    here, since a checkpoint write takes far less time than five steps.
    """
    return min(steps_done, 2 * CHECKPOINT_EVERY_STEPS)


def most_steps_a_clean_stop_may_lose(steps_done: int) -> int:
    """Steps a job handed back by a clean stop (SIGTERM) may cost it: none, it resumes at its last step."""
    return 0
# ---------------------------------------------------------------- end of the resume bounds


@dataclass
class Attempt:
    worker: str
    first_t: float
    last_t: float
    first_done: int  # the job's steps done after this attempt's first step (1 when started from 0)
    last_done: int
    steps_run: int


def read_journals(folder: Path) -> dict[int, list[Attempt]]:
    """Each job's attempts in the order they ran, from every ``*.steps`` journal in ``folder``."""
    attempts: dict[int, list[Attempt]] = defaultdict(list)
    for journal in sorted(folder.glob("*.steps")):
        runs: dict[int, Attempt] = {}
        for line in journal.read_text().splitlines(keepends=True):
            if not line.endswith("\n"):
                break  # the line the kill interrupted
            stamp, *pairs = line.split()
            for pair in pairs:
                job, done = map(int, pair.split(":"))
                run = runs.get(job)
                if run is None:
                    runs[job] = Attempt(journal.stem, float(stamp), float(stamp), done, done, 1)
                else:
                    run.last_t, run.last_done, run.steps_run = float(stamp), done, run.steps_run + 1
        for job, run in runs.items():
            attempts[job].append(run)
    for each_job in attempts.values():
        each_job.sort(key=lambda run: run.first_t)
    return dict(attempts)


CLAIMED = re.compile(r"job (\d+) claimed by (\S+) \(attempt (\d+) of \d+\)")
RELEASED = re.compile(r"job (\d+) released by its worker; now queued")
SUCCEEDED = re.compile(r"job (\d+) succeeded after")


@dataclass
class Logs:
    text: dict[str, str]  # worker name -> its log

    @classmethod
    def read(cls, folder: Path) -> Logs:
        return cls({log.stem: log.read_text(errors="backslashreplace") for log in sorted(folder.glob("*.log"))})

    def count(self, pattern: re.Pattern[str]) -> Counter[int]:
        return Counter(int(m.group(1)) for text in self.text.values() for m in pattern.finditer(text))

    def tracebacks(self) -> dict[str, int]:
        return {name: text.count("Traceback") for name, text in self.text.items() if "Traceback" in text}


@dataclass
class Poster:
    """The bot's side of a finished job, as bot/delivery.py does it: read the outcome of each undelivered
    job, post it, mark it delivered. ``posted`` counts the posts per job (a repeat is a duplicate)."""

    store: Store
    posted: Counter[int] = field(default_factory=Counter)
    pictures: dict[int, bytes | None] = field(default_factory=dict)

    async def deliver(self) -> int:
        jobs = await self.store.undelivered(limit=1000)
        for job in jobs:
            self.pictures[job.id] = await self.store.result(job.id) if job.state is JobState.SUCCEEDED else None
            self.posted[job.id] += 1
            assert await self.store.mark_delivered(job.id, result_message_id=10_000 + job.id), job
        return len(jobs)


@dataclass
class Figures:
    kills: Counter[str]  # moment -> SIGKILLs
    clean_stops: int
    jobs: int
    steps_redone: int
    duplicates: int
    lost: int

    def line(self) -> str:
        moments = ", ".join(f"{n} {moment}" for moment, n in sorted(self.kills.items()))
        return (f"fault suite: {sum(self.kills.values())} kills ({moments}), {self.clean_stops} clean stops, "
                f"{self.jobs} jobs, {self.steps_redone} steps redone, {self.duplicates} duplicates, {self.lost} lost")


def steps_lost(runs: list[Attempt]) -> list[tuple[Attempt, int]]:
    """Each attempt that a later one followed, with the steps it lost: where it got to, less where the next
    one started from (a job that starts again from 0 makes step 1 first)."""
    return [(run, run.last_done - (after.first_done - 1)) for run, after in pairwise(runs)]


ALL_WELL: dict[str, list] = {"lost": [], "duplicates": [], "overlaps": [], "attempts": [], "unfinished": []}


def check_every_job(jobs: list[Job], poster: Poster, journals: dict[int, list[Attempt]], logs: Logs) -> dict:
    """The suite's promises: every job succeeded once with its picture, posted once; no two workers ran a job
    at once; attempts counted. Returns the problems found, by kind (``ALL_WELL`` when the promises hold)."""
    successes, claims, releases = logs.count(SUCCEEDED), logs.count(CLAIMED), logs.count(RELEASED)
    problems: dict[str, list] = {"lost": [], "duplicates": [], "overlaps": [], "attempts": [], "unfinished": []}
    for job in jobs:
        if job.state is not JobState.SUCCEEDED or not job.delivered or not poster.pictures.get(job.id):
            problems["lost"].append((job.id, job.state.value, job.delivered, job.error))
        if poster.posted[job.id] > 1 or successes[job.id] > 1:
            problems["duplicates"].append((job.id, poster.posted[job.id], successes[job.id]))
        runs = journals.get(job.id, [])
        for run, after in pairwise(runs):
            if after.first_t <= run.last_t:
                problems["overlaps"].append((job.id, run.worker, after.worker))
        if job.attempts != claims[job.id] - releases[job.id]:
            problems["attempts"].append((job.id, job.attempts, claims[job.id], releases[job.id]))
        if not runs or runs[-1].last_done != job.total_steps:
            problems["unfinished"].append((job.id, [(r.worker, r.first_done, r.last_done) for r in runs]))
    return problems


def steps_redone(jobs: list[Job], journals: dict[int, list[Attempt]]) -> int:
    return sum(run.steps_run for job in jobs for run in journals.get(job.id, [])) - sum(j.total_steps for j in jobs)
