"""Opening a store: the right backend for the spec, and one-sentence errors for what the operator must fix."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from psycopg.conninfo import make_conninfo

from db import InvalidInput, SqliteStore, StoreUnavailable
from db.open import open_store
from db.postgres import PostgresStore, connection
from tests.db.factories import new_job
from tests.db.postgres_checks import open_transaction, rows, throwaway_cluster

PASSWORD = "correct-horse-battery-staple"


@pytest.fixture(scope="module")
def password_server() -> Iterator[str]:
    with throwaway_cluster(PASSWORD) as url:
        yield url


def assert_one_sentence(error: BaseException, *, secret: str = PASSWORD) -> None:
    text = str(error)
    assert text.endswith(".") and "\n" not in text and "Traceback" not in text
    assert secret not in text
    assert ". " not in text  # one sentence


@pytest.mark.parametrize("spec", ["{path}", "sqlite:///{path}"])
async def test_a_path_or_sqlite_url_opens_a_sqlite_store(tmp_path: Path, spec: str) -> None:
    path = tmp_path / "q.sqlite3"
    async with await open_store(spec.format(path=path)) as store:
        assert isinstance(store, SqliteStore) and store.path == path
    async with await open_store(path) as store:
        assert isinstance(store, SqliteStore)


async def test_a_postgresql_url_opens_a_postgres_store(pg_url: str) -> None:
    async with await open_store(pg_url) as store:
        assert isinstance(store, PostgresStore)
        assert (await store.enqueue(new_job())).id == 1


async def test_a_key_value_server_string_opens_a_postgres_store_not_a_file(
        pg_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    async with await open_store(make_conninfo(pg_url)) as store:
        assert isinstance(store, PostgresStore)
    assert list(tmp_path.iterdir()) == []  # no SQLite file named after the server


async def test_an_unknown_scheme_is_refused_listing_the_choices() -> None:
    with pytest.raises(InvalidInput) as refused:
        await open_store("mysql://root@localhost/vqbot")
    assert "mysql://" in str(refused.value) and "postgresql://" in str(refused.value)


async def test_an_unreachable_server_says_where_it_looked(postgres_admin: str) -> None:
    url = make_conninfo(postgres_admin, host="127.0.0.1", port="1", password="hunter2")
    with pytest.raises(StoreUnavailable) as refused:
        await PostgresStore.open(url)
    assert refused.value.transient
    assert "Can't reach the PostgreSQL server at 127.0.0.1:1" in str(refused.value)
    assert_one_sentence(refused.value, secret="hunter2")


async def test_a_wrong_password_is_named_without_showing_it(password_server: str) -> None:
    url = make_conninfo(password_server, password="wrong-password")
    with pytest.raises(StoreUnavailable) as refused:
        await PostgresStore.open(url)
    assert not refused.value.transient
    assert "user name or password" in str(refused.value)
    assert_one_sentence(refused.value, secret="wrong-password")
    async with await PostgresStore.open(password_server) as store:  # the right one works
        assert await store.version() == 0


async def test_a_missing_database_says_to_create_it(postgres_admin: str) -> None:
    with pytest.raises(StoreUnavailable) as refused:
        await PostgresStore.open(make_conninfo(postgres_admin, dbname="vqbot_no_such_database"))
    assert "no such database" in str(refused.value) and "createdb" in str(refused.value)
    assert_one_sentence(refused.value)


async def test_a_server_older_than_needed_is_refused(pg_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(connection, "MIN_SERVER", (99, 0))
    with pytest.raises(StoreUnavailable) as refused:
        await PostgresStore.open(pg_url)
    assert "needs PostgreSQL 99 or newer" in str(refused.value) and "upgrade the server" in str(refused.value)
    assert not refused.value.transient
    assert rows(pg_url, "SELECT to_regclass('jobs')") == [(None,)]  # nothing was created


async def test_a_row_locked_by_a_stuck_session_fails_the_call_instead_of_hanging(pg_url: str) -> None:
    async with await PostgresStore.open(pg_url, lock_timeout_s=0.2) as store:
        await store.enqueue(new_job())
        async with open_transaction(pg_url) as stuck:
            await stuck.run("SELECT 1 FROM guild_queues FOR UPDATE")
            with pytest.raises(StoreUnavailable) as refused:
                await store.enqueue(new_job(user=200))
        assert refused.value.transient and "stayed locked for 0.2 seconds" in str(refused.value)
        await store.enqueue(new_job(user=200))  # once the session let go


async def test_a_dropped_connection_fails_one_call_and_the_next_reconnects(pg_url: str) -> None:
    async with await PostgresStore.open(pg_url, application_name="vqbot-dropped") as store:
        job = await store.enqueue(new_job())
        rows(pg_url, "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = 'vqbot-dropped'")
        with pytest.raises(StoreUnavailable) as lost:
            await store.get(job.id)
        assert lost.value.transient and "Lost the connection" in str(lost.value)
        assert await store.get(job.id) == job


async def test_bad_pool_settings_are_refused_naming_them(pg_url: str) -> None:
    for option, value in (("pool_size", 0), ("lock_timeout_s", -1), ("poll_interval_s", float("nan"))):
        with pytest.raises(InvalidInput) as refused:
            await PostgresStore.open(pg_url, **{option: value})
        assert option.removesuffix("_timeout_s") in refused.value.field


async def test_a_closed_store_says_so(pg_url: str) -> None:
    store = await PostgresStore.open(pg_url)
    await store.close()
    await store.close()  # closing twice is fine
    with pytest.raises(RuntimeError, match="closed"):
        await store.get(1)
