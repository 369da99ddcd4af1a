"""Helpers for the PostgreSQL-only store tests: raw transactions, child processes, invariants."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import psycopg

from db.postgres.connection import Timeouts, Tx, connect

REPO = Path(__file__).resolve().parents[2]


@asynccontextmanager
async def open_transaction(url: str, name: str = "vqbot-test") -> AsyncIterator[Tx]:
    """A transaction on a connection of its own, committed when the block ends."""
    conn = await connect(url, Timeouts(statement_s=0, idle_in_transaction_s=0, lock_s=0), name)
    try:
        async with conn.transaction():
            yield Tx(conn)
    finally:
        await conn.close()


async def start_python(code: str, *args: str) -> asyncio.subprocess.Process:
    """A Python child process running ``code`` with this checkout on its path."""
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]))
    return await asyncio.create_subprocess_exec(
        sys.executable, "-c", code, *args, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )


def assert_counters_match(url: str) -> None:
    """The guild and member queue counters agree with the job rows."""
    with psycopg.connect(url) as conn:
        for table, keys in (("guild_queues", "guild_id"), ("user_queues", "guild_id, user_id")):
            stored = set(
                conn.execute(
                    f"SELECT {keys}, queued, queued_cost, pending FROM {table} "
                    "WHERE queued > 0 OR pending > 0 OR queued_cost != 0"
                )
            )
            derived = set(
                conn.execute(
                    f"SELECT {keys}, COUNT(*) FILTER (WHERE state = 'queued'), "
                    "COALESCE(SUM(cost) FILTER (WHERE state = 'queued'), 0), COUNT(*) FROM jobs "
                    f"WHERE state IN ('queued', 'running', 'cancelling') GROUP BY {keys}"
                )
            )
            assert stored == derived, table


def rows(url: str, query: str, params: tuple[object, ...] = ()) -> list[tuple[object, ...]]:
    with psycopg.connect(url) as conn:
        return conn.execute(query, params).fetchall()


async def until_waiting_for_a_lock(url: str, application_name: str) -> None:
    """Return once a session of ``application_name`` waits for a row lock (polls the server)."""
    query = (
        "SELECT 1 FROM pg_stat_activity WHERE datname = current_database() "
        "AND application_name = %s AND wait_event_type = 'Lock'"
    )
    async with await psycopg.AsyncConnection.connect(url, autocommit=True) as conn:
        while not await (await conn.execute(query, (application_name,))).fetchone():
            await asyncio.sleep(0.01)
