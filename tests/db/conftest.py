"""Fixtures for the store tests: each store test runs on a real SQLite file and on a real PostgreSQL server.

``store`` and ``limited`` are parametrised over both backends (test ids end in
``[sqlite]`` and ``[postgres]``), and so is ``fresh_store`` (an empty store
per example of a property test). A test that asks for ``db_path`` itself reads
or reopens the SQLite file, so it runs on SQLite only; so does one marked
``@pytest.mark.sqlite_only(reason=...)``.

PostgreSQL: the server named by ``VQBOT_TEST_POSTGRES`` (an admin URL; by
default the local server as user postgres, as ``.ci/run`` starts it). Each test
run creates its own database ``vqbot_test_<random>`` and drops it at the end;
each test starts from an empty schema. Without a server the PostgreSQL tests
fail, they don't skip.
"""

from __future__ import annotations

import inspect
import os
import secrets
import sqlite3
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Sequence
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from pathlib import Path
from typing import Any

import psycopg
import pytest
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict

from db import FakeClock, SqliteStore, Store
from db.postgres import PostgresStore
from db.postgres.connection import with_database
from tests.db import postgres_checks, sqlite_checks
from tests.db.factories import OPEN_LIMITS

POSTGRES_ENV = "VQBOT_TEST_POSTGRES"
DEFAULT_POSTGRES = "postgresql://postgres@127.0.0.1:5432/postgres"
BACKENDS = ("sqlite", "postgres")
OpenStore = Callable[..., Awaitable[Store]]


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "sqlite_only(reason): the test checks something only SQLite has")


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "backend" not in metafunc.fixturenames:
        return
    own = inspect.signature(metafunc.function).parameters
    sqlite_only = "db_path" in own or metafunc.definition.get_closest_marker("sqlite_only") is not None
    metafunc.parametrize("backend", ["sqlite"] if sqlite_only else list(BACKENDS), indirect=True)


@pytest.fixture
def backend(request: pytest.FixtureRequest) -> str:
    return str(getattr(request, "param", "sqlite"))


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    return tmp_path / "vqbot.sqlite3"


@pytest.fixture(scope="session")
def postgres_admin() -> str:
    """The admin URL of a PostgreSQL server that answers (the test fails otherwise)."""
    url = os.environ.get(POSTGRES_ENV) or DEFAULT_POSTGRES
    try:
        with psycopg.connect(url, connect_timeout=10) as conn:
            conn.execute("SELECT 1")
    except psycopg.Error as exc:
        info = conninfo_to_dict(url)
        pytest.fail(
            f"No PostgreSQL server for the store tests at {info.get('host')}:{info.get('port')} ({exc}). "
            f"Start one (.ci/run shows how) or set {POSTGRES_ENV} to an admin URL.",
            pytrace=False,
        )
    return url


@pytest.fixture(scope="session")
def make_database(postgres_admin: str) -> Iterator[Callable[[], str]]:
    """Creates databases named vqbot_test_<random> on demand; drops them all at the end."""
    made: list[str] = []

    def make() -> str:
        name = f"vqbot_test_{secrets.token_hex(6)}"
        with psycopg.connect(postgres_admin, autocommit=True) as conn:
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
        made.append(name)
        return with_database(postgres_admin, name)

    yield make
    with psycopg.connect(postgres_admin, autocommit=True) as conn:
        for name in made:
            conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))


@pytest.fixture(scope="session")
def session_database(make_database: Callable[[], str]) -> str:
    return make_database()


@pytest.fixture
def pg_url(session_database: str) -> str:
    """The test run's database, emptied: the store under test migrates it afresh."""
    with psycopg.connect(session_database, autocommit=True) as conn:
        conn.execute("DROP SCHEMA public CASCADE")
        conn.execute("CREATE SCHEMA public")
    return session_database


@pytest.fixture
def database_spec(backend: str, request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """This test's database as ``db.open_store`` (or ``VQBOT_DATABASE``) takes it: the SQLite
    file's path or the PostgreSQL URL (for child processes that open the same store)."""
    return str(request.getfixturevalue("pg_url") if backend == "postgres" else tmp_path / "vqbot.sqlite3")


@pytest.fixture
async def open_store(backend: str, database_spec: str, clock: FakeClock) -> AsyncIterator[OpenStore]:
    """``await open_store(**options)``: another store on this test's database (same file or
    same PostgreSQL database), with the test's clock unless given one; closed at the end."""
    opened: list[SqliteStore | PostgresStore] = []

    async def open_one(**options: Any) -> Store:
        options.setdefault("clock", clock)
        if backend == "postgres":
            store: SqliteStore | PostgresStore = await PostgresStore.open(database_spec, **options)
        else:
            store = await SqliteStore.open(database_spec, **options)
        opened.append(store)
        return store

    yield open_one
    for store in opened:
        await store.close()


def empty_database(url: str) -> None:
    """Delete every row the store keeps (fast enough to run before each example of a property test)."""
    with psycopg.connect(url, autocommit=True) as conn:
        tables = [r[0] for r in conn.execute("SELECT tablename FROM pg_tables WHERE schemaname = 'public'")]
        if "store_state" not in tables:
            return  # not migrated yet: the store will create everything
        data = [sql.Identifier(t) for t in tables if t not in ("store_state", "schema_version")]
        conn.execute(sql.SQL("TRUNCATE {} RESTART IDENTITY CASCADE").format(sql.SQL(", ").join(data)))
        conn.execute("UPDATE store_state SET seconds_per_cost = NULL")


@pytest.fixture
def fresh_store(
    backend: str, request: pytest.FixtureRequest, tmp_path: Path
) -> Callable[..., AbstractAsyncContextManager[Store]]:
    """``async with fresh_store(**options) as store``: an empty store every time, on this test's
    backend (for property tests, which run many examples inside one test)."""
    url = request.getfixturevalue("pg_url") if backend == "postgres" else None
    made = iter(range(1_000_000))

    @asynccontextmanager
    async def fresh(**options: Any) -> AsyncIterator[Store]:
        store: SqliteStore | PostgresStore
        if url is not None:
            empty_database(url)
            store = await PostgresStore.open(url, **options)
        else:
            store = await SqliteStore.open(tmp_path / f"fresh-{next(made)}.sqlite3", **options)
        try:
            yield store
        finally:
            await store.close()

    return fresh


@pytest.fixture
def counters_match(backend: str, request: pytest.FixtureRequest) -> Callable[[Store], None]:
    """``counters_match(store)``: assert that the guild and member queue counters in ``store``'s
    database agree with its job rows (on PostgreSQL, while the store is open: see fresh_store)."""
    if backend == "postgres":
        url = request.getfixturevalue("pg_url")
        return lambda store: postgres_checks.assert_counters_match(url)

    def check_sqlite(store: Store) -> None:
        assert isinstance(store, SqliteStore)
        sqlite_checks.assert_counters_match(store.path)

    return check_sqlite


RawSql = Callable[[str, Sequence[object]], list[tuple[Any, ...]]]


@pytest.fixture
def raw_sql(backend: str, request: pytest.FixtureRequest, tmp_path: Path) -> RawSql:
    """``raw_sql(statement, params)``: one statement (``?`` placeholders) run and committed on this
    test's database past the store, e.g. to plant rows as an older vqbot wrote them; its rows."""
    if backend == "postgres":
        url = request.getfixturevalue("pg_url")

        def run_postgres(statement: str, params: Sequence[object] = ()) -> list[tuple[Any, ...]]:
            with psycopg.connect(url, autocommit=True) as conn:
                cursor = conn.execute(statement.replace("?", "%s"), tuple(params))  # type: ignore[arg-type]
                return cursor.fetchall() if cursor.description else []

        return run_postgres

    def run_sqlite(statement: str, params: Sequence[object] = ()) -> list[tuple[Any, ...]]:
        conn = sqlite3.connect(tmp_path / "vqbot.sqlite3", isolation_level=None)
        try:
            return conn.execute(statement, tuple(params)).fetchall()
        finally:
            conn.close()

    return run_sqlite


@pytest.fixture
async def store(open_store: OpenStore) -> Store:
    return await open_store(defaults=OPEN_LIMITS)


@pytest.fixture
async def limited(open_store: OpenStore) -> Store:
    """A store with the shipped default limits."""
    return await open_store()
