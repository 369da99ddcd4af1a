"""Describe jobs on the worker: each one alone, in the engine thread, its answer stored as its result.

A describe job is short (one image pass and the phrases CLIP has not read yet), so it has no
progress, no checkpoint and no batch: its batch key is its own, so a claim that takes one takes
only describe jobs, and the worker runs each alone as it claims it. Its end goes through the worker's outbox like a
picture's (a description that the store can't take now is kept on disk until it can), and a
failure is judged by the same policies (worker.failures).
"""

from __future__ import annotations

import logging
import time
from functools import partial
from typing import TYPE_CHECKING

from db import Claim
from engine.describe import describe_picture
from jobspec import ParamError
from jobspec.describe import DescribeParams
from worker.outbox import Picture

if TYPE_CHECKING:
    from worker.worker import Worker

log = logging.getLogger(__name__)


async def run_describe(worker: Worker, claim: Claim) -> None:
    job, store = claim.job, worker.store
    if worker.stopping:
        await worker.outbox.write("hand the job back", job.id, partial(store.release, job.id, claim.token))
        return
    try:
        params = DescribeParams.from_json(job.params)
    except ParamError as exc:
        log.warning("job %s: unusable describe parameters: %s", job.id, exc)
        await worker.charge([claim], exc)
        return
    if await store.cancel_requested(job.id):
        await worker.outbox.write("confirm the cancel", job.id, partial(
            store.confirm_cancelled, job.id, claim.token, gpu_seconds=0.0))
        await worker.changed()
        return
    started = time.perf_counter()
    try:
        description = await worker.in_engine_thread(describe_picture, worker.engine, params)
    except Exception as exc:  # noqa: BLE001 - judged by its type (worker/failures.py)
        await worker.charge([claim], exc)
        return
    seconds = time.perf_counter() - started
    log.info("job %s: described in %.2f s against %d phrases", job.id, seconds, len(params.candidates))
    await worker.outbox.finish(Picture(job.id, claim.token, description.to_bytes(), seconds))
    await worker.changed()
