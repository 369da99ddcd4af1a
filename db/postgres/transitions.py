"""State changes of a claimed job (the worker's side) and cancellation, on PostgreSQL.

As in SqliteStore, every change a worker asks for is fenced by its lease
token: the ending calls lock the job row with ``SELECT ... FOR UPDATE``
(which waits for a concurrent change and then re-checks the token on the
newest row), heartbeats and progress update the job's progress row only
where it still carries the token. Every end of an attempt deletes the
progress row, so a late heartbeat finds nothing to update.
"""

from __future__ import annotations

import logging

from db.errors import InvalidInput, NotAllowed, NotFound
from db.jobs import MESSAGE_COLUMNS, Job, ProgressAck
from db.postgres.accounting import enter_queue, leave_queue, settle
from db.postgres.connection import Tx
from db.postgres.rows import fetch_job
from db.postgres.scheduler import CHECKPOINT_STEP
from db.retries import RetryBackoff

log = logging.getLogger(__name__)

HELD = (
    "SELECT id, guild_id, user_id, state, cost, charged_s, attempts, max_attempts, total_steps, deferrals "
    "FROM jobs WHERE id = %s AND lease_token = %s AND state IN ('running', 'cancelling') FOR UPDATE"
)
# Ends the attempt: drops the progress row (folding its step and speed into the job as
# ``progress`` says: 'keep' them, 'done' at the last step, 'reset' for another attempt, or
# 'resume' for another attempt at the kept checkpoint's step) and clears the lease.
END = f"""WITH p AS (DELETE FROM job_progress WHERE job_id = %(id)s RETURNING step, steps_per_s)
    UPDATE jobs SET state = %(state)s, error = %(error)s, finished_at = %(finished)s,
        gpu_seconds = gpu_seconds + %(gpu)s, version = %(version)s, lease_owner = NULL,
        lease_token = NULL, charged_s = 0, attempts = attempts - %(give_back)s,
        step = CASE %(progress)s WHEN 'keep' THEN COALESCE((SELECT step FROM p), step)
            WHEN 'done' THEN total_steps WHEN 'resume' THEN COALESCE({CHECKPOINT_STEP}, 0) ELSE 0 END,
        steps_per_s = CASE WHEN %(progress)s IN ('reset', 'resume') THEN NULL
            ELSE COALESCE((SELECT steps_per_s FROM p), steps_per_s) END
    WHERE id = %(id)s"""


async def _end(
    tx: Tx,
    job_id: int,
    state: str,
    *,
    error: str | None,
    finished: float | None,
    gpu_seconds: float,
    progress: str,
    give_back: int = 0,
) -> None:
    await tx.run(
        END,
        {
            "id": job_id,
            "state": state,
            "error": error,
            "finished": finished,
            "gpu": gpu_seconds,
            "version": await tx.version(),
            "give_back": give_back,
            "progress": progress,
        },
    )


async def heartbeat(tx: Tx, job_id: int, token: str, *, lease_s: float, now: float) -> bool:
    """Extend the lease; False if the worker no longer holds the job."""
    changed = await tx.run(
        "UPDATE job_progress SET lease_expires_at = %s WHERE job_id = %s AND lease_token = %s",
        (now + lease_s, job_id, token),
    )
    return changed == 1


async def report_progress(
    tx: Tx,
    job_id: int,
    token: str,
    *,
    step: int,
    preview: bytes | None,
    steps_per_s: float | None,
    lease_s: float | None,
    now: float,
) -> ProgressAck:
    """Record the step reached and the latest preview (replacing the previous one)."""
    row = await tx.one(
        "SELECT j.state, j.total_steps FROM job_progress p JOIN jobs j ON j.id = p.job_id "
        "WHERE p.job_id = %s AND p.lease_token = %s",
        (job_id, token),
    )
    if row is None:
        return ProgressAck(ok=False)
    if step > row["total_steps"]:
        raise InvalidInput("step", f"step {step} is past the job's {row['total_steps']} steps (job {job_id}).")
    changed = await tx.run(
        "UPDATE job_progress SET step = %s, steps_per_s = COALESCE(%s, steps_per_s), version = %s, "
        "lease_expires_at = COALESCE(%s, lease_expires_at) WHERE job_id = %s AND lease_token = %s",
        (step, steps_per_s, await tx.version(), None if lease_s is None else now + lease_s, job_id, token),
    )
    if changed == 0:  # the lease ended while we looked
        return ProgressAck(ok=False)
    if preview is not None:
        await tx.run(
            "INSERT INTO previews (job_id, step, image, updated_at) VALUES (%s, %s, %s, %s) "
            "ON CONFLICT (job_id) DO UPDATE SET step = excluded.step, "
            "image = excluded.image, updated_at = excluded.updated_at",
            (job_id, step, preview, now),
        )
    return ProgressAck(ok=True, cancel=row["state"] == "cancelling")


async def finish(tx: Tx, job_id: int, token: str, *, result_png: bytes, gpu_seconds: float, now: float) -> bool:
    """Succeed the job with its picture. A cancel that came too late is ignored."""
    row = await tx.one(HELD, (job_id, token))
    if row is None:
        return False
    await _end(tx, job_id, "succeeded", error=None, finished=now, gpu_seconds=gpu_seconds, progress="done")
    await tx.run(
        "INSERT INTO results (job_id, png, created_at) VALUES (%s, %s, %s) "
        "ON CONFLICT (job_id) DO UPDATE SET png = excluded.png, created_at = excluded.created_at",
        (job_id, result_png, now),
    )
    await settle(tx, row, gpu_seconds=gpu_seconds, leaves=True, now=now, speed_sample=True)
    log.info("job %d succeeded after %.1f GPU seconds", job_id, gpu_seconds)
    return True


async def fail(
    tx: Tx,
    job_id: int,
    token: str,
    *,
    error: str,
    gpu_seconds: float,
    retry: bool,
    count_attempt: bool,
    backoff: RetryBackoff,
    draw: float,
    now: float,
) -> bool:
    """End the attempt with an error: back to the queue, waiting out its backoff, if ``retry``
    and attempts are left (or the attempt is not counted), else failed (or cancelled, if the
    user asked meanwhile). See ``db.retries``."""
    row = await tx.one(HELD, (job_id, token))
    if row is None:
        return False
    counted = count_attempt or row["deferrals"] >= backoff.max_deferrals
    requeue = retry and row["state"] == "running" and (not counted or row["attempts"] < row["max_attempts"])
    if requeue:
        wait = backoff.delay(row["attempts"] if counted else row["deferrals"] + 1, draw)
        given_back = 0 if counted else 1
        await _end(
            tx, job_id, "queued", error=error, finished=None, gpu_seconds=gpu_seconds, progress="reset",
            give_back=given_back,
        )
        await tx.run(
            "UPDATE jobs SET not_before = %s, deferrals = deferrals + %s WHERE id = %s",
            (now + wait, given_back, job_id),
        )
        await settle(tx, row, gpu_seconds=gpu_seconds, leaves=False, now=now)
        state = f"queued, waiting {wait:.0f} s"
    else:
        state = "cancelled" if retry and row["state"] == "cancelling" else "failed"
        await _end(tx, job_id, state, error=error, finished=now, gpu_seconds=gpu_seconds, progress="keep")
        await settle(tx, row, gpu_seconds=gpu_seconds, leaves=True, now=now)
    log.warning(
        "job %d attempt %d of %d failed (%s)%s; now %s", job_id, row["attempts"], row["max_attempts"], error,
        "" if counted else " (not counted: not the job's fault)", state,
    )
    return True


async def save_checkpoint(tx: Tx, job_id: int, token: str, *, step: int, data: bytes, now: float) -> bool:
    """Replace the job's checkpoint; False if the worker no longer holds the job. The job row is
    share-locked, so an end of the attempt (which deletes the checkpoint) can't pass it."""
    row = await tx.one(HELD.replace("FOR UPDATE", "FOR SHARE"), (job_id, token))
    if row is None:
        return False
    if step > row["total_steps"]:
        raise InvalidInput("step", f"step {step} is past the job's {row['total_steps']} steps (job {job_id}).")
    await tx.run(
        "INSERT INTO checkpoints (job_id, step, data, saved_at) VALUES (%s, %s, %s, %s) "
        "ON CONFLICT (job_id) DO UPDATE SET step = excluded.step, data = excluded.data, saved_at = excluded.saved_at",
        (job_id, step, data, now),
    )
    return True


async def discard_checkpoint(tx: Tx, job_id: int, token: str) -> bool:
    """Delete an unusable checkpoint; the job starts over from step 0."""
    row = await tx.one(HELD, (job_id, token))
    if row is None:
        return False
    await tx.run("DELETE FROM checkpoints WHERE job_id = %s", (job_id,))
    await tx.run("UPDATE job_progress SET step = 0, version = %s WHERE job_id = %s", (await tx.version(), job_id))
    await tx.run(
        "UPDATE jobs SET step = 0, resumed_from_step = NULL, version = %s WHERE id = %s", (await tx.version(), job_id)
    )
    log.warning("job %d: its checkpoint was unusable and is gone; starting over", job_id)
    return True


async def release(tx: Tx, job_id: int, token: str, *, now: float) -> bool:
    """A worker shutting down hands the job back; the attempt does not count, and the job shows the
    step its next attempt starts at (its checkpoint's, kept; 0 without one)."""
    row = await tx.one(HELD, (job_id, token))
    if row is None:
        return False
    if row["state"] == "cancelling":
        state = "cancelled"
        await _end(tx, job_id, state, error=None, finished=now, gpu_seconds=0.0, progress="keep")
        await settle(tx, row, gpu_seconds=0.0, leaves=True, now=now)
    else:
        state = "queued"
        await _end(tx, job_id, state, error=None, finished=None, gpu_seconds=0.0, progress="resume", give_back=1)
        await settle(tx, row, gpu_seconds=0.0, leaves=False, now=now)
        await enter_queue(tx, row["guild_id"], row["user_id"], jobs=1, cost=row["cost"], pending=0)
    log.info("job %d released by its worker; now %s", job_id, state)
    return True


async def confirm_cancelled(tx: Tx, job_id: int, token: str, *, gpu_seconds: float, now: float) -> bool:
    """The worker stopped a job whose cancel was requested."""
    row = await tx.one(HELD, (job_id, token))
    if row is None or row["state"] != "cancelling":
        return False
    await _end(tx, job_id, "cancelled", error=None, finished=now, gpu_seconds=gpu_seconds, progress="keep")
    await settle(tx, row, gpu_seconds=gpu_seconds, leaves=True, now=now)
    log.info("job %d cancelled by its worker after %.1f GPU seconds", job_id, gpu_seconds)
    return True


async def request_cancel(tx: Tx, job_id: int, *, by_user: int, is_admin: bool, now: float) -> Job:
    """Cancel a queued job at once, or ask the worker to stop a running one."""
    row = await tx.one(
        "SELECT guild_id, user_id, state, cost, not_before FROM jobs WHERE id = %s FOR UPDATE", (job_id,)
    )
    if row is None:
        raise NotFound(f"Job {job_id} does not exist. Check the job number and try again.")
    if row["user_id"] != by_user and not is_admin:
        raise NotAllowed("Only the member who started this job or a server admin can cancel it.")
    if row["state"] == "queued":
        await tx.run(
            "UPDATE jobs SET state = 'cancelled', finished_at = %s, version = %s, not_before = NULL WHERE id = %s",
            (now, await tx.version(), job_id),
        )
        await leave_queue(tx, row["guild_id"], row["user_id"], cost=row["cost"], waiting=row["not_before"] is not None)
    elif row["state"] == "running":
        await tx.run(
            "UPDATE jobs SET state = 'cancelling', version = %s WHERE id = %s", (await tx.version(), job_id)
        )
    job = await fetch_job(tx, job_id)
    assert job is not None
    if job.state != row["state"]:
        log.info("job %d: cancel requested by user %d; now %s", job_id, by_user, job.state)
    return job


async def mark_delivered(tx: Tx, job_id: int, *, result_message_id: int | None) -> bool:
    """Record that the bot posted the finished job's outcome (in ``result_message_id``, if
    given); False, changing nothing, if the job is not finished or was delivered already."""
    row = await tx.one(
        "SELECT 1 FROM jobs WHERE id = %s AND NOT delivered AND state IN ('succeeded', 'failed', 'cancelled') "
        "FOR UPDATE",
        (job_id,),
    )
    if row is None:
        return False
    await tx.run(
        "UPDATE jobs SET delivered = true, result_message_id = COALESCE(%s::bigint, result_message_id), "
        "version = %s WHERE id = %s",
        (result_message_id, await tx.version(), job_id),
    )
    return True


async def set_message(tx: Tx, job_id: int, message_id: int, *, kind: str) -> Job:
    """Remember the Discord message that shows the job (its card or its result)."""
    column = MESSAGE_COLUMNS[kind]
    if await tx.one("SELECT 1 FROM jobs WHERE id = %s FOR UPDATE", (job_id,)) is None:
        raise NotFound(f"Job {job_id} does not exist. Check the job number and try again.")
    # The column name comes from MESSAGE_COLUMNS, never from the caller.
    await tx.run(f"UPDATE jobs SET {column} = %s, version = %s WHERE id = %s", (message_id, await tx.version(), job_id))
    job = await fetch_job(tx, job_id)
    assert job is not None
    return job
