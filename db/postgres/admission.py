"""Admitting new jobs on PostgreSQL: the guild's limits checked and the job inserted in one transaction.

Two enqueues of one member can race: both read "2 of 3 queued", both insert,
and the member has 4. So before reading what a guild and its members hold,
the transaction locks their ``guild_queues`` and ``user_queues`` rows
(creating them first if new, in ascending id order, so two enqueues never
deadlock): a second enqueue of the same guild waits for the first to commit
and then counts its job.
"""

from __future__ import annotations

import dataclasses
import logging
from collections import defaultdict
from collections.abc import Sequence

from db.clock import utc_day
from db.errors import InvalidInput
from db.jobs import CheckedJob, Job
from db.limits import QueueUsage, check_policy, check_quota
from db.postgres.accounting import enter_queue
from db.postgres.connection import Tx
from db.postgres.guild_config import load_settings
from db.postgres.rows import JOB_COLUMNS, SELECT_JOBS, fetch_jobs, job_from_row
from db.settings import GuildSettings

log = logging.getLogger(__name__)

_INSERT = """INSERT INTO jobs (guild_id, channel_id, user_id, prompt, params, model, width,
    height, state, priority, cost, max_attempts, total_steps, created_at, parent_id, relation,
    seed, version, batch_key) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, 'queued', %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)"""
INSERT_JOB = f"WITH j AS ({_INSERT} RETURNING *) SELECT {JOB_COLUMNS} FROM j LEFT JOIN job_progress p ON false"
USAGE = """SELECT g.pending AS guild_pending, u.pending AS user_pending, u.last_enqueued_at,
    (SELECT COALESCE(SUM(gpu_seconds), 0) FROM gpu_usage WHERE guild_id = %(guild)s AND day = %(day)s)
        AS guild_gpu,
    (SELECT COALESCE(SUM(gpu_seconds), 0) FROM gpu_usage
        WHERE guild_id = %(guild)s AND day = %(day)s AND user_id = %(user)s) AS user_gpu
    FROM guild_queues g LEFT JOIN user_queues u ON u.guild_id = g.guild_id AND u.user_id = %(user)s
    WHERE g.guild_id = %(guild)s"""


async def enqueue(
    tx: Tx,
    jobs: Sequence[CheckedJob],
    *,
    defaults: GuildSettings,
    enforce_limits: bool,
    group: bool = False,
    now: float,
) -> list[Job]:
    """Insert checked jobs, all or none, in the caller's transaction; returns them in order.

    With ``enforce_limits`` each job is checked against its guild's settings
    and usage (counting the jobs before it in ``jobs``), raising
    LimitExceeded; without, the rows go in with one executemany. With ``group``
    every job gets the first one's id as its group.
    """
    version = await tx.version()
    await _check_parents(tx, jobs)
    await _lock_queues(tx, jobs)
    if not enforce_limits:
        async with tx.conn.cursor() as cursor:
            await cursor.executemany(_INSERT, [_values(job, now, version) for job in jobs])
        members: dict[tuple[int, int], list[CheckedJob]] = defaultdict(list)
        for job in jobs:
            members[job.new.guild_id, job.new.user_id].append(job)
        for (guild_id, user_id), theirs in sorted(members.items()):
            await enter_queue(
                tx, guild_id, user_id, jobs=len(theirs), cost=sum(j.cost for j in theirs), pending=len(theirs),
                enqueued_at=now,
            )
        added = await fetch_jobs(tx, f"{SELECT_JOBS} WHERE j.version = %s ORDER BY j.id", (version,))
        return await _grouped(tx, added) if group else added
    settings: dict[int, GuildSettings] = {}
    # One call is one submission: the cooldown counts from the member's previous call.
    last_call: dict[tuple[int, int], float | None] = {}
    added = []
    for job in jobs:
        guild_id, user_id = job.new.guild_id, job.new.user_id
        if guild_id not in settings:
            settings[guild_id] = await load_settings(tx, guild_id, defaults)
        check_policy(settings[guild_id], job)
        usage = await _usage(tx, job, now)
        last = last_call.setdefault((guild_id, user_id), usage.user_last_enqueued_at)
        check_quota(settings[guild_id], dataclasses.replace(usage, user_last_enqueued_at=last), now)
        row = await tx.one(INSERT_JOB, _values(job, now, version))
        assert row is not None
        added.append(job_from_row(row))
        await enter_queue(tx, guild_id, user_id, jobs=1, cost=job.cost, pending=1, enqueued_at=now)
    return await _grouped(tx, added) if group else added


async def _grouped(tx: Tx, added: list[Job]) -> list[Job]:
    """Make ``added`` one group: each gets the first one's id as its group."""
    first = added[0].id
    await tx.run("UPDATE jobs SET group_id = %s WHERE id = ANY(%s)", (first, [job.id for job in added]))
    return [dataclasses.replace(job, group_id=first) for job in added]


def log_added(added: Sequence[Job]) -> None:
    for queued in added[:100]:
        log.info("job %d queued in guild %d by user %d", queued.id, queued.guild_id, queued.user_id)
    if len(added) > 100:
        log.info("%d more jobs queued (ids %d to %d)", len(added) - 100, added[100].id, added[-1].id)


async def _lock_queues(tx: Tx, jobs: Sequence[CheckedJob]) -> None:
    """Create and lock the guild and member queue rows of ``jobs``, in ascending order."""
    guilds = sorted({job.new.guild_id for job in jobs})
    members = sorted({(job.new.guild_id, job.new.user_id) for job in jobs})
    await tx.run(
        "INSERT INTO guild_queues (guild_id) SELECT g FROM unnest(%s::bigint[]) AS g ORDER BY g "
        "ON CONFLICT (guild_id) DO NOTHING",
        (guilds,),
    )
    await tx.run(
        "SELECT 1 FROM guild_queues WHERE guild_id = ANY(%s) ORDER BY guild_id FOR UPDATE", (guilds,)
    )
    pairs = ([g for g, _ in members], [u for _, u in members])
    await tx.run(
        "INSERT INTO user_queues (guild_id, user_id) SELECT g, u FROM unnest(%s::bigint[], %s::bigint[]) "
        "AS m (g, u) ORDER BY g, u ON CONFLICT (guild_id, user_id) DO NOTHING",
        pairs,
    )
    await tx.run(
        "SELECT 1 FROM user_queues q JOIN unnest(%s::bigint[], %s::bigint[]) AS m (g, u) "
        "ON q.guild_id = m.g AND q.user_id = m.u ORDER BY q.guild_id, q.user_id FOR UPDATE OF q",
        pairs,
    )


def _values(job: CheckedJob, now: float, version: int) -> tuple[object, ...]:
    new = job.new
    return (
        new.guild_id,
        new.channel_id,
        new.user_id,
        job.prompt,
        job.params_json,
        job.model,
        job.width,
        job.height,
        new.priority,
        job.cost,
        new.max_attempts,
        job.steps,
        now,
        new.parent_id,
        job.relation,
        new.seed,
        version,
        job.batch_key,
    )


async def _usage(tx: Tx, job: CheckedJob, now: float) -> QueueUsage:
    row = await tx.one(USAGE, {"guild": job.new.guild_id, "user": job.new.user_id, "day": utc_day(now)})
    assert row is not None  # _lock_queues created it
    return QueueUsage(
        user_pending=row["user_pending"] or 0,
        guild_pending=row["guild_pending"],
        user_last_enqueued_at=row["last_enqueued_at"],
        user_gpu_s_today=row["user_gpu"],
        guild_gpu_s_today=row["guild_gpu"],
    )


async def _check_parents(tx: Tx, jobs: Sequence[CheckedJob]) -> None:
    for job in jobs:
        parent_id = job.new.parent_id
        if parent_id is None:
            continue
        row = await tx.one("SELECT guild_id FROM jobs WHERE id = %s", (parent_id,))
        if row is None or row["guild_id"] != job.new.guild_id:
            raise InvalidInput(
                "parent_id",
                f"Job {parent_id} does not exist in this server, so it can't be the "
                f"{job.relation} source. Pick a job from this server.",
            )
