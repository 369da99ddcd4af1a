"""Moving a queue from a SQLite file to a PostgreSQL database (``vqbot db migrate-to URL``).

Copies every job (same ids, so buttons, reactions and /history keep working;
queued ones stay queued and keep their place in the fair share), the results
not yet posted, guild settings, styles, the audit trail, today's GPU usage
and the measured speed, in one PostgreSQL transaction: all or nothing.
Previews are not copied. The target must be empty, and no job may be running
(stop every worker first: a worker that stops cleanly hands its jobs back).
"""

from __future__ import annotations

import asyncio
import logging
import sqlite3
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from db.errors import StoreUnavailable
from db.postgres.accounting import rebuild_queues
from db.postgres.connection import Tx
from db.postgres.store import PostgresStore, in_transaction
from db.sqlite_store import SqliteStore

log = logging.getLogger(__name__)

JOB_FIELDS = (
    "id, guild_id, channel_id, user_id, message_id, result_message_id, prompt, params, model, width, "
    "height, state, priority, cost, charged_s, attempts, max_attempts, step, total_steps, steps_per_s, "
    "gpu_seconds, created_at, started_at, finished_at, error, parent_id, relation, seed, group_id, not_before, "
    "deferrals, resumed_from_step, batch_key, delivered"
)
TABLES = {
    "jobs": f"SELECT {JOB_FIELDS} FROM jobs ORDER BY id",
    "results": "SELECT r.job_id, r.png, r.created_at FROM results r JOIN jobs j ON j.id = r.job_id "
    "WHERE j.delivered = 0",
    "checkpoints": "SELECT job_id, step, data, saved_at FROM checkpoints",
    "gpu_usage": "SELECT guild_id, day, user_id, gpu_seconds FROM gpu_usage",
    "guild_queues": "SELECT guild_id, vtime, user_vtime FROM guild_queues",
    "user_queues": "SELECT guild_id, user_id, vtime, last_enqueued_at FROM user_queues",
    "guild_settings": "SELECT guild_id, key, value FROM guild_settings",
    "guild_styles": "SELECT guild_id, name, text FROM guild_styles",
    "audit_log": "SELECT id, guild_id, user_id, at, key, old, new FROM audit_log ORDER BY id",
    "store_state": "SELECT vtime, seconds_per_cost FROM store_state",
}


@dataclass(frozen=True)
class CopyReport:
    """What ``migrate_sqlite_to_postgres`` copied."""

    jobs: int
    queued: int
    results: int
    settings: int
    styles: int
    audit: int


async def migrate_sqlite_to_postgres(sqlite_path: str | Path, url: str) -> CopyReport:
    """Copy the queue in the SQLite file ``sqlite_path`` into the (empty) PostgreSQL database ``url``.

    Raises StoreUnavailable, in one sentence, when the file is missing, a job
    is still running, or the target already holds data.
    """
    path = Path(sqlite_path)
    if not path.is_file():
        raise StoreUnavailable(f"There is no SQLite database at {path}; check the path.", transient=False)
    async with await SqliteStore.open(path) as source:  # brings the file up to date
        await source.reclaim_expired()  # jobs of workers that died go back to the queue
        stats = await source.stats()
    active = int(stats["running"]) + int(stats["cancelling"])  # type: ignore[call-overload]
    if active:
        raise StoreUnavailable(
            f"{active} jobs are still running in {path}; stop every worker (they hand their jobs back) "
            "and run this again.",
            transient=True,
        )
    data = await asyncio.to_thread(_read, path)
    async with await PostgresStore.open(url) as target:
        report = await in_transaction(target, lambda tx: _copy(tx, data, target.where))
    log.info("copied %d jobs (%d queued) from %s to %s", report.jobs, report.queued, path, target.where)
    return report


def _read(path: Path) -> dict[str, list[tuple[Any, ...]]]:
    conn = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True)
    try:
        conn.execute("BEGIN")  # one snapshot for every table
        return {table: conn.execute(query).fetchall() for table, query in TABLES.items()}
    finally:
        conn.close()


async def _copy(tx: Tx, data: dict[str, list[tuple[Any, ...]]], where: str) -> CopyReport:
    held = await tx.one(
        "SELECT (SELECT count(*) FROM jobs) + (SELECT count(*) FROM guild_settings) "
        "+ (SELECT count(*) FROM guild_styles) + (SELECT count(*) FROM audit_log) AS n"
    )
    if held and held["n"]:
        raise StoreUnavailable(
            f"The PostgreSQL database at {where} already holds vqbot data; copy into an empty database.",
            transient=False,
        )
    version = await tx.version()
    ((vtime, seconds_per_cost),) = data["store_state"]
    columns = JOB_FIELDS + ", version"
    marks = ", ".join(["%s"] * (columns.count(",") + 1))
    async with tx.conn.cursor() as cursor:
        await cursor.executemany(
            f"INSERT INTO jobs ({columns}) VALUES ({marks})",
            [(*row[:-1], bool(row[-1]), version) for row in data["jobs"]],
        )
        for table, columns, rows in (
            ("results", "job_id, png, created_at", data["results"]),
            ("checkpoints", "job_id, step, data, saved_at", data["checkpoints"]),
            ("gpu_usage", "guild_id, day, user_id, gpu_seconds", data["gpu_usage"]),
            ("guild_settings", "guild_id, key, value", data["guild_settings"]),
            ("guild_styles", "guild_id, name, text", data["guild_styles"]),
            ("audit_log", "id, guild_id, user_id, at, key, old, new", data["audit_log"]),
            # Fair share goes on where it was: the same virtual times; the newest claim's floor.
            ("guild_queues", "guild_id, vtime, user_vtime, claim_vtime", [(*r, vtime) for r in data["guild_queues"]]),
            ("user_queues", "guild_id, user_id, vtime, last_enqueued_at", data["user_queues"]),
        ):
            marks = ", ".join(["%s"] * (columns.count(",") + 1))
            await cursor.executemany(f"INSERT INTO {table} ({columns}) VALUES ({marks})", rows)
    await tx.run("UPDATE store_state SET seconds_per_cost = %s WHERE id = 1", (seconds_per_cost,))
    for table in ("jobs", "audit_log"):  # new rows continue after the copied ids
        await tx.run(
            f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), GREATEST((SELECT max(id) FROM {table}), 1), "
            f"(SELECT max(id) IS NOT NULL FROM {table}))"
        )
    await rebuild_queues(tx)
    return CopyReport(
        jobs=len(data["jobs"]),
        queued=sum(1 for row in data["jobs"] if row[11] == "queued"),
        results=len(data["results"]),
        settings=len(data["guild_settings"]),
        styles=len(data["guild_styles"]),
        audit=len(data["audit_log"]),
    )
