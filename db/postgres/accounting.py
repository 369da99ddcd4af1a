"""The fair-share books on PostgreSQL: queue counters, virtual times and GPU usage.

``db/postgres/scheduler.py`` decides which job runs next from these books;
this module keeps them: a job entering the queue (submitted, retried, its
retry's wait over: ``due``) or leaving it without running, the end of an
attempt (``settle``: the estimate charged at claim replaced by the measured
GPU seconds, the day's usage, the learnt speed), and rebuilding the counters
from the job rows. The policy is SqliteStore's (``db/sqlite/scheduler.py`` and
docs/queue.md). Locks are taken in the scheduler's one order: job rows, then
guild rows, then member rows (several in ascending id).
"""

from __future__ import annotations

from psycopg.rows import DictRow

from db.clock import utc_day
from db.fair_share import DEFAULT_SECONDS_PER_COST, IDLE_CREDIT_S, SPEED_EMA_WEIGHT, SPEED_SAMPLE_RANGE
from db.postgres.connection import Tx

# Waiting retries whose time has come (not_before passed); one locked by a cancel in flight waits for the next claim.
DUE = """UPDATE jobs SET not_before = NULL, version = %(version)s WHERE id IN (
        SELECT id FROM jobs WHERE not_before <= %(now)s AND state = 'queued' ORDER BY id FOR UPDATE SKIP LOCKED
    ) RETURNING id, guild_id, user_id, cost"""

_GUILD_FLOOR = (
    "(COALESCE((SELECT vtime FROM guild_queues WHERE queued > 0 ORDER BY vtime LIMIT 1), "
    "(SELECT claim_vtime FROM guild_queues ORDER BY last_claim DESC LIMIT 1), 0) - %(idle)s)"
)
ENTER_GUILD = f"""INSERT INTO guild_queues AS g (guild_id, vtime, queued, queued_cost, pending)
    VALUES (%(guild)s, GREATEST(0, {_GUILD_FLOOR}), %(jobs)s, %(cost)s, %(pending)s)
    ON CONFLICT (guild_id) DO UPDATE SET
        vtime = CASE WHEN g.queued = 0 THEN GREATEST(g.vtime, {_GUILD_FLOOR}) ELSE g.vtime END,
        queued = g.queued + excluded.queued, queued_cost = g.queued_cost + excluded.queued_cost,
        pending = g.pending + excluded.pending
    RETURNING user_vtime"""
_USER_FLOOR = (
    "(COALESCE((SELECT vtime FROM user_queues WHERE guild_id = %(guild)s AND queued > 0 "
    "ORDER BY vtime LIMIT 1), %(guild_user_vtime)s) - %(idle)s)"
)
ENTER_USER = f"""INSERT INTO user_queues AS u (guild_id, user_id, vtime, queued, queued_cost, pending,
        last_enqueued_at)
    VALUES (%(guild)s, %(user)s, GREATEST(0, {_USER_FLOOR}), %(jobs)s, %(cost)s, %(pending)s, %(at)s)
    ON CONFLICT (guild_id, user_id) DO UPDATE SET
        vtime = CASE WHEN u.queued = 0 THEN GREATEST(u.vtime, {_USER_FLOOR}) ELSE u.vtime END,
        queued = u.queued + excluded.queued, queued_cost = u.queued_cost + excluded.queued_cost,
        pending = u.pending + excluded.pending,
        last_enqueued_at = COALESCE(excluded.last_enqueued_at, u.last_enqueued_at)"""


async def enter_queue(
    tx: Tx,
    guild_id: int,
    user_id: int,
    *,
    jobs: int,
    cost: int,
    pending: int,
    enqueued_at: float | None = None,
) -> None:
    """Count ``jobs`` jobs (of total ``cost``) as queued for a member of a guild.

    A guild or member that had nothing queued is lifted to the least virtual
    time among those waiting (or, if none wait, the time of the newest claim)
    minus ``IDLE_CREDIT_S``. ``pending`` is how many of them are new to the
    pending count; ``enqueued_at`` (a submission) starts the member's cooldown.
    """
    counts = {"guild": guild_id, "jobs": jobs, "cost": cost, "pending": pending, "idle": IDLE_CREDIT_S}
    guild = await tx.one(ENTER_GUILD, counts)
    assert guild is not None
    await tx.run(
        ENTER_USER, counts | {"user": user_id, "at": enqueued_at, "guild_user_vtime": guild["user_vtime"]}
    )


async def leave_queue(tx: Tx, guild_id: int, user_id: int, *, cost: int, waiting: bool = False) -> None:
    """Uncount one queued job that leaves the queue without running (cancelled); a ``waiting``
    one (a retry before its ``not_before``) counts only as pending."""
    queued = 0 if waiting else 1
    await tx.run(
        "UPDATE guild_queues SET queued = queued - %s, queued_cost = queued_cost - %s, "
        "pending = pending - 1 WHERE guild_id = %s",
        (queued, cost * queued, guild_id),
    )
    await tx.run(
        "UPDATE user_queues SET queued = queued - %s, queued_cost = queued_cost - %s, "
        "pending = pending - 1 WHERE guild_id = %s AND user_id = %s",
        (queued, cost * queued, guild_id, user_id),
    )


async def due(tx: Tx, now: float) -> int:
    """Count the retries whose wait is over as queued again (job rows locked first, then their
    guilds' and members' counters in ascending order, as everywhere)."""
    rows = await tx.all(DUE, {"version": await tx.version(), "now": now})
    for row in sorted(rows, key=lambda r: (r["guild_id"], r["user_id"])):
        await enter_queue(tx, row["guild_id"], row["user_id"], jobs=1, cost=row["cost"], pending=0)
    return len(rows)


async def settle(
    tx: Tx,
    row: DictRow,
    *,
    gpu_seconds: float | None,
    leaves: bool,
    now: float,
    speed_sample: bool = False,
) -> None:
    """Account for the end of an attempt of the job in ``row`` (as SqliteStore's ``settle``)."""
    correction = 0.0 if gpu_seconds is None else gpu_seconds - row["charged_s"]
    pending = 1 if leaves else 0
    await tx.run(
        "UPDATE guild_queues SET vtime = vtime + %s, pending = pending - %s WHERE guild_id = %s",
        (correction, pending, row["guild_id"]),
    )
    await tx.run(
        "UPDATE user_queues SET vtime = vtime + %s, pending = pending - %s "
        "WHERE guild_id = %s AND user_id = %s",
        (correction, pending, row["guild_id"], row["user_id"]),
    )
    if gpu_seconds:
        await tx.run(
            "INSERT INTO gpu_usage (guild_id, day, user_id, gpu_seconds) VALUES (%s, %s, %s, %s) "
            "ON CONFLICT (guild_id, day, user_id) "
            "DO UPDATE SET gpu_seconds = gpu_usage.gpu_seconds + excluded.gpu_seconds",
            (row["guild_id"], utc_day(now), row["user_id"], gpu_seconds),
        )
        if speed_sample:
            await _learn_speed(tx, gpu_seconds / row["cost"])


async def _learn_speed(tx: Tx, sample: float) -> None:
    """Move the seconds-per-cost estimate towards one finished job's measurement, each
    sample counting at most 10x off (read and written in one statement: no lost update)."""
    low, high = SPEED_SAMPLE_RANGE
    estimate = f"COALESCE(seconds_per_cost, {DEFAULT_SECONDS_PER_COST!r})"
    await tx.run(
        f"UPDATE store_state SET seconds_per_cost = {estimate} + %(w)s * "
        f"(LEAST(GREATEST(%(s)s, {estimate} * %(low)s), {estimate} * %(high)s) - {estimate}) WHERE id = 1",
        {"w": SPEED_EMA_WEIGHT, "s": sample, "low": low, "high": high},
    )



async def rebuild_queues(tx: Tx, guild_id: int | None = None) -> None:
    """Recompute the queued/pending counters from the jobs, of one guild or all (vtimes kept)."""
    where = "" if guild_id is None else " AND guild_id = %(guild)s"
    only = "" if guild_id is None else " WHERE guild_id = %(guild)s"
    counts = (
        "SELECT guild_id{user}, COUNT(*) FILTER (WHERE state = 'queued' AND not_before IS NULL), "
        "COALESCE(SUM(cost) FILTER (WHERE state = 'queued' AND not_before IS NULL), 0), COUNT(*) FROM jobs "
        f"WHERE state IN ('queued', 'running', 'cancelling'){where} GROUP BY guild_id{{user}}"
    )
    params = {"guild": guild_id}
    await tx.run(f"UPDATE guild_queues SET queued = 0, queued_cost = 0, pending = 0{only}", params)
    await tx.run(f"UPDATE user_queues SET queued = 0, queued_cost = 0, pending = 0{only}", params)
    await tx.run(
        "INSERT INTO guild_queues (guild_id, queued, queued_cost, pending) "
        + counts.format(user="")
        + " ON CONFLICT (guild_id) DO UPDATE SET queued = excluded.queued, "
        "queued_cost = excluded.queued_cost, pending = excluded.pending",
        params,
    )
    await tx.run(
        "INSERT INTO user_queues (guild_id, user_id, queued, queued_cost, pending) "
        + counts.format(user=", user_id")
        + " ON CONFLICT (guild_id, user_id) DO UPDATE SET queued = excluded.queued, "
        "queued_cost = excluded.queued_cost, pending = excluded.pending",
        params,
    )
