"""Migrations: applied once, in order, and an old database upgrades."""

from __future__ import annotations

import json
import sqlite3
from datetime import UTC, datetime
from pathlib import Path

import pytest

from db import JobState, SchemaTooNew, SqliteStore
from db.clock import to_epoch
from db.migrations import MIGRATIONS, Migration, migrate, schema_version
from db.sqlite.connection import connect
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


async def test_a_database_from_an_older_schema_upgrades_and_keeps_its_jobs(db_path: Path) -> None:
    conn = connect(db_path)
    assert migrate(conn, MIGRATIONS[:1]) == [1]
    # A queued job as vqbot wrote it then (migration 1's columns only).
    conn.execute(
        "INSERT INTO jobs (guild_id, channel_id, user_id, prompt, params, model, width, height, state, cost, "
        "max_attempts, total_steps, created_at, seed, version) VALUES (1, 10, 100, 'a temple', ?, ?, 256, 256, "
        "'queued', ?, 3, 100, ?, 7, 1)",
        (json.dumps(new_job().params), new_job().params["model"], 100 * 256 * 256 * 16,
         to_epoch(datetime(2024, 1, 1, tzinfo=UTC))),
    )
    conn.execute("INSERT INTO guild_queues (guild_id, queued, queued_cost, pending) VALUES (1, 1, 1, 1)")
    conn.execute("INSERT INTO user_queues (guild_id, user_id, queued, queued_cost, pending) VALUES (1, 100, 1, 1, 1)")
    conn.close()
    async with await SqliteStore.open(db_path) as store:
        old = await store.get(1)
        assert old is not None and old.prompt == "a temple" and old.state is JobState.QUEUED
        assert old.not_before is None and old.resumed_from_step is None  # columns of migration 3
        assert (await store.settings(1)).max_steps == 500  # a table of migration 2
        (claim,) = await store.claim("gpu-0", lease_seconds=30)
        assert claim.job.id == old.id and claim.job.state is JobState.RUNNING
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
