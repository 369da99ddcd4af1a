"""The fair-share queue: which job runs next, and reclaiming dead workers' jobs.

Fairness is start-time fair queueing on GPU seconds, on two levels.
Each guild has a virtual time ``vtime``: the GPU seconds charged to it.
A claim takes the waiting guild with the least ``vtime`` (ties: the one
claimed longest ago), then inside it the waiting member with the least
``vtime``, then that member's job with the highest priority, oldest first.
The job's estimated GPU seconds (cost x measured seconds per cost unit) are
charged to both at once, and replaced by the measured GPU seconds when the
attempt ends. A guild (or member) that starts waiting again is lifted to at
least the least ``vtime`` of those already waiting minus ``IDLE_CREDIT_S``:
it goes first, but idling banks no more credit than that.
Counters in ``guild_queues``/``user_queues`` (queued, queued_cost, pending)
make each pick an index lookup; they change in the same transaction as the
job rows, and ``rebuild_queues`` recomputes them from the jobs. A retry that
waits (``not_before`` set, ``db.retries``) is pending but not queued in them
until ``due`` counts it in at the first claim after its time.
"""

from __future__ import annotations

import logging
import secrets
import sqlite3

from db.clock import utc_day
from db.fair_share import DEFAULT_SECONDS_PER_COST, IDLE_CREDIT_S, SPEED_EMA_WEIGHT, SPEED_SAMPLE_RANGE
from db.jobs import Claim
from db.sqlite.connection import next_version, write
from db.sqlite.rows import JOB_COLUMNS, job_from_row

log = logging.getLogger(__name__)

CLAIM_GUILD = (
    "SELECT guild_id, vtime FROM guild_queues WHERE queued > 0 "
    "ORDER BY vtime, last_claim, guild_id LIMIT 1"
)
CLAIM_USER = (
    "SELECT user_id, vtime FROM user_queues WHERE guild_id = ? AND queued > 0 "
    "ORDER BY vtime, last_claim, user_id LIMIT 1"
)
CLAIM_JOB = (
    "SELECT id, batch_key FROM jobs WHERE state = 'queued' AND guild_id = ? AND user_id = ? AND not_before IS NULL "
    "ORDER BY priority DESC, id LIMIT 1"
)
_HAS_SHAPE = (
    "SELECT 1 FROM jobs j WHERE j.state = 'queued' AND j.guild_id = {0}.guild_id "
    "AND j.batch_key = ? AND j.not_before IS NULL"
)
SHAPE_GUILD = (
    "SELECT guild_id, vtime FROM guild_queues g WHERE queued > 0 "
    f"AND EXISTS ({_HAS_SHAPE.format('g')}) ORDER BY vtime, last_claim, guild_id LIMIT 1"
)
SHAPE_USER = (
    "SELECT user_id, vtime FROM user_queues u WHERE guild_id = ? AND queued > 0 "
    f"AND EXISTS ({_HAS_SHAPE.format('u')} AND j.user_id = u.user_id) "
    "ORDER BY vtime, last_claim, user_id LIMIT 1"
)
SHAPE_JOB = (
    "SELECT id, batch_key FROM jobs WHERE state = 'queued' AND guild_id = ? AND batch_key = ? "
    "AND user_id = ? AND not_before IS NULL ORDER BY priority DESC, id LIMIT 1"
)
EXPIRED = (
    "SELECT id, guild_id, user_id, state, attempts, max_attempts, cost, lease_owner "
    "FROM jobs WHERE lease_expires_at < ?"
)
# Waiting retries whose time has come (not_before passed), oldest first.
DUE = (
    "SELECT id, guild_id, user_id, cost FROM jobs WHERE not_before <= ? AND state = 'queued' "
    "ORDER BY not_before, id"
)
# A job with a checkpoint starts at its step (CHECKPOINT_STEP: NULL without one).
CHECKPOINT_STEP = "(SELECT c.step FROM checkpoints c WHERE c.job_id = jobs.id)"
TAKE = f"""UPDATE jobs SET state = 'running', attempts = attempts + 1, lease_owner = ?,
    lease_token = ?, lease_expires_at = ?, started_at = ?, step = COALESCE({CHECKPOINT_STEP}, 0),
    resumed_from_step = {CHECKPOINT_STEP}, steps_per_s = NULL,
    charged_s = cost * ?, version = ?
    WHERE id = ? AND state = 'queued' RETURNING {JOB_COLUMNS}"""


def claim(
    conn: sqlite3.Connection,
    worker: str,
    *,
    lease_s: float,
    max_jobs: int,
    now: float,
    batch_key: str | None = None,
) -> list[Claim]:
    """Reclaim expired leases, then lease up to ``max_jobs`` jobs of one batch key to ``worker``:
    ``batch_key``'s, or the first fairly picked job's."""
    with write(conn):
        reclaim_expired(conn, now)
        due(conn, now)
        claims: list[Claim] = []
        shape = batch_key
        version, rate = 0, seconds_per_cost(conn)
        while len(claims) < max_jobs:
            picked = _pick(conn, shape)
            if picked is None:
                break
            version = version or next_version(conn)
            claims.append(_take(conn, picked, worker, lease_s, now, version, rate))
            shape = picked[2]["batch_key"]
    for c in claims:
        log.info(
            "job %d claimed by %s (attempt %d of %d)",
            c.job.id,
            worker,
            c.job.attempts,
            c.job.max_attempts,
        )
    return claims


def _pick(conn: sqlite3.Connection, shape: str | None) -> tuple[sqlite3.Row, ...] | None:
    """(guild row, user row, job row) of the next job, optionally of one batch key (``shape``)."""
    for _ in range(2):
        if shape is None:
            guild = conn.execute(CLAIM_GUILD).fetchone()
            user = guild and conn.execute(CLAIM_USER, (guild["guild_id"],)).fetchone()
            job = user and conn.execute(CLAIM_JOB, (guild["guild_id"], user["user_id"])).fetchone()
        else:
            guild = conn.execute(SHAPE_GUILD, (shape,)).fetchone()
            user = guild and conn.execute(SHAPE_USER, (guild["guild_id"], shape)).fetchone()
            job = (
                user
                and conn.execute(SHAPE_JOB, (guild["guild_id"], shape, user["user_id"])).fetchone()
            )
        if guild is None:
            return None
        if job:
            return guild, user, job
        # A counter says work is waiting but no job row agrees: repair and retry.
        log.error("queue counters disagree with the jobs table (guild %d); rebuilding", guild[0])
        rebuild_queues(conn)
    return None


def _take(
    conn: sqlite3.Connection,
    picked: tuple[sqlite3.Row, ...],
    worker: str,
    lease_s: float,
    now: float,
    version: int,
    rate: float,
) -> Claim:
    """Lease the picked job to ``worker`` and charge its estimated GPU seconds
    (``rate``: seconds per cost unit)."""
    guild, user, job = picked
    token = secrets.token_hex(16)
    row = conn.execute(
        TAKE, (worker, token, now + lease_s, now, rate, version, job["id"])
    ).fetchone()
    charge, cost = row["cost"] * rate, row["cost"]
    conn.execute("UPDATE store_state SET vtime = ? WHERE id = 1", (guild["vtime"],))
    conn.execute(
        "UPDATE guild_queues SET vtime = vtime + ?, user_vtime = ?, last_claim = ?, "
        "queued = queued - 1, queued_cost = queued_cost - ? WHERE guild_id = ?",
        (charge, user["vtime"], version, cost, guild["guild_id"]),
    )
    conn.execute(
        "UPDATE user_queues SET vtime = vtime + ?, last_claim = ?, queued = queued - 1, "
        "queued_cost = queued_cost - ? WHERE guild_id = ? AND user_id = ?",
        (charge, version, cost, guild["guild_id"], user["user_id"]),
    )
    return Claim(job=job_from_row(row), token=token)


def seconds_per_cost(conn: sqlite3.Connection) -> float:
    """Measured GPU seconds per cost unit (the classic loop's until a job has finished)."""
    measured = conn.execute("SELECT seconds_per_cost FROM store_state WHERE id = 1").fetchone()[0]
    return measured or DEFAULT_SECONDS_PER_COST


def enter_queue(
    conn: sqlite3.Connection, guild_id: int, user_id: int, *, jobs: int, cost: int, pending: int
) -> None:
    """Count ``jobs`` jobs (of total ``cost``) as queued for a member of a guild.

    A guild or member that had nothing queued is lifted to the least virtual
    time among those waiting (or, if none wait, the time of the last claim)
    minus ``IDLE_CREDIT_S``.
    ``pending`` is how many of them are new to the pending count (0 for a
    job that was already pending, e.g. a reclaimed one).
    """
    conn.execute(
        "INSERT INTO guild_queues (guild_id) VALUES (?) ON CONFLICT (guild_id) DO NOTHING",
        (guild_id,),
    )
    conn.execute(
        "INSERT INTO user_queues (guild_id, user_id) VALUES (?, ?) "
        "ON CONFLICT (guild_id, user_id) DO NOTHING",
        (guild_id, user_id),
    )
    guild = conn.execute(
        "SELECT vtime, user_vtime, queued FROM guild_queues WHERE guild_id = ?", (guild_id,)
    ).fetchone()
    vtime = guild["vtime"]
    if guild["queued"] == 0:
        least = conn.execute(
            "SELECT vtime FROM guild_queues WHERE queued > 0 ORDER BY vtime LIMIT 1"
        ).fetchone()
        if least is None:
            least = conn.execute("SELECT vtime FROM store_state WHERE id = 1").fetchone()
        vtime = max(vtime, least[0] - IDLE_CREDIT_S)
    conn.execute(
        "UPDATE guild_queues SET vtime = ?, queued = queued + ?, queued_cost = queued_cost + ?, "
        "pending = pending + ? WHERE guild_id = ?",
        (vtime, jobs, cost, pending, guild_id),
    )
    user = conn.execute(
        "SELECT vtime, queued FROM user_queues WHERE guild_id = ? AND user_id = ?",
        (guild_id, user_id),
    ).fetchone()
    user_vtime = user["vtime"]
    if user["queued"] == 0:
        least = conn.execute(
            "SELECT vtime FROM user_queues WHERE guild_id = ? AND queued > 0 "
            "ORDER BY vtime LIMIT 1",
            (guild_id,),
        ).fetchone()
        user_vtime = max(user_vtime, (least[0] if least else guild["user_vtime"]) - IDLE_CREDIT_S)
    conn.execute(
        "UPDATE user_queues SET vtime = ?, queued = queued + ?, queued_cost = queued_cost + ?, "
        "pending = pending + ? WHERE guild_id = ? AND user_id = ?",
        (user_vtime, jobs, cost, pending, guild_id, user_id),
    )


def leave_queue(
    conn: sqlite3.Connection, guild_id: int, user_id: int, *, cost: int, waiting: bool = False
) -> None:
    """Uncount one queued job that leaves the queue without running (cancelled); a ``waiting``
    one (a retry before its ``not_before``) counts only as pending."""
    queued = 0 if waiting else 1
    for table, where, key in (
        ("guild_queues", "guild_id = ?", (guild_id,)),
        ("user_queues", "guild_id = ? AND user_id = ?", (guild_id, user_id)),
    ):
        conn.execute(
            f"UPDATE {table} SET queued = queued - ?, queued_cost = queued_cost - ?, "
            f"pending = pending - 1 WHERE {where}",
            (queued, cost * queued, *key),
        )


def due(conn: sqlite3.Connection, now: float) -> int:
    """Count the retries whose wait is over as queued again (inside a write transaction)."""
    rows = conn.execute(DUE, (now,)).fetchall()
    if rows:
        version = next_version(conn)
        conn.executemany(
            "UPDATE jobs SET not_before = NULL, version = ? WHERE id = ?",
            [(version, row["id"]) for row in rows],
        )
    for row in rows:
        enter_queue(conn, row["guild_id"], row["user_id"], jobs=1, cost=row["cost"], pending=0)
    return len(rows)


def settle(
    conn: sqlite3.Connection,
    row: sqlite3.Row,
    *,
    gpu_seconds: float | None,
    leaves: bool,
    now: float,
    speed_sample: bool = False,
) -> None:
    """Account for the end of an attempt of the job in ``row``.

    ``gpu_seconds`` measured (None: unknown, the worker died; the estimate
    charged at claim stands) go to the daily budget and replace the estimate
    in the fair-share virtual times. ``leaves``: the job is done for good and
    no longer counts against the queue caps. ``speed_sample``: the attempt
    ran all its steps, so it measures GPU seconds per cost unit.
    """
    correction = 0.0 if gpu_seconds is None else gpu_seconds - row["charged_s"]
    pending = 1 if leaves else 0
    conn.execute(
        "UPDATE guild_queues SET vtime = vtime + ?, pending = pending - ? WHERE guild_id = ?",
        (correction, pending, row["guild_id"]),
    )
    conn.execute(
        "UPDATE user_queues SET vtime = vtime + ?, pending = pending - ? "
        "WHERE guild_id = ? AND user_id = ?",
        (correction, pending, row["guild_id"], row["user_id"]),
    )
    if gpu_seconds:
        conn.execute(
            "INSERT INTO gpu_usage (guild_id, day, user_id, gpu_seconds) VALUES (?, ?, ?, ?) "
            "ON CONFLICT (guild_id, day, user_id) "
            "DO UPDATE SET gpu_seconds = gpu_usage.gpu_seconds + excluded.gpu_seconds",
            (row["guild_id"], utc_day(now), row["user_id"], gpu_seconds),
        )
        if speed_sample:
            _learn_speed(conn, gpu_seconds / row["cost"])


def _learn_speed(conn: sqlite3.Connection, sample: float) -> None:
    """Move the seconds-per-cost estimate towards one finished job's measurement.

    The first sample moves the classic-loop prior, not replaces it, and each
    sample counts at most 10x off the estimate: one odd job can't wreck it.
    """
    estimate = seconds_per_cost(conn)
    low, high = SPEED_SAMPLE_RANGE
    sample = min(max(sample, estimate * low), estimate * high)
    conn.execute(
        "UPDATE store_state SET seconds_per_cost = ? WHERE id = 1",
        (estimate + SPEED_EMA_WEIGHT * (sample - estimate),),
    )


def reclaim_expired(conn: sqlite3.Connection, now: float) -> int:
    """Take back jobs whose lease expired (inside a write transaction).

    A job with attempts left goes back to the queue; one without fails; one
    whose cancel was requested is cancelled. Returns how many were taken back.
    """
    expired = conn.execute(EXPIRED, (now,)).fetchall()
    version = next_version(conn) if expired else 0
    for row in expired:
        if row["state"] == "cancelling":
            state, error = "cancelled", None
        elif row["attempts"] >= row["max_attempts"]:
            state = "failed"
            error = (
                f"The worker running this job stopped responding on all {row['attempts']} "
                "attempts, so vqbot gave up on it. Try again later, or with fewer steps."
            )
        else:
            state = "queued"
            error = f"Attempt {row['attempts']} lost its worker; the job is waiting to run again."
        conn.execute(
            "UPDATE jobs SET state = ?, error = ?, lease_owner = NULL, lease_token = NULL, "
            "lease_expires_at = NULL, step = 0, steps_per_s = NULL, charged_s = 0, "
            "finished_at = ?, version = ? WHERE id = ?",
            (state, error, None if state == "queued" else now, version, row["id"]),
        )
        settle(conn, row, gpu_seconds=None, leaves=state != "queued", now=now)
        if state == "queued":
            enter_queue(conn, row["guild_id"], row["user_id"], jobs=1, cost=row["cost"], pending=0)
        log.warning(
            "job %d: lease of %s expired on attempt %d of %d; now %s",
            row["id"],
            row["lease_owner"],
            row["attempts"],
            row["max_attempts"],
            state,
        )
    return len(expired)


def reclaim(conn: sqlite3.Connection, now: float) -> int:
    """``reclaim_expired`` in a transaction of its own."""
    with write(conn):
        return reclaim_expired(conn, now)


def rebuild_queues(conn: sqlite3.Connection) -> None:
    """Recompute the queued/pending counters from the jobs (virtual times are kept)."""
    counts = (
        "SELECT guild_id{user}, SUM(state = 'queued' AND not_before IS NULL), "
        "SUM(CASE WHEN state = 'queued' AND not_before IS NULL THEN cost ELSE 0 END), COUNT(*) FROM jobs "
        "WHERE state IN ('queued', 'running', 'cancelling') GROUP BY guild_id{user}"
    )
    conn.execute("UPDATE guild_queues SET queued = 0, queued_cost = 0, pending = 0")
    conn.execute("UPDATE user_queues SET queued = 0, queued_cost = 0, pending = 0")
    conn.execute(
        "INSERT INTO guild_queues (guild_id, queued, queued_cost, pending) "
        + counts.format(user="")
        + " ON CONFLICT (guild_id) DO UPDATE SET queued = excluded.queued, "
        "queued_cost = excluded.queued_cost, pending = excluded.pending"
    )
    conn.execute(
        "INSERT INTO user_queues (guild_id, user_id, queued, queued_cost, pending) "
        + counts.format(user=", user_id")
        + " ON CONFLICT (guild_id, user_id) DO UPDATE SET queued = excluded.queued, "
        "queued_cost = excluded.queued_cost, pending = excluded.pending"
    )
