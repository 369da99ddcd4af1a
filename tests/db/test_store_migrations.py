"""Migrations: applied once, in order, and an old database upgrades."""

from __future__ import annotations

import sqlite3
from datetime import UTC, datetime
from pathlib import Path

import pytest

from db import JobState, SchemaTooNew, SqliteStore
from db.clock import to_epoch
from db.jobs import check_new_job
from db.migrations import MIGRATIONS, Migration, migrate, schema_version
from db.sqlite.connection import connect
from jobspec import batch_key
from tests.db.factories import new_job


def schema(path: Path) -> list[tuple]:
    conn = sqlite3.connect(path)
    try:
        return conn.execute("SELECT type, name, sql FROM sqlite_master ORDER BY name").fetchall()
    finally:
        conn.close()


async def test_opening_twice_changes_nothing(db_path: Path) -> None:
    async with await SqliteStore.open(db_path) as store:
        job = await store.enqueue(new_job())
    first = schema(db_path)
    async with await SqliteStore.open(db_path) as store:
        assert await store.get(job.id) == job
    assert schema(db_path) == first
    conn = connect(db_path)
    try:
        assert schema_version(conn) == len(MIGRATIONS)
        assert migrate(conn) == []
    finally:
        conn.close()
    assert schema(db_path) == first


# A job row as the first schema held it (before the batch key column of migration 3).
V1_INSERT = """INSERT INTO jobs (guild_id, channel_id, user_id, prompt, params, model, width, height, state,
    cost, max_attempts, total_steps, created_at, seed, version)
    VALUES (1, 10, 100, ?, ?, ?, ?, ?, 'queued', ?, 3, ?, ?, ?, 1)"""


async def test_a_database_from_an_older_schema_upgrades_and_keeps_its_jobs(db_path: Path) -> None:
    conn = connect(db_path)
    assert migrate(conn, MIGRATIONS[:1]) == [1]
    old = check_new_job(new_job(model="wikiart_16384", cutn=24))
    conn.execute(V1_INSERT, (old.prompt, old.params_json, old.model, old.width, old.height, old.cost, old.steps,
                             to_epoch(datetime(2024, 1, 1, tzinfo=UTC)), old.new.seed))
    # ... with the fair-share counters migration 1 kept (today's rebuild reads columns of later migrations)
    conn.execute("INSERT INTO guild_queues (guild_id, queued, queued_cost, pending) VALUES (1, 1, ?, 1)", (old.cost,))
    conn.execute("INSERT INTO user_queues (guild_id, user_id, queued, queued_cost, pending) VALUES (1, ?, 1, ?, 1)",
                 (old.new.user_id, old.cost))
    conn.close()
    async with await SqliteStore.open(db_path) as store:
        assert (await store.get(1)).not_before is None  # a column of a later migration
        assert (await store.settings(1)).max_steps == 500  # a table of migration 2
        # the batch key of migration 3, computed from the old row's params
        (claim,) = await store.claim("gpu-0", lease_seconds=30, batch_key=batch_key(old.new.params))
        assert claim.job.prompt == old.prompt and claim.job.state is JobState.RUNNING
        assert claim.job.params == old.new.params
    conn = connect(db_path)
    assert schema_version(conn) == len(MIGRATIONS)
    conn.close()


def test_a_new_migration_applies_on_top_and_only_once(db_path: Path) -> None:
    extra = Migration(
        len(MIGRATIONS) + 1,
        "test: a column with a default",
        ("ALTER TABLE jobs ADD COLUMN nsfw INTEGER NOT NULL DEFAULT 0",),
    )
    conn = connect(db_path)
    try:
        assert migrate(conn) == list(range(1, len(MIGRATIONS) + 1))
        assert migrate(conn, (*MIGRATIONS, extra)) == [extra.version]
        assert migrate(conn, (*MIGRATIONS, extra)) == []
        columns = [row[1] for row in conn.execute("PRAGMA table_info(jobs)")]
        assert "nsfw" in columns
        with pytest.raises(SchemaTooNew):
            migrate(conn)
    finally:
        conn.close()


def test_a_failing_migration_leaves_the_database_as_it_was(db_path: Path) -> None:
    broken = Migration(
        len(MIGRATIONS) + 1,
        "test: fails half way",
        ("CREATE TABLE half (x INTEGER)", "THIS IS NOT SQL"),
    )
    conn = connect(db_path)
    try:
        migrate(conn)
        with pytest.raises(sqlite3.OperationalError):
            migrate(conn, (*MIGRATIONS, broken))
        assert schema_version(conn) == len(MIGRATIONS)
        assert conn.execute("SELECT name FROM sqlite_master WHERE name = 'half'").fetchone() is None
    finally:
        conn.close()


def test_migrations_must_be_numbered_in_order(db_path: Path) -> None:
    conn = connect(db_path)
    try:
        with pytest.raises(ValueError, match="numbered"):
            migrate(conn, (MIGRATIONS[1], MIGRATIONS[0]))
    finally:
        conn.close()


async def test_a_database_newer_than_the_code_is_refused(db_path: Path) -> None:
    conn = connect(db_path)
    migrate(conn)
    conn.execute(f"PRAGMA user_version = {len(MIGRATIONS) + 5}")
    conn.close()
    with pytest.raises(SchemaTooNew, match="newer"):
        await SqliteStore.open(db_path)


def test_every_connection_gets_wal_busy_timeout_and_foreign_keys(db_path: Path) -> None:
    conn = connect(db_path, busy_timeout_s=3)
    try:
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert conn.execute("PRAGMA busy_timeout").fetchone()[0] == 3000
        assert conn.execute("PRAGMA foreign_keys").fetchone()[0] == 1
        assert conn.execute("PRAGMA synchronous").fetchone()[0] == 1  # NORMAL
    finally:
        conn.close()
