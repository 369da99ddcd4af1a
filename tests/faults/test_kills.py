"""Workers SIGKILLed at 24 moments of a fixed seed and restarted each time lose no job and post none twice.

One worker, then two on the same queue, then one again, take a queue of small jobs. Each kill comes at a
moment chosen by ``random.Random(SEED)``: from outside, while the worker is stepping a job (the store shows
its progress) or right after a job's result was stored and before the bot posted it; or from inside the
worker, in the middle of a store transaction (a claim, a progress report, storing a result or a checkpoint)
before it commits. The killed worker's lease is then made to run out (as 15 s would) and a new worker starts.
Afterwards every job has succeeded once, with its picture, posted once; no two workers ever stepped one
job at the same time; attempts count the kills; and the steps redone stay within the resume bound (jobs
are checkpointed every 5 steps and resume from their last checkpoint).
"""

from __future__ import annotations

import io
import random
from dataclasses import dataclass, replace

from PIL import Image

from db import JobState
from tests.faults.harness import FaultRun
from tests.faults.injection import KillPoint
from tests.faults.ledger import (
    ALL_WELL,
    Figures,
    Logs,
    check_every_job,
    most_steps_a_clean_stop_may_lose,
    most_steps_a_kill_may_lose,
    read_journals,
    steps_lost,
    steps_redone,
)

SEED = 14
KILLS = 24
TWO_WORKERS = range(8, 18)  # the kills during which a second worker shares the queue
FIRST_JOBS, TOP_UP, LOW_WATER = 12, 6, 6  # jobs queued at the start; more whenever fewer than LOW_WATER wait

STEPPING, POSTING = "during a step", "between finish and delivery"
INSIDE = {  # moments a worker is killed at from inside: after this statement of a store transaction ran
    "during a claim": "attempts = attempts + 1, lease_owner",
    "during a progress write": "steps_per_s = COALESCE(",
    "during a result write": "INSERT INTO results",
}
# "during a checkpoint write": after the checkpoint's row is written, before its transaction commits (the
# worker's 1st or 2nd checkpoint: a periodic one, every CHECKPOINT_EVERY_STEPS steps of a job).
CHECKPOINT_WRITE: KillPoint | None = KillPoint(sql="INSERT INTO checkpoints")


@dataclass(frozen=True)
class Kill:
    slot: str
    moment: str
    point: KillPoint | None  # None: the suite kills from outside


def schedule(seed: int) -> list[Kill]:
    rng = random.Random(seed)
    moments = [STEPPING, POSTING, *INSIDE, *(["during a checkpoint write"] if CHECKPOINT_WRITE else [])]
    drawn = [moments[i % len(moments)] for i in range(KILLS)]  # every moment KILLS // len(moments) times or more
    rng.shuffle(drawn)
    kills = []
    for i, moment in enumerate(drawn):
        slot = rng.choice("ab") if i in TWO_WORKERS else "a"
        nth = rng.randint(1, 2)
        point = (KillPoint(sql=INSIDE[moment], nth=nth) if moment in INSIDE
                 else replace(CHECKPOINT_WRITE, nth=nth) if CHECKPOINT_WRITE and moment == "during a checkpoint write"
                 else None)
        kills.append(Kill(slot, moment, point))
    return kills


def next_point(kills: list[Kill], slot: str, after: int) -> tuple[bool, KillPoint | None]:
    """Whether ``slot`` has a kill after index ``after``, and the kill point its next worker must carry."""
    for kill in kills[after + 1:]:
        if kill.slot == slot:
            return True, kill.point
    return False, None


async def land(run: FaultRun, kill: Kill) -> None:
    worker = run.workers[kill.slot]
    assert worker.spec.kill_point == kill.point
    if kill.point is not None:
        await run.until(lambda: not worker.alive, f"{worker.name} dying {kill.moment}")
    elif kill.moment == STEPPING:
        await run.until(lambda: run.running_on(worker.name, at_least_step=10), f"{worker.name} stepping a job")
    else:
        await run.until(run.succeeded_undelivered, "a stored, unposted result")
    await run.kill(kill.slot, kill.moment)


async def test_workers_killed_24_times_lose_nothing_and_post_nothing_twice(tmp_path, tiny_models) -> None:
    kills = schedule(SEED)
    assert len(kills) >= 20 and {k.slot for k in kills} == {"a", "b"}
    run = await FaultRun.open(tmp_path, tiny_models)
    try:
        await run.enqueue(FIRST_JOBS)
        run.start("a", next_point(kills, "a", -1)[1])
        for i, kill in enumerate(kills):
            if i == TWO_WORKERS.start:
                run.start("b", next_point(kills, "b", i - 1)[1])
            if i == TWO_WORKERS.stop and "b" in run.workers:
                assert await run.stop("b") == 0  # a clean stop hands its jobs back
            await run.poster.deliver()
            await run.refresh()
            if run.queued() < LOW_WATER:
                await run.enqueue(TOP_UP)
            await land(run, kill)
            more, point = next_point(kills, kill.slot, i)
            if more or (kill.slot == "b" and i + 1 in TWO_WORKERS):
                run.start(kill.slot, point)
        for slot in "ab":  # the rest of the queue, by two workers no one kills
            if slot not in run.workers:
                run.start(slot)
        await run.until(lambda: all(j.state is JobState.SUCCEEDED for j in run.jobs.values()), "every job done")
        await run.poster.deliver()
        assert [await run.stop(slot) for slot in sorted(run.workers)] == [0, 0]
        await run.poster.deliver()

        jobs = await run.final_jobs()
        journals, logs = read_journals(tmp_path / "journals"), Logs.read(tmp_path / "logs")
        problems = check_every_job(jobs, run.poster, journals, logs)
        redone = steps_redone(jobs, journals)
        figures = Figures(run.kills, clean_stops=run.clean_stops, jobs=len(jobs), steps_redone=redone,
                          duplicates=len(problems["duplicates"]), lost=len(problems["lost"]))
        print(figures.line())
        assert problems == ALL_WELL
        assert sum(run.kills.values()) == KILLS
        assert all(Image.open(io.BytesIO(run.poster.pictures[j.id] or b"")).size == (32, 32) for j in jobs)
        ended = {worker.name: worker.how_it_ended for worker in run.ended}
        bound = {"stopped": most_steps_a_clean_stop_may_lose}
        too_many = [(job, attempt.worker, lost) for job, attempts in journals.items()
                    for attempt, lost in steps_lost(attempts)
                    if not 0 <= lost <= bound.get(ended[attempt.worker], most_steps_a_kill_may_lose)(attempt.last_done)]
        assert too_many == []  # THE RESUME BOUNDS: see tests/faults/ledger.py
        print(f"fault suite: the most steps one interrupted attempt lost: "
              f"{max((lost for runs in journals.values() for _, lost in steps_lost(runs)), default=0)}")
        assert logs.tracebacks() == {}
    finally:
        await run.close()
