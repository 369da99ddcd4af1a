"""Helpers for the PostgreSQL-only store tests: raw transactions, child processes, invariants."""

from __future__ import annotations

import asyncio
import os
import secrets
import shutil
import subprocess
import tempfile
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from pathlib import Path

import psycopg

from db.postgres.connection import SessionSettings, Tx, connect
from tests.db.processes import start_python as start_python  # re-exported for the PostgreSQL tests


@asynccontextmanager
async def open_transaction(url: str, name: str = "vqbot-test") -> AsyncIterator[Tx]:
    """A transaction on a connection of its own, committed when the block ends."""
    conn = await connect(url, SessionSettings(statement_s=0, idle_in_transaction_s=0, lock_s=0), name)
    try:
        async with conn.transaction():
            yield Tx(conn)
    finally:
        await conn.close()


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
                    f"SELECT {keys}, COUNT(*) FILTER (WHERE state = 'queued' AND not_before IS NULL), "
                    "COALESCE(SUM(cost) FILTER (WHERE state = 'queued' AND not_before IS NULL), 0), COUNT(*) FROM jobs "
                    f"WHERE state IN ('queued', 'running', 'cancelling') GROUP BY {keys}"
                )
            )
            assert stored == derived, table


def rows(url: str, query: str, params: tuple[object, ...] = ()) -> list[tuple[object, ...]]:
    """The rows ``query`` returns (none for a statement without results), committed."""
    with psycopg.connect(url) as conn:
        cursor = conn.execute(query, params)
        return cursor.fetchall() if cursor.description else []


async def until_waiting_for_a_lock(url: str, application_name: str) -> None:
    """Return once a session of ``application_name`` waits for a row lock (polls the server)."""
    query = (
        "SELECT 1 FROM pg_stat_activity WHERE datname = current_database() "
        "AND application_name = %s AND wait_event_type = 'Lock'"
    )
    async with await psycopg.AsyncConnection.connect(url, autocommit=True) as conn:
        while not await (await conn.execute(query, (application_name,))).fetchone():
            await asyncio.sleep(0.01)


def postgres_bin() -> Path:
    """The folder of initdb and pg_ctl (Debian keeps them out of PATH)."""
    found = sorted(Path("/usr/lib/postgresql").glob("*/bin/initdb"))
    if found:
        return found[-1].parent
    which = shutil.which("pg_ctl")
    assert which, "PostgreSQL's server programs (initdb, pg_ctl) are not installed"
    return Path(which).parent


@contextmanager
def throwaway_cluster(password: str) -> Iterator[str]:
    """A PostgreSQL cluster of its own on a Unix socket, with password logins only; yields its URL.

    initdb refuses to run as root, so as root the cluster belongs to the postgres user.
    """
    folder = Path(tempfile.mkdtemp(prefix="vqpg-"))
    as_user: list[str] = []
    if os.geteuid() == 0:
        shutil.chown(folder, "postgres")
        as_user = ["runuser", "-u", "postgres", "--"]
    data, pwfile = folder / "data", folder / "pw"
    pwfile.write_text(password + "\n")
    if as_user:
        shutil.chown(pwfile, "postgres")
    port = 5433 + secrets.randbelow(2000)
    bin_dir = postgres_bin()
    run = lambda *cmd: subprocess.run([*as_user, *cmd], check=True, capture_output=True, timeout=120)
    run(str(bin_dir / "initdb"), "-D", str(data), "-U", "postgres", "--auth=scram-sha-256",
        f"--pwfile={pwfile}", "--no-sync", "-E", "UTF8")
    options = f"-k {folder} -p {port} -c listen_addresses='' -c fsync=off"
    run(str(bin_dir / "pg_ctl"), "-D", str(data), "-o", options, "-w", "-l", str(folder / "log"), "start")
    try:
        yield f"postgresql://postgres:{password}@/postgres?host={folder}&port={port}"
    finally:
        run(str(bin_dir / "pg_ctl"), "-D", str(data), "-m", "immediate", "stop")
        shutil.rmtree(folder, ignore_errors=True)
