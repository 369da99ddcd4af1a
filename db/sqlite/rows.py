"""Turning job rows into Job objects."""

from __future__ import annotations

import json
import sqlite3

from db.clock import from_epoch
from db.jobs import Job
from db.states import JobState, Relation

JOB_COLUMNS = (
    "id, guild_id, channel_id, user_id, message_id, result_message_id, prompt, params, "
    "state, priority, cost, attempts, max_attempts, step, total_steps, created_at, "
    "started_at, finished_at, error, parent_id, relation, seed, steps_per_s, gpu_seconds, "
    "delivered, version, lease_owner, lease_expires_at, group_id, not_before, resumed_from_step"
)


def job_from_row(row: sqlite3.Row) -> Job:
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


def fetch_job(conn: sqlite3.Connection, job_id: int) -> Job | None:
    row = conn.execute(f"SELECT {JOB_COLUMNS} FROM jobs WHERE id = ?", (job_id,)).fetchone()
    return job_from_row(row) if row else None


def fetch_jobs(conn: sqlite3.Connection, sql: str, params: tuple[object, ...]) -> list[Job]:
    """Jobs for ``sql``, a query that selects JOB_COLUMNS."""
    return [job_from_row(row) for row in conn.execute(sql, params)]
