"""Turning job rows (the job and, while it runs, its progress row) into Job objects."""

from __future__ import annotations

import json

from psycopg.rows import DictRow

from db.clock import from_epoch
from db.jobs import Job
from db.postgres.connection import Params, Tx
from db.states import JobState, Relation

# A job as the store shows it: step, speed and the change number come from the
# progress row while a worker holds the job (see schema.py).
JOB_COLUMNS = (
    "j.id, j.guild_id, j.channel_id, j.user_id, j.message_id, j.result_message_id, j.prompt, "
    "j.params, j.state, j.priority, j.cost, j.attempts, j.max_attempts, "
    "COALESCE(p.step, j.step) AS step, j.total_steps, j.created_at, j.started_at, j.finished_at, "
    "j.error, j.parent_id, j.relation, j.seed, COALESCE(p.steps_per_s, j.steps_per_s) AS steps_per_s, "
    "j.gpu_seconds, j.delivered, GREATEST(j.version, p.version) AS version, j.lease_owner, "
    "p.lease_expires_at, j.group_id, j.not_before, j.resumed_from_step"
)
SELECT_JOBS = f"SELECT {JOB_COLUMNS} FROM jobs j LEFT JOIN job_progress p ON p.job_id = j.id"


def job_from_row(row: DictRow) -> Job:
    created_at = from_epoch(row["created_at"])
    assert created_at is not None
    return Job(
        id=row["id"],
        guild_id=row["guild_id"],
        channel_id=row["channel_id"],
        user_id=row["user_id"],
        message_id=row["message_id"],
        result_message_id=row["result_message_id"],
        prompt=row["prompt"],
        params=json.loads(row["params"]),
        state=JobState(row["state"]),
        priority=row["priority"],
        cost=row["cost"],
        attempts=row["attempts"],
        max_attempts=row["max_attempts"],
        step=row["step"],
        total_steps=row["total_steps"],
        created_at=created_at,
        started_at=from_epoch(row["started_at"]),
        finished_at=from_epoch(row["finished_at"]),
        error=row["error"],
        parent_id=row["parent_id"],
        relation=Relation(row["relation"]) if row["relation"] else None,
        seed=row["seed"],
        steps_per_s=row["steps_per_s"],
        gpu_seconds=row["gpu_seconds"],
        delivered=bool(row["delivered"]),
        version=row["version"],
        worker=row["lease_owner"],
        lease_expires_at=from_epoch(row["lease_expires_at"]),
        group_id=row["group_id"],

        not_before=from_epoch(row["not_before"]),
        resumed_from_step=row["resumed_from_step"],
    )


async def fetch_job(tx: Tx, job_id: int) -> Job | None:
    row = await tx.one(f"{SELECT_JOBS} WHERE j.id = %s", (job_id,))
    return job_from_row(row) if row else None


async def fetch_jobs(tx: Tx, query: str, params: Params) -> list[Job]:
    """Jobs for ``query``, a query that starts with SELECT_JOBS."""
    return [job_from_row(row) for row in await tx.all(query, params)]
