"""Reading jobs back: lookups, listings, change feed, queue position and stats."""

from __future__ import annotations

import json
import sqlite3

from db.clock import utc_day
from db.errors import NotFound
from db.jobs import Job
from db.sqlite.connection import read, write
from db.sqlite.rows import JOB_COLUMNS, fetch_job, fetch_jobs

SELECT_JOBS = f"SELECT {JOB_COLUMNS} FROM jobs"
ACTIVE = "state IN ('running', 'cancelling')"
# The waiting retry due first (the jobs_waiting index, in not_before order).
NEXT_DUE = "SELECT not_before FROM jobs WHERE not_before IS NOT NULL AND state = 'queued' ORDER BY not_before LIMIT 1"


def job(conn: sqlite3.Connection, job_id: int) -> Job | None:
    """The job ``job_id``, or None if there is none."""
    return fetch_job(conn, job_id)


def by_message(conn: sqlite3.Connection, message_id: int) -> Job | None:
    """The job whose card or result is the Discord message ``message_id``."""
    jobs = fetch_jobs(
        conn,
        f"{SELECT_JOBS} WHERE message_id = ? UNION ALL "
        f"{SELECT_JOBS} WHERE result_message_id = ? LIMIT 1",
        (message_id, message_id),
    )
    return jobs[0] if jobs else None


def guild_queue(conn: sqlite3.Connection, guild_id: int, limit: int) -> list[Job]:
    """The guild's running jobs, then its queued ones in submission order."""
    with read(conn):
        active = fetch_jobs(
            conn, f"{SELECT_JOBS} WHERE {ACTIVE} AND guild_id = ? ORDER BY id", (guild_id,)
        )
        queued = fetch_jobs(
            conn,
            f"{SELECT_JOBS} WHERE state = 'queued' AND guild_id = ? ORDER BY id LIMIT ?",
            (guild_id, max(0, limit - len(active))),
        )
    return (active + queued)[:limit]


def group(conn: sqlite3.Connection, group_id: int) -> list[Job]:
    """The jobs of one group (a grid's candidates), in the order they were queued."""
    return fetch_jobs(conn, f"{SELECT_JOBS} WHERE group_id = ? ORDER BY id", (group_id,))


def history(conn: sqlite3.Connection, user_id: int, guild_id: int | None, limit: int) -> list[Job]:
    """The user's jobs, newest first (in one guild, or all)."""
    if guild_id is None:
        return fetch_jobs(
            conn, f"{SELECT_JOBS} WHERE user_id = ? ORDER BY id DESC LIMIT ?", (user_id, limit)
        )
    return fetch_jobs(
        conn,
        f"{SELECT_JOBS} WHERE user_id = ? AND guild_id = ? ORDER BY id DESC LIMIT ?",
        (user_id, guild_id, limit),
    )


def changed_since(conn: sqlite3.Connection, version: int, limit: int) -> list[Job]:
    """Jobs changed after ``version``, oldest change first.

    About ``limit`` jobs, never splitting one version: every job of the last
    version returned is included, so polling with the highest version seen
    misses nothing.
    """
    with read(conn):
        cutoff = conn.execute(
            "SELECT version FROM jobs WHERE version > ? ORDER BY version LIMIT 1 OFFSET ?",
            (version, max(0, limit - 1)),
        ).fetchone()
        if cutoff is None:
            return fetch_jobs(
                conn, f"{SELECT_JOBS} WHERE version > ? ORDER BY version, id", (version,)
            )
        return fetch_jobs(
            conn,
            f"{SELECT_JOBS} WHERE version > ? AND version <= ? ORDER BY version, id",
            (version, cutoff[0]),
        )


def undelivered(conn: sqlite3.Connection, limit: int) -> list[Job]:
    """Finished jobs (any outcome) whose outcome the bot has not posted yet, oldest first."""
    return fetch_jobs(
        conn,
        f"{SELECT_JOBS} WHERE delivered = 0 AND finished_at IS NOT NULL "
        "ORDER BY finished_at LIMIT ?",
        (limit,),
    )


def current_version(conn: sqlite3.Connection) -> int:
    return int(conn.execute("SELECT version FROM store_state WHERE id = 1").fetchone()[0])


def data_version(conn: sqlite3.Connection) -> int:
    """A number that changes when another connection has committed since this one last asked
    (SQLite's shared memory, no disk): the cheap test of whether to read the version again."""
    return int(conn.execute("PRAGMA data_version").fetchone()[0])


def change_counters(conn: sqlite3.Connection) -> tuple[int, int]:
    """(``data_version``, the feed's version), read in that order: a commit between the two
    reads shows in the version and moves ``data_version`` again, so nothing slips between."""
    return data_version(conn), current_version(conn)


def next_due(conn: sqlite3.Connection) -> float | None:
    """The earliest ``not_before`` of a retry that waits (epoch seconds), or None."""
    row = conn.execute(NEXT_DUE).fetchone()
    return None if row is None else float(row[0])


def preview(conn: sqlite3.Connection, job_id: int) -> tuple[int, bytes] | None:
    row = conn.execute("SELECT step, image FROM previews WHERE job_id = ?", (job_id,)).fetchone()
    return (row["step"], bytes(row["image"])) if row else None


def checkpoint(conn: sqlite3.Connection, job_id: int) -> tuple[int, bytes] | None:
    row = conn.execute("SELECT step, data FROM checkpoints WHERE job_id = ?", (job_id,)).fetchone()
    return (row["step"], bytes(row["data"])) if row else None


def params_in_use(
    conn: sqlite3.Connection, *, ended_after: float, after_id: int, limit: int
) -> list[tuple[int, dict[str, object]]]:
    """(id, params) of jobs not ended, or ended at or after ``ended_after``, above ``after_id``."""
    rows = conn.execute(
        "SELECT id, params FROM jobs WHERE id > ? AND (finished_at IS NULL OR finished_at >= ?) "
        "ORDER BY id LIMIT ?",
        (after_id, ended_after, limit),
    ).fetchall()
    return [(row["id"], json.loads(row["params"])) for row in rows]


def result(conn: sqlite3.Connection, job_id: int) -> bytes | None:
    row = conn.execute("SELECT png FROM results WHERE job_id = ?", (job_id,)).fetchone()
    return bytes(row["png"]) if row else None


def throughput(conn: sqlite3.Connection) -> float | None:
    """Cost units per second the workers get through: measured on the running
    jobs if they report speed, else from finished jobs; None before either."""
    running = conn.execute(
        f"SELECT SUM(steps_per_s * cost / total_steps) FROM jobs WHERE {ACTIVE} AND steps_per_s > 0"
    ).fetchone()[0]
    if running:
        return float(running)
    measured = conn.execute("SELECT seconds_per_cost FROM store_state WHERE id = 1").fetchone()[0]
    return 1 / measured if measured else None


# For each other waiting member (or guild): how many turns it gets before the
# job, assuming round robin: all it has, up to ours (one fewer if it sorts after us).
_TURNS = "MIN(queued, CASE WHEN vtime < ? OR (vtime = ? AND {key} < ?) THEN ? ELSE ? END)"
OTHER_USERS = (
    f"SELECT COALESCE(SUM({_TURNS}), 0), COALESCE(SUM(queued_cost * 1.0 * {_TURNS} / queued), 0) "
    "FROM user_queues WHERE guild_id = ? AND queued > 0 AND user_id != ?"
).format(key="user_id")
OTHER_GUILDS = (
    f"SELECT COALESCE(SUM({_TURNS}), 0), COALESCE(SUM(queued_cost * 1.0 * {_TURNS} / queued), 0) "
    "FROM guild_queues WHERE queued > 0 AND guild_id != ?"
).format(key="guild_id")


def position(conn: sqlite3.Connection, job_id: int) -> tuple[int, float | None]:
    """(queued jobs expected to start before this one, seconds until it should finish).

    Running: (0, its remaining time). Finished: (0, 0.0). The count assumes
    round robin among waiting guilds and members; the time divides the cost of
    the running remainder, the jobs ahead and this job by the measured throughput.
    """
    with read(conn):
        job = fetch_job(conn, job_id)
        if job is None:
            raise NotFound.job(job_id)
        if job.state.is_terminal:
            return 0, 0.0
        rate = throughput(conn)
        if job.state.is_active:
            if job.steps_per_s:
                return 0, (job.total_steps - job.step) / job.steps_per_s
            left = job.cost * (job.total_steps - job.step) / job.total_steps
            return 0, left / rate if rate else None
        ahead, cost_ahead = conn.execute(
            "SELECT COUNT(*), COALESCE(SUM(cost), 0) FROM jobs WHERE state = 'queued' "
            "AND guild_id = ? AND user_id = ? AND (priority > ? OR (priority = ? AND id < ?))",
            (job.guild_id, job.user_id, job.priority, job.priority, job.id),
        ).fetchone()
        user_vtime = conn.execute(
            "SELECT vtime FROM user_queues WHERE guild_id = ? AND user_id = ?",
            (job.guild_id, job.user_id),
        ).fetchone()[0]
        turns = (user_vtime, user_vtime, job.user_id, ahead + 1, ahead)
        count, cost = conn.execute(
            OTHER_USERS, (*turns, *turns, job.guild_id, job.user_id)
        ).fetchone()
        ahead, cost_ahead = ahead + count, cost_ahead + cost
        guild_vtime = conn.execute(
            "SELECT vtime FROM guild_queues WHERE guild_id = ?", (job.guild_id,)
        ).fetchone()[0]
        turns = (guild_vtime, guild_vtime, job.guild_id, ahead + 1, ahead)
        count, cost = conn.execute(OTHER_GUILDS, (*turns, *turns, job.guild_id)).fetchone()
        ahead, cost_ahead = ahead + count, cost_ahead + cost
        if not rate:
            return ahead, None
        running_left = conn.execute(
            f"SELECT COALESCE(SUM(cost * 1.0 * (total_steps - step) / total_steps), 0) "
            f"FROM jobs WHERE {ACTIVE}"
        ).fetchone()[0]
        return ahead, (running_left + cost_ahead + job.cost) / rate


def stats(conn: sqlite3.Connection, now: float) -> dict[str, object]:
    """Figures for /status."""
    with read(conn):
        queued, guilds_waiting = conn.execute(
            "SELECT COALESCE(SUM(queued), 0), COUNT(*) FROM guild_queues WHERE queued > 0"
        ).fetchone()
        retrying = conn.execute("SELECT COUNT(*) FROM jobs WHERE not_before IS NOT NULL").fetchone()[0]
        running, cancelling, workers, steps_per_s = conn.execute(
            f"SELECT COALESCE(SUM(state = 'running'), 0), COALESCE(SUM(state = 'cancelling'), 0), "
            f"COUNT(DISTINCT lease_owner), SUM(steps_per_s) FROM jobs WHERE {ACTIVE}"
        ).fetchone()
        gpu_today = conn.execute(
            "SELECT COALESCE(SUM(gpu_seconds), 0) FROM gpu_usage WHERE day = ?", (utc_day(now),)
        ).fetchone()[0]
        version, seconds_per_cost = conn.execute(
            "SELECT version, seconds_per_cost FROM store_state WHERE id = 1"
        ).fetchone()
        rate = throughput(conn)
    return {
        "queued": queued,
        "retrying": retrying,
        "running": running,
        "cancelling": cancelling,
        "workers": workers,
        "guilds_waiting": guilds_waiting,
        "steps_per_s": steps_per_s,
        "cost_per_s": rate,
        "seconds_per_cost": seconds_per_cost,
        "gpu_seconds_today": gpu_today,
        "version": version,
    }


def prune(
    conn: sqlite3.Connection,
    *,
    previews_before: float,
    results_before: float | None,
    usage_before_day: int,
) -> dict[str, int]:
    """Delete previews of jobs finished before a time, delivered results before
    another (None: keep them), and daily GPU usage before a day."""
    with write(conn):
        previews = conn.execute(
            "DELETE FROM previews WHERE job_id IN (SELECT p.job_id FROM previews p "
            "JOIN jobs j ON j.id = p.job_id WHERE j.finished_at < ?)",
            (previews_before,),
        ).rowcount
        results = 0
        if results_before is not None:
            results = conn.execute(
                "DELETE FROM results WHERE job_id IN (SELECT r.job_id FROM results r "
                "JOIN jobs j ON j.id = r.job_id WHERE j.delivered = 1 AND j.finished_at < ?)",
                (results_before,),
            ).rowcount
        checkpoints = conn.execute(
            "DELETE FROM checkpoints WHERE job_id IN (SELECT c.job_id FROM checkpoints c "
            "JOIN jobs j ON j.id = c.job_id WHERE j.state IN ('succeeded', 'failed', 'cancelled'))"
        ).rowcount
        usage = conn.execute("DELETE FROM gpu_usage WHERE day < ?", (usage_before_day,)).rowcount
    return {"previews": previews, "results": results, "checkpoints": checkpoints, "gpu_usage": usage}
