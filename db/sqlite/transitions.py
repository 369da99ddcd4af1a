"""State changes of a claimed job (the worker's side) and cancellation.

Every change a worker asks for is guarded by the job's state and lease token
in the UPDATE itself, so a worker that lost its lease (the job expired and
was claimed again) changes nothing: the call returns False.
"""

from __future__ import annotations

import logging
import sqlite3

from db.errors import InvalidInput, NotAllowed, NotFound
from db.jobs import MESSAGE_COLUMNS, Job, ProgressAck
from db.retries import RetryBackoff
from db.sqlite.connection import next_version, write
from db.sqlite.rows import fetch_job
from db.sqlite.scheduler import CHECKPOINT_STEP, enter_queue, leave_queue, settle

log = logging.getLogger(__name__)

HELD = (
    "SELECT id, guild_id, user_id, state, cost, charged_s, attempts, max_attempts, total_steps, "
    "deferrals "
    "FROM jobs WHERE id = ? AND lease_token = ? AND state IN ('running', 'cancelling')"
)
# Clears the lease and ends the job; bind: state, error, finished_at, gpu_seconds, version, id.
END = (
    "UPDATE jobs SET state = ?, error = ?, finished_at = ?, gpu_seconds = gpu_seconds + ?, "
    "version = ?, lease_owner = NULL, lease_token = NULL, lease_expires_at = NULL, "
    "charged_s = 0 WHERE id = ?"
)


def heartbeat(
    conn: sqlite3.Connection, job_id: int, token: str, *, lease_s: float, now: float
) -> bool:
    """Extend the lease; False if the worker no longer holds the job."""
    cursor = conn.execute(
        "UPDATE jobs SET lease_expires_at = ? WHERE id = ? AND lease_token = ? "
        "AND state IN ('running', 'cancelling')",
        (now + lease_s, job_id, token),
    )
    return cursor.rowcount == 1


def report_progress(
    conn: sqlite3.Connection,
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
    with write(conn):
        row = conn.execute(HELD, (job_id, token)).fetchone()
        if row is None:
            return ProgressAck(ok=False)
        if step > row["total_steps"]:
            raise InvalidInput(
                "step", f"step {step} is past the job's {row['total_steps']} steps (job {job_id})."
            )
        conn.execute(
            "UPDATE jobs SET step = ?, steps_per_s = COALESCE(?, steps_per_s), version = ?, "
            "lease_expires_at = COALESCE(?, lease_expires_at) WHERE id = ?",
            (
                step,
                steps_per_s,
                next_version(conn),
                None if lease_s is None else now + lease_s,
                job_id,
            ),
        )
        if preview is not None:
            conn.execute(
                "INSERT INTO previews (job_id, step, image, updated_at) VALUES (?, ?, ?, ?) "
                "ON CONFLICT (job_id) DO UPDATE SET step = excluded.step, "
                "image = excluded.image, updated_at = excluded.updated_at",
                (job_id, step, preview, now),
            )
    return ProgressAck(ok=True, cancel=row["state"] == "cancelling")


def finish(
    conn: sqlite3.Connection,
    job_id: int,
    token: str,
    *,
    result_png: bytes,
    gpu_seconds: float,
    now: float,
) -> bool:
    """Succeed the job with its picture. A cancel that came too late is ignored."""
    with write(conn):
        row = conn.execute(HELD, (job_id, token)).fetchone()
        if row is None:
            return False
        conn.execute(END, ("succeeded", None, now, gpu_seconds, next_version(conn), job_id))
        conn.execute("UPDATE jobs SET step = total_steps WHERE id = ?", (job_id,))
        conn.execute(
            "INSERT INTO results (job_id, png, created_at) VALUES (?, ?, ?) "
            "ON CONFLICT (job_id) DO UPDATE SET png = excluded.png, "
            "created_at = excluded.created_at",
            (job_id, result_png, now),
        )
        settle(conn, row, gpu_seconds=gpu_seconds, leaves=True, now=now, speed_sample=True)
    log.info("job %d succeeded after %.1f GPU seconds", job_id, gpu_seconds)
    return True


def fail(
    conn: sqlite3.Connection,
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
    with write(conn):
        row = conn.execute(HELD, (job_id, token)).fetchone()
        if row is None:
            return False
        version = next_version(conn)
        counted = count_attempt or row["deferrals"] >= backoff.max_deferrals
        requeue = retry and row["state"] == "running" and (not counted or row["attempts"] < row["max_attempts"])
        if requeue:
            wait = backoff.delay(row["attempts"] if counted else row["deferrals"] + 1, draw)
            conn.execute(END, ("queued", error, None, gpu_seconds, version, job_id))
            conn.execute(
                "UPDATE jobs SET step = 0, steps_per_s = NULL, not_before = ?, "
                "attempts = attempts - ?, deferrals = deferrals + ? WHERE id = ?",
                (now + wait, 0 if counted else 1, 0 if counted else 1, job_id),
            )
            settle(conn, row, gpu_seconds=gpu_seconds, leaves=False, now=now)
            state = f"queued, waiting {wait:.0f} s"
        else:
            state = "cancelled" if retry and row["state"] == "cancelling" else "failed"
            conn.execute(END, (state, error, now, gpu_seconds, version, job_id))
            settle(conn, row, gpu_seconds=gpu_seconds, leaves=True, now=now)
    log.warning(
        "job %d attempt %d of %d failed (%s)%s; now %s",
        job_id,
        row["attempts"],
        row["max_attempts"],
        error,
        "" if counted else " (not counted: not the job's fault)",
        state,
    )
    return True


def save_checkpoint(
    conn: sqlite3.Connection, job_id: int, token: str, *, step: int, data: bytes, now: float
) -> bool:
    """Replace the job's checkpoint; False if the worker no longer holds the job."""
    with write(conn):
        row = conn.execute(HELD, (job_id, token)).fetchone()
        if row is None:
            return False
        if step > row["total_steps"]:
            raise InvalidInput(
                "step", f"step {step} is past the job's {row['total_steps']} steps (job {job_id})."
            )
        conn.execute(
            "INSERT INTO checkpoints (job_id, step, data, saved_at) VALUES (?, ?, ?, ?) "
            "ON CONFLICT (job_id) DO UPDATE SET step = excluded.step, data = excluded.data, "
            "saved_at = excluded.saved_at",
            (job_id, step, data, now),
        )
    return True


def discard_checkpoint(conn: sqlite3.Connection, job_id: int, token: str) -> bool:
    """Delete an unusable checkpoint; the job starts over from step 0."""
    with write(conn):
        row = conn.execute(HELD, (job_id, token)).fetchone()
        if row is None:
            return False
        conn.execute("DELETE FROM checkpoints WHERE job_id = ?", (job_id,))
        conn.execute(
            "UPDATE jobs SET step = 0, resumed_from_step = NULL, version = ? WHERE id = ?",
            (next_version(conn), job_id),
        )
    log.warning("job %d: its checkpoint was unusable and is gone; starting over", job_id)
    return True


def release(conn: sqlite3.Connection, job_id: int, token: str, *, now: float) -> bool:
    """A worker shutting down hands the job back; the attempt does not count, and the job shows the
    step its next attempt starts at (its checkpoint's, kept; 0 without one)."""
    with write(conn):
        row = conn.execute(HELD, (job_id, token)).fetchone()
        if row is None:
            return False
        version = next_version(conn)
        if row["state"] == "cancelling":
            conn.execute(END, ("cancelled", None, now, 0.0, version, job_id))
            settle(conn, row, gpu_seconds=0.0, leaves=True, now=now)
        else:
            conn.execute(END, ("queued", None, None, 0.0, version, job_id))
            conn.execute(  # the step its next attempt starts at: its checkpoint's, kept, or 0
                f"UPDATE jobs SET attempts = attempts - 1, step = COALESCE({CHECKPOINT_STEP}, 0), "
                "steps_per_s = NULL WHERE id = ?",
                (job_id,),
            )
            settle(conn, row, gpu_seconds=0.0, leaves=False, now=now)
            enter_queue(conn, row["guild_id"], row["user_id"], jobs=1, cost=row["cost"], pending=0)
    log.info(
        "job %d released by its worker; now %s",
        job_id,
        "cancelled" if row["state"] == "cancelling" else "queued",
    )
    return True


def confirm_cancelled(
    conn: sqlite3.Connection, job_id: int, token: str, *, gpu_seconds: float, now: float
) -> bool:
    """The worker stopped a job whose cancel was requested."""
    with write(conn):
        row = conn.execute(HELD, (job_id, token)).fetchone()
        if row is None or row["state"] != "cancelling":
            return False
        conn.execute(END, ("cancelled", None, now, gpu_seconds, next_version(conn), job_id))
        settle(conn, row, gpu_seconds=gpu_seconds, leaves=True, now=now)
    log.info("job %d cancelled by its worker after %.1f GPU seconds", job_id, gpu_seconds)
    return True


def request_cancel(
    conn: sqlite3.Connection, job_id: int, *, by_user: int, is_admin: bool, now: float
) -> Job:
    """Cancel a queued job at once, or ask the worker to stop a running one."""
    with write(conn):
        row = conn.execute(
            "SELECT guild_id, user_id, state, cost, not_before FROM jobs WHERE id = ?", (job_id,)
        ).fetchone()
        if row is None:
            raise NotFound.job(job_id)
        if row["user_id"] != by_user and not is_admin:
            raise NotAllowed(
                "Only the member who started this job or a server admin can cancel it."
            )
        if row["state"] == "queued":
            conn.execute(
                "UPDATE jobs SET state = 'cancelled', finished_at = ?, version = ?, not_before = NULL "
                "WHERE id = ? AND state = 'queued'",
                (now, next_version(conn), job_id),
            )
            leave_queue(
                conn, row["guild_id"], row["user_id"], cost=row["cost"], waiting=row["not_before"] is not None
            )
        elif row["state"] == "running":
            conn.execute(
                "UPDATE jobs SET state = 'cancelling', version = ? "
                "WHERE id = ? AND state = 'running'",
                (next_version(conn), job_id),
            )
        job = fetch_job(conn, job_id)
    assert job is not None
    if job.state != row["state"]:
        log.info("job %d: cancel requested by user %d; now %s", job_id, by_user, job.state)
    return job


def mark_delivered(conn: sqlite3.Connection, job_id: int, *, result_message_id: int | None) -> bool:
    """Record that the bot posted the finished job's outcome (in ``result_message_id``, if
    given); False, changing nothing, if the job is not finished or was delivered already."""
    with write(conn):
        cursor = conn.execute(
            "UPDATE jobs SET delivered = 1, result_message_id = COALESCE(?, result_message_id) "
            "WHERE id = ? AND delivered = 0 AND state IN ('succeeded', 'failed', 'cancelled')",
            (result_message_id, job_id),
        )
        if cursor.rowcount == 0:
            return False
        conn.execute("UPDATE jobs SET version = ? WHERE id = ?", (next_version(conn), job_id))
    return True


def set_message(conn: sqlite3.Connection, job_id: int, message_id: int, *, kind: str) -> Job:
    """Remember the Discord message that shows the job (its card or its result)."""
    column = MESSAGE_COLUMNS[kind]  # a fixed column name, never the caller's text
    with write(conn):
        cursor = conn.execute(
            f"UPDATE jobs SET {column} = ?, version = ? WHERE id = ?",
            (message_id, next_version(conn), job_id),
        )
        if cursor.rowcount == 0:
            raise NotFound.job(job_id)
        job = fetch_job(conn, job_id)
    assert job is not None
    return job
