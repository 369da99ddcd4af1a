"""Moving a queue from a SQLite file to PostgreSQL: everything users see survives, nothing runs twice."""

from __future__ import annotations

from pathlib import Path

import pytest

from db import FakeClock, SqliteStore, StoreUnavailable, migrate_sqlite_to_postgres
from db.postgres import PostgresStore
from tests.db.factories import OPEN_LIMITS, PNG, new_job
from tests.db.postgres_checks import assert_counters_match
from vqbot_cli.main import main


async def busy_sqlite(path: Path, clock: FakeClock) -> dict[str, int]:
    """A SQLite queue with finished, cancelled and queued jobs, settings, styles and an audit trail."""
    async with await SqliteStore.open(path, clock=clock, defaults=OPEN_LIMITS) as store:
        done, cancelled, *queued = await store.enqueue_many(
            [new_job(guild=1, seed=i) for i in range(3)] + [new_job(guild=2, user=200, seed=9, priority=5)]
        )
        (claim,) = await store.claim("gpu-0", lease_seconds=60)
        assert claim.job.id == done.id
        await store.finish(done.id, claim.token, result_png=PNG, gpu_seconds=7)
        await store.set_message(done.id, 555)
        await store.request_cancel(cancelled.id, by_user=100, is_admin=False)
        child = await store.enqueue(new_job(guild=1, parent_id=done.id, relation="variation"))
        await store.set_setting(1, "max_steps", 300, by_user=7)
        await store.set_style(1, "logo", "black-and-white | nature-lover", by_user=7)
        await store.delete_style(2, "pixelart", by_user=8)
    return {"done": done.id, "cancelled": cancelled.id, "child": child.id, "queued": len(queued) + 1}


async def test_a_sqlite_queue_moves_to_postgres_with_its_jobs_settings_styles_and_audit(
    tmp_path: Path, pg_url: str, clock: FakeClock
) -> None:
    source = tmp_path / "vqbot.sqlite3"
    ids = await busy_sqlite(source, clock)
    async with await SqliteStore.open(source, clock=clock) as old:
        before = {j.id: j for j in await old.changed_since(0)}
        old_audit = [(e.key, e.old, e.new, e.user_id) for e in await old.audit(1)]

    report = await migrate_sqlite_to_postgres(source, pg_url)
    assert (report.jobs, report.queued, report.results, report.settings, report.styles) == (5, 3, 1, 1, 2)

    async with await PostgresStore.open(pg_url, clock=clock) as new:
        for job_id, job in before.items():
            moved = await new.get(job_id)
            assert moved is not None
            assert moved == job.__class__(**{**job.__dict__, "version": moved.version})
        assert (await new.by_message(555)).id == ids["done"]  # type: ignore[union-attr]
        assert await new.result(ids["done"]) == PNG and [j.id for j in await new.undelivered()] == [
            ids["done"],
            ids["cancelled"],
        ]
        assert (await new.settings(1)).max_steps == 300
        assert (await new.styles(1))["logo"] == "black-and-white | nature-lover"
        assert "pixelart" not in await new.styles(2)
        assert [(e.key, e.old, e.new, e.user_id) for e in await new.audit(1)] == old_audit
        # The queued jobs run next, fairly: guild 2 has used nothing, guild 1 seven seconds.
        order = [c.job for _ in range(3) for c in await new.claim("gpu-0", lease_seconds=60)]
        assert order[0].guild_id == 2 and ids["child"] in {j.id for j in order}
        assert all(j.attempts == 1 for j in order)
        later = await new.enqueue(new_job(guild=3))
        assert later.id > max(before)
    assert_counters_match(pg_url)


async def test_a_target_with_data_is_refused_and_left_alone(tmp_path: Path, pg_url: str, clock: FakeClock) -> None:
    source = tmp_path / "vqbot.sqlite3"
    await busy_sqlite(source, clock)
    async with await PostgresStore.open(pg_url) as target:
        mine = await target.enqueue(new_job(guild=9))
    with pytest.raises(StoreUnavailable) as refused:
        await migrate_sqlite_to_postgres(source, pg_url)
    assert "already holds vqbot data" in str(refused.value)
    async with await PostgresStore.open(pg_url) as target:
        assert [j.id for j in await target.changed_since(0)] == [mine.id]


async def test_running_jobs_must_be_handed_back_first(tmp_path: Path, pg_url: str, clock: FakeClock) -> None:
    source = tmp_path / "vqbot.sqlite3"
    async with await SqliteStore.open(source, defaults=OPEN_LIMITS) as store:
        await store.enqueue(new_job())
        (claim,) = await store.claim("gpu-0", lease_seconds=600)
    with pytest.raises(StoreUnavailable) as refused:
        await migrate_sqlite_to_postgres(source, pg_url)
    assert "1 jobs are still running" in str(refused.value) and "stop every worker" in str(refused.value)
    async with await SqliteStore.open(source) as store:
        assert await store.release(claim.job.id, claim.token)
    assert (await migrate_sqlite_to_postgres(source, pg_url)).queued == 1


def test_the_command_copies_and_says_what_it_copied(
    tmp_path: Path, pg_url: str, clock: FakeClock, capsys: pytest.CaptureFixture[str]
) -> None:
    import asyncio

    source = tmp_path / "vqbot.sqlite3"
    asyncio.run(busy_sqlite(source, clock))
    env = tmp_path / "empty.env"  # no settings from the checkout's .env (a missing --env-file is an error)
    env.write_text("")
    assert main(["--env-file", str(env), "db", "migrate-to", pg_url, "--from", str(source)]) == 0
    out = capsys.readouterr().out
    assert "copied 5 jobs (3 queued)" in out and "now set VQBOT_DATABASE" in out
    assert main(["--env-file", str(env), "db", "migrate-to", pg_url, "--from", str(source)]) == 2
    assert "already holds vqbot data" in capsys.readouterr().err
    assert main(["db", "migrate-to", pg_url, "--from", str(tmp_path / "missing.sqlite3")]) == 2
    assert "no SQLite database" in capsys.readouterr().err
