"""Reading jobs back on PostgreSQL: lookups, listings, the change feed, queue position and stats.

The change feed. A job's ``version`` is the id of the transaction that last
changed it (``pg_current_xact_id()``), not a number from a counter row: a
counter row would be locked by every writer until it commits, so commits of
claims from all workers would queue behind each other, one disk flush at a
time. Transaction ids are taken without a lock, but they are not in commit
order: the transaction with id 10 may commit after the one with id 11, and a
poller that saw 11 and then asked for "after 11" would miss 10 for ever.

So the feed only hands out changes below the *horizon*: the oldest
transaction id still running in the store's database, as the reader's
snapshot sees it (the oldest of ``pg_snapshot_xip`` not known to belong to
another database, else ``pg_snapshot_xmax``). Every transaction of the
database below it has ended; every one still running or yet to start has an
id at or above it, hence above every version the feed returned. A poller
that continues from the highest version it saw never misses a change that
commits late; it just sees it once the older transaction has ended. A
transaction in another database of the server never writes these tables, so
it holds nothing back (``pg_stat_activity`` says which database a running
transaction's session is in; one it doesn't show, say of another user's
session, counts as ours). The cost: a transaction that stays open in the
database holds the feed back until it ends, which the store's
``idle_in_transaction_session_timeout`` and ``statement_timeout`` bound for
its own sessions.
"""

from __future__ import annotations

import json

from db.clock import utc_day
from db.errors import NotFound
from db.jobs import Job
from db.postgres.connection import Tx
from db.postgres.rows import SELECT_JOBS, fetch_job, fetch_jobs

ACTIVE = "j.state IN ('running', 'cancelling')"
# The waiting retry due first (the jobs_waiting index, in not_before order).
NEXT_DUE = "SELECT not_before FROM jobs WHERE not_before IS NOT NULL AND state = 'queued' ORDER BY not_before LIMIT 1"
# pg_snapshot_xip lists 64-bit ids, pg_stat_activity 32-bit ones: two transactions running at once
# never share the low 32 bits. (mod(), not %: the constant goes into statements with and without parameters.)
HORIZON = """(SELECT COALESCE(
    (SELECT min(x::text::bigint) FROM pg_snapshot_xip(pg_current_snapshot()) x
     WHERE mod(x::text::bigint, 4294967296) NOT IN (
        SELECT backend_xid::text::bigint FROM pg_stat_activity
        WHERE backend_xid IS NOT NULL AND datname <> current_database())),
    pg_snapshot_xmax(pg_current_snapshot())::text::bigint))"""
# (job id, version) of every job changed after %(since)s and below the horizon.
CHANGED = f"""SELECT j.id, GREATEST(j.version, p.version) AS version
    FROM jobs j LEFT JOIN job_progress p ON p.job_id = j.id
    WHERE j.version > %(since)s AND GREATEST(j.version, p.version) < {HORIZON}
    UNION
    SELECT j.id, GREATEST(j.version, p.version) FROM job_progress p JOIN jobs j ON j.id = p.job_id
    WHERE p.version > %(since)s AND GREATEST(j.version, p.version) < {HORIZON}"""
LATEST = f"""SELECT GREATEST(
    (SELECT max(version) FROM jobs WHERE version < {HORIZON}),
    (SELECT max(version) FROM job_progress WHERE version < {HORIZON}), 0) AS version"""


async def current_version(tx: Tx) -> int:
    """The newest change the feed can hand out now (0 in an empty store)."""
    row = await tx.one(LATEST)
    assert row is not None
    return int(row["version"])


async def changed_since(tx: Tx, version: int, limit: int) -> list[Job]:
    """Jobs changed after ``version`` and below the horizon, oldest change first.

    About ``limit`` jobs, never splitting one version. Run on one snapshot
    (REPEATABLE READ): both queries see the same horizon.
    """
    params = {"since": version, "skip": max(0, limit - 1)}
    cutoff = await tx.one(f"SELECT version FROM ({CHANGED}) c ORDER BY version LIMIT 1 OFFSET %(skip)s", params)
    up_to = "" if cutoff is None else " AND c.version <= %(cutoff)s"
    return await fetch_jobs(
        tx,
        f"{SELECT_JOBS} JOIN ({CHANGED}) c ON c.id = j.id WHERE true{up_to} ORDER BY c.version, j.id",
        params | {"cutoff": None if cutoff is None else cutoff["version"]},
    )


async def by_message(tx: Tx, message_id: int) -> Job | None:
    """The job whose card or result is the Discord message ``message_id``."""
    jobs = await fetch_jobs(
        tx,
        f"({SELECT_JOBS} WHERE j.message_id = %s) UNION ALL ({SELECT_JOBS} WHERE j.result_message_id = %s) LIMIT 1",
        (message_id, message_id),
    )
    return jobs[0] if jobs else None


async def guild_queue(tx: Tx, guild_id: int, limit: int) -> list[Job]:
    """The guild's running jobs, then its queued ones in submission order."""
    active = await fetch_jobs(tx, f"{SELECT_JOBS} WHERE {ACTIVE} AND j.guild_id = %s ORDER BY j.id", (guild_id,))
    queued = await fetch_jobs(
        tx,
        f"{SELECT_JOBS} WHERE j.state = 'queued' AND j.guild_id = %s ORDER BY j.id LIMIT %s",
        (guild_id, max(0, limit - len(active))),
    )
    return (active + queued)[:limit]


async def group(tx: Tx, group_id: int) -> list[Job]:
    """The jobs of one group (a grid's candidates), in the order they were queued."""
    return await fetch_jobs(tx, f"{SELECT_JOBS} WHERE j.group_id = %s ORDER BY j.id", (group_id,))


async def history(tx: Tx, user_id: int, guild_id: int | None, limit: int) -> list[Job]:
    """The user's jobs, newest first (in one guild, or all)."""
    if guild_id is None:
        return await fetch_jobs(tx, f"{SELECT_JOBS} WHERE j.user_id = %s ORDER BY j.id DESC LIMIT %s", (user_id, limit))
    return await fetch_jobs(
        tx,
        f"{SELECT_JOBS} WHERE j.user_id = %s AND j.guild_id = %s ORDER BY j.id DESC LIMIT %s",
        (user_id, guild_id, limit),
    )


async def undelivered(tx: Tx, limit: int) -> list[Job]:
    """Finished jobs (any outcome) whose outcome the bot has not posted yet, oldest first."""
    return await fetch_jobs(
        tx,
        f"{SELECT_JOBS} WHERE NOT j.delivered AND j.finished_at IS NOT NULL ORDER BY j.finished_at LIMIT %s",
        (limit,),
    )


async def next_due(tx: Tx) -> float | None:
    """The earliest ``not_before`` of a retry that waits (epoch seconds), or None."""
    row = await tx.one(NEXT_DUE)
    return None if row is None else float(row["not_before"])


async def preview(tx: Tx, job_id: int) -> tuple[int, bytes] | None:
    row = await tx.one("SELECT step, image FROM previews WHERE job_id = %s", (job_id,))
    return (row["step"], bytes(row["image"])) if row else None


async def checkpoint(tx: Tx, job_id: int) -> tuple[int, bytes] | None:
    row = await tx.one("SELECT step, data FROM checkpoints WHERE job_id = %s", (job_id,))
    return (row["step"], bytes(row["data"])) if row else None


async def params_in_use(
    tx: Tx, *, ended_after: float, after_id: int, limit: int
) -> list[tuple[int, dict[str, object]]]:
    """(id, params) of jobs not ended, or ended at or after ``ended_after``, above ``after_id``."""
    rows = await tx.all(
        "SELECT id, params FROM jobs WHERE id > %s AND (finished_at IS NULL OR finished_at >= %s) "
        "ORDER BY id LIMIT %s",
        (after_id, ended_after, limit),
    )
    return [(row["id"], json.loads(row["params"])) for row in rows]


async def result(tx: Tx, job_id: int) -> bytes | None:
    row = await tx.one("SELECT png FROM results WHERE job_id = %s", (job_id,))
    return bytes(row["png"]) if row else None


async def throughput(tx: Tx) -> float | None:
    """Cost units per second the workers get through: measured on the running
    jobs if they report speed, else from finished jobs; None before either."""
    row = await tx.one(
        "SELECT SUM(p.steps_per_s * j.cost / j.total_steps) AS rate FROM job_progress p "
        f"JOIN jobs j ON j.id = p.job_id WHERE {ACTIVE} AND p.steps_per_s > 0"
    )
    if row and row["rate"]:
        return float(row["rate"])
    measured = await tx.one("SELECT seconds_per_cost FROM store_state WHERE id = 1")
    return 1 / measured["seconds_per_cost"] if measured and measured["seconds_per_cost"] else None


# For each other waiting member (or guild): how many turns it gets before the
# job, assuming round robin: all it has, up to ours (one fewer if it sorts after us).
_TURNS = (
    "LEAST(queued, CASE WHEN vtime < %(vtime)s OR (vtime = %(vtime)s AND {key} < %(key)s) "
    "THEN %(ahead)s + 1 ELSE %(ahead)s END)"
)
_SUMS = (
    f"SELECT COALESCE(SUM({_TURNS}), 0)::bigint AS n, "
    f"COALESCE(SUM(queued_cost::double precision * {_TURNS} / queued), 0) AS cost"
)
OTHER_USERS = (_SUMS + " FROM user_queues WHERE guild_id = %(guild)s AND queued > 0 AND user_id != %(key)s").format(
    key="user_id"
)
OTHER_GUILDS = (_SUMS + " FROM guild_queues WHERE queued > 0 AND guild_id != %(key)s").format(key="guild_id")


async def position(tx: Tx, job_id: int) -> tuple[int, float | None]:
    """(queued jobs expected to start before this one, seconds until it should finish); as SqliteStore's."""
    job = await fetch_job(tx, job_id)
    if job is None:
        raise NotFound(f"Job {job_id} does not exist. Check the job number and try again.")
    if job.state.is_terminal:
        return 0, 0.0
    rate = await throughput(tx)
    if job.state.is_active:
        if job.steps_per_s:
            return 0, (job.total_steps - job.step) / job.steps_per_s
        left = job.cost * (job.total_steps - job.step) / job.total_steps
        return 0, left / rate if rate else None
    mine = await tx.one(
        "SELECT COUNT(*) AS n, COALESCE(SUM(cost), 0)::double precision AS cost FROM jobs "
        "WHERE state = 'queued' AND guild_id = %s AND user_id = %s AND (priority > %s OR (priority = %s AND id < %s))",
        (job.guild_id, job.user_id, job.priority, job.priority, job.id),
    )
    assert mine is not None
    ahead, cost_ahead = int(mine["n"]), float(mine["cost"])
    user = await tx.one(
        "SELECT vtime FROM user_queues WHERE guild_id = %s AND user_id = %s", (job.guild_id, job.user_id)
    )
    assert user is not None
    others = await tx.one(
        OTHER_USERS, {"vtime": user["vtime"], "key": job.user_id, "ahead": ahead, "guild": job.guild_id}
    )
    assert others is not None
    ahead, cost_ahead = ahead + int(others["n"]), cost_ahead + float(others["cost"])
    guild = await tx.one("SELECT vtime FROM guild_queues WHERE guild_id = %s", (job.guild_id,))
    assert guild is not None
    others = await tx.one(OTHER_GUILDS, {"vtime": guild["vtime"], "key": job.guild_id, "ahead": ahead})
    assert others is not None
    ahead, cost_ahead = ahead + int(others["n"]), cost_ahead + float(others["cost"])
    if not rate:
        return ahead, None
    running = await tx.one(
        "SELECT COALESCE(SUM(j.cost::double precision * (j.total_steps - COALESCE(p.step, j.step)) "
        f"/ j.total_steps), 0) AS left FROM jobs j LEFT JOIN job_progress p ON p.job_id = j.id WHERE {ACTIVE}"
    )
    assert running is not None
    return ahead, (running["left"] + cost_ahead + job.cost) / rate


async def stats(tx: Tx, now: float) -> dict[str, object]:
    """Figures for /status."""
    queue = await tx.one(
        "SELECT COALESCE(SUM(queued), 0)::bigint AS queued, COUNT(*) AS guilds FROM guild_queues WHERE queued > 0"
    )
    active = await tx.one(
        "SELECT COUNT(*) FILTER (WHERE j.state = 'running') AS running, "
        "COUNT(*) FILTER (WHERE j.state = 'cancelling') AS cancelling, "
        "COUNT(DISTINCT j.lease_owner) AS workers, SUM(p.steps_per_s) AS steps_per_s "
        f"FROM jobs j LEFT JOIN job_progress p ON p.job_id = j.id WHERE {ACTIVE}"
    )
    gpu = await tx.one(
        "SELECT COALESCE(SUM(gpu_seconds), 0) AS s FROM gpu_usage WHERE day = %s", (utc_day(now),)
    )
    state = await tx.one("SELECT seconds_per_cost FROM store_state WHERE id = 1")
    retrying = await tx.one("SELECT COUNT(*) AS n FROM jobs WHERE not_before IS NOT NULL")
    assert queue and active and gpu and state and retrying
    return {
        "queued": queue["queued"],
        "retrying": retrying["n"],
        "running": active["running"],
        "cancelling": active["cancelling"],
        "workers": active["workers"],
        "guilds_waiting": queue["guilds"],
        "steps_per_s": active["steps_per_s"],
        "cost_per_s": await throughput(tx),
        "seconds_per_cost": state["seconds_per_cost"],
        "gpu_seconds_today": gpu["s"],
        "version": await current_version(tx),
    }


async def prune(
    tx: Tx, *, previews_before: float, results_before: float | None, usage_before_day: int
) -> dict[str, int]:
    """Delete previews of jobs finished before a time, delivered results before
    another (None: keep them), and daily GPU usage before a day."""
    previews = await tx.run(
        "DELETE FROM previews p USING jobs j WHERE j.id = p.job_id AND j.finished_at < %s", (previews_before,)
    )
    results = 0
    if results_before is not None:
        results = await tx.run(
            "DELETE FROM results r USING jobs j WHERE j.id = r.job_id AND j.delivered AND j.finished_at < %s",
            (results_before,),
        )
    checkpoints = await tx.run(
        "DELETE FROM checkpoints c USING jobs j WHERE j.id = c.job_id "
        "AND j.state IN ('succeeded', 'failed', 'cancelled')"
    )
    usage = await tx.run("DELETE FROM gpu_usage WHERE day < %s", (usage_before_day,))
    return {"previews": previews, "results": results, "checkpoints": checkpoints, "gpu_usage": usage}
