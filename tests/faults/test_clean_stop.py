"""A worker told to stop (SIGTERM, as a deploy does) checkpoints its running jobs and hands them back; the next
worker resumes each at the step it was stopped at and finishes it, redoing no step."""

from __future__ import annotations

import re

from db import JobState
from tests.faults.harness import FaultRun
from tests.faults.ledger import (
    ALL_WELL,
    Logs,
    check_every_job,
    most_steps_a_clean_stop_may_lose,
    read_journals,
    steps_lost,
    steps_redone,
)

HANDED_BACK = re.compile(r"job (\d+): handed back at step (\d+) \(worker stopping\); it resumes there")


async def test_a_stopped_worker_hands_its_jobs_back_and_they_finish_once(tmp_path, tiny_models) -> None:
    run = await FaultRun.open(tmp_path, tiny_models)
    try:
        await run.enqueue(2)
        first = run.start("a")
        await run.until(lambda: run.running_on(first.name, at_least_step=10), "a job past step 10")
        assert await run.stop("a") == 0
        await run.refresh()
        assert [(j.state, j.attempts, j.worker) for j in run.jobs.values()] == [(JobState.QUEUED, 0, None)] * 2
        said = {int(job): int(step) for job, step in HANDED_BACK.findall(first.log_text())}
        assert sorted(said) == sorted(run.jobs)
        assert {job.id: job.step for job in run.jobs.values()} == said  # each shows the step it resumes at
        assert {job: (await run.store.checkpoint(job) or (None,))[0] for job in said} == said  # kept at its step
        assert f"worker {first.name} stopped" in first.log_text()

        run.start("a")
        await run.until(lambda: all(j.state is JobState.SUCCEEDED for j in run.jobs.values()), "both jobs done")
        await run.poster.deliver()
        assert await run.stop("a") == 0

        jobs = await run.final_jobs()
        journals, logs = read_journals(tmp_path / "journals"), Logs.read(tmp_path / "logs")
        assert check_every_job(jobs, run.poster, journals, logs) == ALL_WELL
        assert [job.attempts for job in jobs] == [1, 1]  # the handed-back attempt did not count
        assert {job.id: job.resumed_from_step for job in jobs} == said
        lost = {job: steps_lost(attempts) for job, attempts in journals.items()}  # one handed-back attempt each
        assert {job: pairs[0][0].last_done for job, pairs in lost.items() if len(pairs) == 1} == said
        assert all(0 <= n <= most_steps_a_clean_stop_may_lose(a.last_done) for [(a, n)] in lost.values())  # THE BOUND
        redone = steps_redone(jobs, journals)
        print(f"fault suite: a clean stop at steps {sorted(said.values())} redid {redone} steps")
        assert redone == 0
        assert logs.tracebacks() == {}
    finally:
        await run.close()
