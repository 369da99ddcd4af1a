"""Guild limits: each refuses with its own error and frees up at the right time."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta

import pytest

from db import FakeClock, GuildSettings, InvalidInput, LimitExceeded, SqliteStore, Store
from tests.db.factories import PNG, new_job

GUILD = 1


async def refusal(store: Store, **job: object) -> LimitExceeded:
    with pytest.raises(LimitExceeded) as refused:
        await store.enqueue(new_job(**job))  # type: ignore[arg-type]
    return refused.value


async def run_one(store: Store, gpu_seconds: float) -> None:
    (claim,) = await store.claim("gpu-0", lease_seconds=60)
    await store.finish(claim.job.id, claim.token, result_png=PNG, gpu_seconds=gpu_seconds)


async def test_cooldown_refuses_until_it_has_passed(limited: SqliteStore, clock: FakeClock) -> None:
    await limited.set_setting(GUILD, "cooldown_s", 30, by_user=1)
    start = clock.now()
    await limited.enqueue(new_job())
    clock.advance(12)
    refused = await refusal(limited)
    assert refused.limit == "cooldown_s"
    assert refused.retry_at == start + timedelta(seconds=30)
    assert "18 seconds" in str(refused)
    clock.set(refused.retry_at)
    await limited.enqueue(new_job())


async def test_several_jobs_in_one_call_are_one_submission_for_the_cooldown(
    limited: SqliteStore, clock: FakeClock
) -> None:
    await limited.set_setting(GUILD, "cooldown_s", 30, by_user=1)
    assert len(await limited.enqueue_many([new_job(seed=i) for i in range(3)])) == 3
    clock.advance(29)
    assert (await refusal(limited)).limit == "cooldown_s"


async def test_cooldown_is_per_member(limited: SqliteStore) -> None:
    await limited.enqueue(new_job(user=100))
    await limited.enqueue(new_job(user=200))


async def test_member_cap_counts_waiting_and_running_jobs_and_frees_when_one_ends(
    limited: SqliteStore,
) -> None:
    await limited.set_setting(GUILD, "cooldown_s", 0, by_user=1)
    await limited.set_setting(GUILD, "max_queued_per_user", 3, by_user=1)
    for _ in range(3):
        await limited.enqueue(new_job())
    (claim,) = await limited.claim("gpu-0", lease_seconds=60)
    refused = await refusal(limited)
    assert refused.limit == "max_queued_per_user" and refused.retry_at is None
    await limited.enqueue(new_job(user=200))  # other members are not affected
    await limited.request_cancel(claim.job.id, by_user=100, is_admin=False)
    assert (await refusal(limited)).limit == "max_queued_per_user"  # still cancelling
    await limited.confirm_cancelled(claim.job.id, claim.token, gpu_seconds=1)
    await limited.enqueue(new_job())


async def test_guild_cap_refuses_everyone_in_the_guild_only(limited: SqliteStore) -> None:
    await limited.set_setting(GUILD, "cooldown_s", 0, by_user=1)
    await limited.set_setting(GUILD, "max_queued_per_guild", 2, by_user=1)
    await limited.enqueue(new_job(user=100))
    await limited.enqueue(new_job(user=200))
    refused = await refusal(limited, user=300)
    assert refused.limit == "max_queued_per_guild" and refused.retry_at is None
    await limited.enqueue(new_job(guild=2, user=300))
    await run_one(limited, gpu_seconds=1)
    await limited.enqueue(new_job(user=300))


async def test_member_budget_refuses_until_the_next_utc_day(
    limited: SqliteStore, clock: FakeClock
) -> None:
    clock.set(datetime(2024, 3, 5, 22, 0, tzinfo=UTC))
    await limited.set_setting(GUILD, "cooldown_s", 0, by_user=1)
    await limited.set_setting(GUILD, "gpu_budget_user_s", 100, by_user=1)
    await limited.enqueue(new_job())
    await run_one(limited, gpu_seconds=60)
    await limited.enqueue(new_job())  # 60 of 100 used: still allowed
    await run_one(limited, gpu_seconds=45)
    refused = await refusal(limited)
    assert refused.limit == "gpu_budget_user_s"
    assert refused.retry_at == datetime(2024, 3, 6, tzinfo=UTC)
    await limited.enqueue(new_job(user=200))  # another member has their own budget
    clock.set(refused.retry_at - timedelta(seconds=1))
    assert (await refusal(limited)).limit == "gpu_budget_user_s"
    clock.set(refused.retry_at)
    await limited.enqueue(new_job())


async def test_guild_budget_refuses_every_member_until_the_next_utc_day(
    limited: SqliteStore, clock: FakeClock
) -> None:
    await limited.set_setting(GUILD, "cooldown_s", 0, by_user=1)
    await limited.set_setting(GUILD, "gpu_budget_guild_s", 50, by_user=1)
    await limited.enqueue(new_job(user=100))
    await run_one(limited, gpu_seconds=50)
    refused = await refusal(limited, user=200)
    assert refused.limit == "gpu_budget_guild_s"
    assert refused.retry_at == datetime(2024, 1, 2, tzinfo=UTC)
    clock.set(refused.retry_at)
    await limited.enqueue(new_job(user=200))


async def test_a_zero_budget_means_no_limit(limited: SqliteStore) -> None:
    await limited.set_setting(GUILD, "gpu_budget_user_s", 0, by_user=1)
    await limited.set_setting(GUILD, "gpu_budget_guild_s", 0, by_user=1)
    await limited.set_setting(GUILD, "cooldown_s", 0, by_user=1)
    await limited.enqueue(new_job())
    await run_one(limited, gpu_seconds=10_000)
    await limited.enqueue(new_job())


@pytest.mark.parametrize(
    ("setting", "value", "job", "limit"),
    [
        ("allowed_channels", [555], {"channel_id": 10}, "allowed_channels"),
        (
            "allowed_models",
            ["wikiart_16384"],
            {"model": "vqgan_imagenet_f16_16384"},
            "allowed_models",
        ),
        ("max_steps", 200, {"steps": 201}, "max_steps"),
        ("max_size", 256, {"width": 257}, "max_size"),
        ("max_size", 256, {"height": 512}, "max_size"),
        ("max_cutouts", 16, {"cutn": 17}, "max_cutouts"),
        ("banned_words", "gore, nsfw", {"prompt": "A temple, NSFW edition"}, "banned_words"),
    ],
)
async def test_guild_policy_refuses_what_it_does_not_allow(
    limited: SqliteStore, setting: str, value: object, job: dict, limit: str
) -> None:
    await limited.set_setting(GUILD, setting, value, by_user=1)
    refused = await refusal(limited, **job)
    assert refused.limit == limit and refused.retry_at is None
    assert await limited.queue(GUILD) == []


async def test_policy_allows_what_it_allows(limited: SqliteStore) -> None:
    await limited.set_setting(GUILD, "allowed_channels", [10, 11], by_user=1)
    await limited.set_setting(GUILD, "banned_words", ["gore"], by_user=1)
    await limited.set_setting(GUILD, "max_steps", 100, by_user=1)
    await limited.enqueue(new_job(prompt="gorgeous gorey temple", steps=100, channel_id=11))


async def test_enqueue_many_is_all_or_nothing(limited: SqliteStore) -> None:
    await limited.set_setting(GUILD, "cooldown_s", 0, by_user=1)
    with pytest.raises(LimitExceeded) as refused:
        await limited.enqueue_many([new_job(seed=i) for i in range(GuildSettings().max_queued_per_user + 1)])
    assert refused.value.limit == "max_queued_per_user"
    assert await limited.queue(GUILD) == []
    with pytest.raises(InvalidInput):
        await limited.enqueue_many([new_job(), new_job(steps=-1)])
    assert await limited.queue(GUILD) == []


async def test_store_wide_defaults_apply_to_guilds_that_changed_nothing(open_store: Callable[..., Awaitable[Store]]) -> None:
    store = await open_store(defaults=GuildSettings(max_steps=10))
    assert (await store.settings(GUILD)).max_steps == 10
    assert (await refusal(store, steps=11)).limit == "max_steps"
    await store.set_setting(GUILD, "max_steps", 20, by_user=1)
    assert (await store.settings(GUILD)).max_steps == 20 and (await store.settings(GUILD + 1)).max_steps == 10
