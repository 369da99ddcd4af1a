"""Bad input gets a clear error and leaves nothing stored half-way."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import pytest

from db import InvalidInput, NewJob, SqliteStore, Store, UnknownSetting
from tests.db.factories import PNG, new_job, params

RawSql = Callable[..., list[tuple[object, ...]]]

SQLISH = [
    "'); DROP TABLE jobs; --",
    "Robert'); DELETE FROM guild_settings WHERE ('1'='1",
    '" OR 1=1 --',
    "%s %d ? :name $1",
]


async def assert_nothing_stored(store: Store, raw_sql: RawSql, version: int = 0) -> None:
    assert await store.version() == version
    assert raw_sql("SELECT COUNT(*) FROM jobs", ()) == [(0,)]
    assert raw_sql("SELECT COUNT(*) FROM guild_queues", ()) == [(0,)]


async def test_a_10_mb_prompt_is_refused(store: Store, raw_sql: RawSql) -> None:
    with pytest.raises(InvalidInput) as refused:
        await store.enqueue(new_job(prompt="a" * 10 * 1024 * 1024))
    assert refused.value.field == "prompt"
    assert "10485760 characters" in str(refused.value) and "2000" in str(refused.value)
    await assert_nothing_stored(store, raw_sql)


@pytest.mark.parametrize(
    ("job", "field"),
    [
        (new_job(steps=-5), "params.steps"),
        (new_job(steps=0), "params.steps"),
        (new_job(steps="500"), "params.steps"),
        (new_job(steps=True), "params.steps"),
        (new_job(width=0), "params.width"),
        (new_job(cutn=10**9), "params.cutn"),
        (new_job(model=""), "params.model"),
        (new_job(prompt="   "), "prompt"),
        (new_job(prompt="nul\x00byte"), "prompt"),
        (new_job(guild=-1), "guild_id"),
        (new_job(user=2**64), "user_id"),
        (new_job(seed=-1), "seed"),
        (new_job(priority=10**6), "priority"),
        (new_job(max_attempts=0), "max_attempts"),
        (new_job(relation="rerun"), "relation"),
        (new_job(parent_id=1, relation="sideways"), "relation"),
        (NewJob(1, 10, 100, "x", {"steps": 1}, seed=1), "params.model"),
        (NewJob(1, 10, 100, "x", params(blob=b"bytes"), seed=1), "params"),
        (NewJob(1, 10, 100, "x", params(weight=float("nan")), seed=1), "params"),
        (NewJob(1, 10, 100, "x", params(init="x" * 70_000), seed=1), "params"),
        (NewJob(1, 10, 100, "x", params(seed=5), seed=6), "params.seed"),
    ],
)
async def test_malformed_jobs_are_refused_naming_the_field(
    store: Store, raw_sql: RawSql, job: NewJob, field: str
) -> None:
    with pytest.raises(InvalidInput) as refused:
        await store.enqueue(job)
    assert refused.value.field == field
    assert str(refused.value).endswith(".")
    await assert_nothing_stored(store, raw_sql)


async def test_a_parent_from_another_guild_or_nowhere_is_refused(store: SqliteStore) -> None:
    other = await store.enqueue(new_job(guild=2))
    for parent in (other.id, 9999):
        with pytest.raises(InvalidInput) as refused:
            await store.enqueue(new_job(guild=1, parent_id=parent, relation="variation"))
        assert refused.value.field == "parent_id"
    assert await store.queue(1) == []


@pytest.mark.parametrize("text", SQLISH)
async def test_sql_looking_text_is_stored_verbatim(store: SqliteStore, text: str) -> None:
    job = await store.enqueue(new_job(prompt=text, model=text))
    await store.set_setting(1, "allowed_models", [text + " x"], by_user=1)
    await store.set_style(1, "sql", text, by_user=1)
    assert (await store.get(job.id)).prompt == text.strip()  # type: ignore[union-attr]
    assert (await store.settings(1)).allowed_models == (text + " x",)
    assert (await store.styles(1))["sql"] == text.strip()
    (claim,) = await store.claim(text, lease_seconds=30)
    assert claim.job.worker == text
    assert await store.fail(job.id, claim.token, error=text, gpu_seconds=0)
    assert (await store.get(job.id)).error == text  # type: ignore[union-attr]
    assert len(await store.history(100)) == 1


async def test_an_unknown_setting_key_is_refused_listing_the_valid_ones(store: SqliteStore) -> None:
    with pytest.raises(UnknownSetting) as refused:
        await store.set_setting(1, "max_stepz", 10, by_user=1)
    assert isinstance(refused.value, InvalidInput) and isinstance(refused.value, KeyError)
    assert "max_stepz" in str(refused.value) and "max_steps" in str(refused.value)
    assert await store.audit(1) == []


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("max_steps", -1),
        ("max_steps", "lots"),
        ("max_steps", 2.5),
        ("cooldown_s", float("inf")),
        ("reactions_enabled", "maybe"),
        ("allowed_channels", ["general"]),
        ("banned_words", ["x" * 101]),
        ("allowed_models", 42),
    ],
)
async def test_a_bad_setting_value_changes_nothing(
    store: SqliteStore, key: str, value: object
) -> None:
    before = await store.settings(1)
    with pytest.raises(InvalidInput) as refused:
        await store.set_setting(1, key, value, by_user=1)
    assert refused.value.field == key
    assert await store.settings(1) == before and await store.audit(1) == []


async def test_settings_need_real_guild_and_member_ids(store: SqliteStore) -> None:
    with pytest.raises(InvalidInput):
        await store.set_setting("1; DROP TABLE jobs", "max_steps", 10, by_user=1)  # type: ignore[arg-type]
    with pytest.raises(InvalidInput):
        await store.set_style(1, "ok", "fine", by_user=0)
    assert await store.audit(1) == []


async def test_bad_worker_reports_are_refused_and_change_nothing(store: SqliteStore) -> None:
    job = await store.enqueue(new_job(steps=100))
    (claim,) = await store.claim("gpu-0", lease_seconds=30)
    before = await store.get(job.id)
    bad_calls = [
        store.report_progress(job.id, claim.token, step=-1),
        store.report_progress(job.id, claim.token, step=101),
        store.report_progress(job.id, claim.token, step=5, steps_per_s=float("nan")),
        store.report_progress(job.id, claim.token, step=5, preview=b"x" * (3 * 1024 * 1024)),
        store.finish(job.id, claim.token, result_png=b"", gpu_seconds=1),
        store.finish(job.id, claim.token, result_png=PNG, gpu_seconds=-1),
        store.heartbeat(job.id, claim.token, lease_seconds=0),
        store.claim("gpu-1", lease_seconds=30, max_jobs=0),
        store.claim("", lease_seconds=30),
        store.set_message(job.id, 5, kind="thumbnail"),
    ]
    for call in bad_calls:
        with pytest.raises(InvalidInput):
            await call
    assert await store.get(job.id) == before
    assert await store.preview(job.id) is None


async def test_a_long_worker_error_is_clipped_not_refused(store: SqliteStore) -> None:
    job = await store.enqueue(new_job())
    (claim,) = await store.claim("gpu-0", lease_seconds=30)
    assert await store.fail(job.id, claim.token, error="Traceback " * 10_000, gpu_seconds=1)
    error = (await store.get(job.id)).error  # type: ignore[union-attr]
    assert error is not None and len(error) == 2000 and error.endswith("…")


async def test_a_closed_store_says_so(open_store: Callable[..., Awaitable[Store]]) -> None:
    store = await open_store()
    await store.close()
    await store.close()  # closing twice is fine
    with pytest.raises(RuntimeError, match="closed"):
        await store.get(1)
