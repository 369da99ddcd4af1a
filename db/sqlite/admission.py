"""Admitting new jobs: the guild's limits checked and the job inserted in one transaction."""

from __future__ import annotations

import dataclasses
import logging
import sqlite3
from collections import defaultdict
from collections.abc import Sequence

from db.clock import utc_day
from db.errors import InvalidInput
from db.jobs import CheckedJob, Job
from db.limits import QueueUsage, check_policy, check_quota
from db.settings import GuildSettings
from db.sqlite.connection import next_version, write
from db.sqlite.guild_config import load_settings
from db.sqlite.rows import JOB_COLUMNS, fetch_jobs
from db.sqlite.scheduler import enter_queue

log = logging.getLogger(__name__)

INSERT_JOB = """INSERT INTO jobs (guild_id, channel_id, user_id, prompt, params, model, width,
    height, state, priority, cost, max_attempts, total_steps, created_at, parent_id, relation,
    seed, version, batch_key) VALUES (?, ?, ?, ?, ?, ?, ?, ?, 'queued', ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"""
USAGE = """SELECT g.pending, u.pending, u.last_enqueued_at FROM guild_queues g
    LEFT JOIN user_queues u ON u.guild_id = g.guild_id AND u.user_id = ? WHERE g.guild_id = ?"""
GPU_TODAY = """SELECT COALESCE(SUM(gpu_seconds), 0),
    COALESCE(SUM(CASE WHEN user_id = ? THEN gpu_seconds ELSE 0 END), 0)
    FROM gpu_usage WHERE guild_id = ? AND day = ?"""


def enqueue(
    conn: sqlite3.Connection,
    jobs: Sequence[CheckedJob],
    *,
    defaults: GuildSettings,
    enforce_limits: bool,
    group: bool = False,
    now: float,
) -> list[Job]:
    """Insert checked jobs, all or none, in one transaction; returns them in order.

    With ``enforce_limits`` each job is checked against its guild's settings
    and usage (counting the jobs before it in ``jobs``), raising
    LimitExceeded; without, the rows go in with one executemany (imports,
    benchmarks). With ``group`` every job gets the first one's id as its group.
    """
    with write(conn):
        version = next_version(conn)
        _check_parents(conn, jobs)
        if enforce_limits:
            settings: dict[int, GuildSettings] = {}
            # One call is one submission: the cooldown counts from the member's
            # previous call, not from the job before in this one.
            last_call: dict[tuple[int, int], float | None] = {}
            for job in jobs:
                guild_id = job.new.guild_id
                if guild_id not in settings:
                    settings[guild_id] = load_settings(conn, guild_id, defaults)
                check_policy(settings[guild_id], job)
                usage = _usage(conn, job, now)
                last = last_call.setdefault(
                    (guild_id, job.new.user_id), usage.user_last_enqueued_at
                )
                usage = dataclasses.replace(usage, user_last_enqueued_at=last)
                check_quota(settings[guild_id], usage, now)
                conn.execute(INSERT_JOB, _values(job, now, version))
                _count(conn, guild_id, job.new.user_id, [job], now)
        else:
            conn.executemany(INSERT_JOB, [_values(job, now, version) for job in jobs])
            members: dict[tuple[int, int], list[CheckedJob]] = defaultdict(list)
            for job in jobs:
                members[job.new.guild_id, job.new.user_id].append(job)
            for (guild_id, user_id), theirs in members.items():
                _count(conn, guild_id, user_id, theirs, now)
        if group:
            conn.execute(
                "UPDATE jobs SET group_id = (SELECT MIN(id) FROM jobs WHERE version = ?1) WHERE version = ?1",
                (version,),
            )
        added = fetch_jobs(
            conn, f"SELECT {JOB_COLUMNS} FROM jobs WHERE version = ? ORDER BY id", (version,)
        )
    for queued in added[:100]:
        log.info("job %d queued in guild %d by user %d", queued.id, queued.guild_id, queued.user_id)
    if len(added) > 100:
        log.info(
            "%d more jobs queued (ids %d to %d)", len(added) - 100, added[100].id, added[-1].id
        )
    return added


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


def _count(
    conn: sqlite3.Connection, guild_id: int, user_id: int, jobs: list[CheckedJob], now: float
) -> None:
    total = sum(job.cost for job in jobs)
    enter_queue(conn, guild_id, user_id, jobs=len(jobs), cost=total, pending=len(jobs))
    conn.execute(
        "UPDATE user_queues SET last_enqueued_at = ? WHERE guild_id = ? AND user_id = ?",
        (now, guild_id, user_id),
    )


def _usage(conn: sqlite3.Connection, job: CheckedJob, now: float) -> QueueUsage:
    guild_id, user_id = job.new.guild_id, job.new.user_id
    row = conn.execute(USAGE, (user_id, guild_id)).fetchone()
    guild_gpu, user_gpu = conn.execute(GPU_TODAY, (user_id, guild_id, utc_day(now))).fetchone()
    return QueueUsage(
        user_pending=(row[1] or 0) if row else 0,
        guild_pending=row[0] if row else 0,
        user_last_enqueued_at=row[2] if row else None,
        user_gpu_s_today=user_gpu,
        guild_gpu_s_today=guild_gpu,
    )


def _check_parents(conn: sqlite3.Connection, jobs: Sequence[CheckedJob]) -> None:
    for job in jobs:
        parent_id = job.new.parent_id
        if parent_id is None:
            continue
        row = conn.execute("SELECT guild_id FROM jobs WHERE id = ?", (parent_id,)).fetchone()
        if row is None or row["guild_id"] != job.new.guild_id:
            raise InvalidInput(
                "parent_id",
                f"Job {parent_id} does not exist in this server, so it can't be the "
                f"{job.relation} source. Pick a job from this server.",
            )
