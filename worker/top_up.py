"""Topping a running batch up: queued jobs of its batch key join it between steps, while it has room.

Runs on the event loop beside the batch (``BatchRun.run`` starts it), so the engine thread never
waits for the database: jobs are claimed by the same fair claim as a fresh batch, only of the
batch's key (``Store.claim(batch_key=...)``), and handed to the engine thread, which adds them
before its next step. With room it waits for the store to change (``Store.wait_for_change``: a job
queued by any process wakes it); without room, for a job of the batch to end.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from worker.waiting import first_of

if TYPE_CHECKING:
    from worker.batch_run import BatchRun

log = logging.getLogger(__name__)


async def top_up(run: BatchRun) -> None:
    """Claim jobs for ``run`` until it closes. Never cancelled: a claim that has started returns its jobs."""
    worker, store = run.worker, run.store
    failures = 0
    while not run.closing:
        room = run.room()
        if room <= 0 or worker.stopping:
            await run.wait_for_room()
            continue
        try:
            since = await store.version()
            if worker.stopping or run.closing:
                continue
            jobs = await worker.claim_jobs(room, batch_key=run.key)
        except Exception as exc:  # noqa: BLE001 - the batch runs on; the next try may find the store back
            failures += 1
            log.warning("could not look for jobs to join the running batch (%s); trying again", exc)
            await run.wait_for_room(worker.config.store_retry.delay(failures))
            continue
        failures = 0
        if jobs:
            run.join(jobs)  # after the batch closed, they come back to the worker as its leftovers
        if run.room() > 0 and not run.closing:
            await first_of(store.wait_for_change(since, worker.config.poll_interval_s), run.wait_for_room())
