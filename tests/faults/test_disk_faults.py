"""A disk that fills up under a running worker, and a database file that is read-only when a worker starts.

The disk fills up inside the worker, at a chosen engine step, through RLIMIT_FSIZE
(``tests.faults.injection.fill_disk_at_step``): no file it writes may grow past the size the
database's write-ahead log has at that moment, so the next transaction that needs room fails as it
would on a full disk, while the worker's small log and kept pictures still fit. ``prlimit`` from the
test frees the disk again.
"""

from __future__ import annotations

import os
import re
import resource
import sqlite3
import stat
from pathlib import Path

from db import JobState
from tests.cli.vqbot_process import error_line, vqbot
from tests.faults.harness import FaultRun
from tests.faults.ledger import ALL_WELL, Logs, check_every_job, read_journals, steps_redone
from tests.faults.workers import WorkerProcess, worker_env

LOG_LINE = re.compile(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} (INFO|WARNING|ERROR) [\w.]+: \S")


def free_the_disk(worker: WorkerProcess) -> None:
    assert worker.process.pid is not None
    resource.prlimit(worker.process.pid, resource.RLIMIT_FSIZE, (resource.RLIM_INFINITY, resource.RLIM_INFINITY))


def lines_with(worker: WorkerProcess, text: str) -> list[str]:
    return [line for line in worker.log_text().splitlines() if text in line]


def assert_plain_log(worker: WorkerProcess) -> None:
    """Every line of the log is one record of the worker's format: no traceback, no continuation lines."""
    odd = [line for line in worker.log_text().splitlines() if not LOG_LINE.match(line)]
    assert odd == [], "\n".join(odd)


def database_intact(database: Path) -> None:
    with sqlite3.connect(f"file:{database}?mode=ro", uri=True) as conn:
        assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    conn.close()


FULL_AT_STEP = 12  # of the suite's 20-step jobs


async def wait_for_full_disk(run: FaultRun, worker: WorkerProcess) -> str:
    """The log line that says the result could not be stored (the disk filled at ``FULL_AT_STEP``)."""
    found = await run.until(lambda: lines_with(worker, "could not store the finished picture"), "a full disk")
    assert isinstance(found, list)
    return found[0]


async def test_a_full_disk_holds_a_result_back_until_there_is_room_and_the_queue_goes_on(tmp_path, tiny_models):
    run = await FaultRun.open(tmp_path, tiny_models)
    try:
        await run.enqueue(2)
        worker = run.start("a", disk_full_at_step=FULL_AT_STEP, VQBOT_MAX_BATCH="1")
        line = await wait_for_full_disk(run, worker)
        assert "the database is unavailable (The job database could not be written: its disk is full or failing" in line
        assert f"the picture is kept in {tmp_path / 'data' / 'unstored'} meanwhile" in line
        await run.refresh()  # what was committed before the disk filled is all there
        first, second = run.jobs.values()
        assert (first.state, second.state) == (JobState.RUNNING, JobState.QUEUED)
        database_intact(run.database)

        free_the_disk(worker)
        await run.until(lambda: all(j.state is JobState.SUCCEEDED for j in run.jobs.values()), "both jobs done")
        await run.poster.deliver()
        assert await run.stop("a") == 0

        jobs = await run.final_jobs()
        journals = read_journals(tmp_path / "journals")
        assert check_every_job(jobs, run.poster, journals, Logs.read(tmp_path / "logs")) == ALL_WELL
        assert steps_redone(jobs, journals) == 0 and [job.attempts for job in jobs] == [1, 1]
        assert list((tmp_path / "data" / "unstored").iterdir()) == []  # the kept copy went once stored
        assert_plain_log(worker)
    finally:
        await run.close()


async def test_a_result_kept_through_a_full_disk_and_a_read_only_database_is_stored_once(tmp_path, tiny_models):
    run = await FaultRun.open(tmp_path, tiny_models)
    try:
        await run.enqueue(1)
        worker = run.start("a", disk_full_at_step=FULL_AT_STEP)
        await wait_for_full_disk(run, worker)
        assert await run.stop("a") == 0  # a deploy, with the disk still full
        assert lines_with(worker, f"its picture waits in {tmp_path / 'data' / 'unstored'} for the next start")
        assert_plain_log(worker)
        assert sorted(p.name for p in (tmp_path / "data" / "unstored").iterdir()) == ["1.json", "1.png"]

        os.chmod(run.database, stat.S_IRUSR | stat.S_IRGRP | stat.S_IROTH)  # and the database file read-only
        refused = vqbot("worker", cwd=tmp_path, env=worker_env(tmp_path, tiny_models, "a-read-only"),
                        permissions_apply=True)
        assert "is read-only; make the file and its folder writable" in error_line(refused)
        os.chmod(run.database, stat.S_IRUSR | stat.S_IWUSR)

        again = run.start("a")
        await run.until(lambda: all(j.state is JobState.SUCCEEDED for j in run.jobs.values()), "the job done")
        await run.poster.deliver()
        assert await run.stop("a") == 0
        assert lines_with(again, f"job 1: storing the picture kept in {tmp_path / 'data' / 'unstored'}")
        jobs = await run.final_jobs()
        journals = read_journals(tmp_path / "journals")
        assert check_every_job(jobs, run.poster, journals, Logs.read(tmp_path / "logs")) == ALL_WELL
        assert steps_redone(jobs, journals) == 0 and jobs[0].attempts == 1  # the kept picture, not a rerun
        assert_plain_log(again)
    finally:
        await run.close()
