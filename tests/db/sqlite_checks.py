"""Helpers for the SQLite side of the store tests: invariants read straight from the file."""

from __future__ import annotations

import sqlite3
from pathlib import Path


def assert_counters_match(path: Path) -> None:
    """The guild and member queue counters agree with the job rows."""
    conn = sqlite3.connect(path)
    try:
        for table, keys in (("guild_queues", "guild_id"), ("user_queues", "guild_id, user_id")):
            stored = set(
                conn.execute(
                    f"SELECT {keys}, queued, queued_cost, pending FROM {table} "
                    "WHERE queued > 0 OR pending > 0 OR queued_cost != 0"
                )
            )
            derived = set(
                conn.execute(
                    f"SELECT {keys}, SUM(state = 'queued' AND not_before IS NULL), "
                    "SUM(CASE WHEN state = 'queued' AND not_before IS NULL THEN cost ELSE 0 END), COUNT(*) FROM jobs "
                    f"WHERE state IN ('queued', 'running', 'cancelling') GROUP BY {keys}"
                )
            )
            assert stored == derived, table
    finally:
        conn.close()
