"""PostgreSQL migrations: applied once, also by processes opening at once; a newer database is refused."""

from __future__ import annotations

import json
from collections.abc import Callable

import psycopg
import pytest

from db import SchemaTooNew
from db.migrations import Migration
from db.postgres import PostgresStore
from db.postgres.connection import SessionSettings, connect
from db.postgres.schema import MIGRATIONS, migrate, schema_version
from tests.db.factories import new_job
from tests.db.postgres_checks import rows, start_python

OPENER = """
import asyncio, json, sys
from db.postgres.connection import SessionSettings, connect
from db.postgres.schema import migrate

async def main(url):
    conn = await connect(url, SessionSettings(), "vqbot-migrate")
    try:
        print(json.dumps(await migrate(conn)))
    finally:
        await conn.close()

asyncio.run(main(sys.argv[1]))
"""
SCHEMA = """SELECT table_name, column_name, data_type, is_nullable, column_default
    FROM information_schema.columns WHERE table_schema = 'public' ORDER BY table_name, column_name"""


def schema(url: str) -> list[tuple[object, ...]]:
    return rows(url, SCHEMA) + rows(url, "SELECT indexname, indexdef FROM pg_indexes WHERE schemaname = 'public'")


async def test_opening_twice_changes_nothing(pg_url: str) -> None:
    async with await PostgresStore.open(pg_url) as store:
        job = await store.enqueue(new_job())
    first = schema(pg_url)
    async with await PostgresStore.open(pg_url) as store:
        assert await store.get(job.id) == job
    assert schema(pg_url) == first
    assert rows(pg_url, "SELECT version FROM schema_version") == [(len(MIGRATIONS),)]


async def test_processes_opening_a_new_database_at_once_apply_each_migration_once(
    make_database: Callable[[], str],
) -> None:
    url = make_database()
    procs = [await start_python(OPENER, url) for _ in range(4)]
    outputs = [await proc.communicate() for proc in procs]
    for proc, (_, err) in zip(procs, outputs, strict=True):
        assert proc.returncode == 0, err.decode()
    applied = [version for out, _ in outputs for version in json.loads(out)]
    assert sorted(applied) == list(range(1, len(MIGRATIONS) + 1))  # each by one process, whichever
    assert rows(url, "SELECT version FROM schema_version") == [(len(MIGRATIONS),)]


async def test_a_new_migration_applies_on_top_and_only_once(pg_url: str) -> None:
    extra = Migration(
        len(MIGRATIONS) + 1, "test: a column with a default", ("ALTER TABLE jobs ADD COLUMN nsfw boolean DEFAULT false",)
    )
    conn = await connect(pg_url, SessionSettings(), "test")
    try:
        assert await migrate(conn) == list(range(1, len(MIGRATIONS) + 1))
        assert await migrate(conn, (*MIGRATIONS, extra)) == [extra.version]
        assert await migrate(conn, (*MIGRATIONS, extra)) == []
        with pytest.raises(SchemaTooNew):
            await migrate(conn)
    finally:
        await conn.close()
    assert ("jobs", "nsfw") in {r[:2] for r in rows(pg_url, SCHEMA)}


async def test_a_failing_migration_leaves_the_database_as_it_was(pg_url: str) -> None:
    broken = Migration(len(MIGRATIONS) + 1, "test: fails half way", ("CREATE TABLE half (x integer)", "NOT SQL"))
    conn = await connect(pg_url, SessionSettings(), "test")
    try:
        await migrate(conn)
        with pytest.raises(psycopg.errors.SyntaxError):
            await migrate(conn, (*MIGRATIONS, broken))
        assert await schema_version(conn) == len(MIGRATIONS)
    finally:
        await conn.close()
    assert rows(pg_url, "SELECT to_regclass('half')") == [(None,)]


async def test_a_database_newer_than_the_code_is_refused(pg_url: str) -> None:
    async with await PostgresStore.open(pg_url):
        pass
    rows(pg_url, "UPDATE schema_version SET version = version + 5 RETURNING version")
    with pytest.raises(SchemaTooNew) as refused:
        await PostgresStore.open(pg_url)
    assert "newer" in str(refused.value) and "Upgrade vqbot" in str(refused.value)


async def test_migrations_must_be_numbered_in_order(pg_url: str) -> None:
    conn = await connect(pg_url, SessionSettings(), "test")
    try:
        with pytest.raises(ValueError, match="numbered"):
            await migrate(conn, (Migration(2, "two", ()),))
    finally:
        await conn.close()
