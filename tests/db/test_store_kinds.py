"""Job kinds: a /describe job is queued, claimed and charged like a picture job, and told apart from one."""

from __future__ import annotations

import pytest

from db import InvalidInput, JobKind, LimitExceeded, NewJob, Store
from jobspec.describe import Candidate, DescribeParams
from tests.db.factories import new_job

GUILD = 1


def describe_job(guild: int = GUILD, user: int = 100, phrases: int = 3, channel: int = 10) -> NewJob:
    params = DescribeParams(picture="/pictures/abc.png",
                            candidates=tuple(Candidate(f"phrase {i}") for i in range(phrases)))
    return NewJob(guild_id=guild, channel_id=channel, user_id=user, prompt="describe a picture",
                  params=params.to_json(), seed=0)


async def test_a_describe_job_has_its_kind_in_the_store_and_its_column(store: Store, raw_sql) -> None:
    picture = await store.enqueue(new_job())
    described = await store.enqueue(describe_job())
    assert picture.kind is JobKind.IMAGINE and described.kind is JobKind.DESCRIBE
    assert (await store.get(described.id)).kind is JobKind.DESCRIBE  # type: ignore[union-attr]
    assert raw_sql("SELECT id, kind FROM jobs ORDER BY id") == [(picture.id, "imagine"), (described.id, "describe")]


async def test_describe_and_picture_jobs_are_never_claimed_as_one_batch(store: Store) -> None:
    await store.enqueue(describe_job())
    await store.enqueue(new_job())
    await store.enqueue(describe_job())
    first = await store.claim("gpu-0", lease_seconds=60, max_jobs=4)
    second = await store.claim("gpu-0", lease_seconds=60, max_jobs=4)
    kinds = [{c.job.kind for c in first}, {c.job.kind for c in second}]
    assert sorted(len(k) for k in kinds) == [1, 1] and {JobKind.DESCRIBE, JobKind.IMAGINE} == kinds[0] | kinds[1]


async def test_a_description_costs_a_small_share_of_a_picture(store: Store) -> None:
    picture = await store.enqueue(new_job(steps=500, width=512, height=512, cutn=32))
    described = await store.enqueue(describe_job(phrases=480))
    assert 0 < described.cost < picture.cost / 100


async def test_picture_rules_do_not_refuse_a_description_but_the_channel_rule_does(limited: Store) -> None:
    for key, value in (("allowed_models", "vqgan_imagenet_f16_1024"), ("max_size", 64), ("max_steps", 1),
                       ("max_cutouts", 1)):
        await limited.set_setting(GUILD, key, value, by_user=1)
    assert (await limited.enqueue(describe_job())).kind is JobKind.DESCRIBE
    await limited.set_setting(GUILD, "allowed_channels", "11", by_user=1)
    with pytest.raises(LimitExceeded) as refused:
        await limited.enqueue(describe_job(channel=10))
    assert refused.value.limit == "allowed_channels"


async def test_an_unknown_kind_is_refused(store: Store) -> None:
    with pytest.raises(InvalidInput) as refused:
        await store.enqueue(new_job(kind="upscale-everything"))
    assert refused.value.field == "params.kind"


async def test_a_description_is_stored_and_read_back_as_its_result(store: Store) -> None:
    job = await store.enqueue(describe_job())
    (claim,) = await store.claim("gpu-0", lease_seconds=60)
    assert await store.finish(job.id, claim.token, result_png=b'{"kind":"describe","matches":[]}', gpu_seconds=0.2)
    assert await store.result(job.id) == b'{"kind":"describe","matches":[]}'
