"""Fair share: no guild, and no member inside a guild, can starve the others."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from contextlib import AbstractAsyncContextManager
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from db import FakeClock, SqliteStore, Store
from tests.db.factories import OPEN_LIMITS, PNG, new_job
from tests.db.sqlite_checks import assert_counters_match

FreshStore = Callable[..., AbstractAsyncContextManager[Store]]
# Each example opens an empty store; on PostgreSQL that costs tens of milliseconds.
EXAMPLES = settings(
    max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
shapes = st.fixed_dictionaries(
    {
        "steps": st.sampled_from([20, 100, 500]),
        "width": st.sampled_from([128, 256, 512]),
        "height": st.sampled_from([128, 256]),
        "cutn": st.sampled_from([8, 32]),
    }
)
# What happened to each of the first jobs served before the newcomer arrived:
# still running (None) or finished after some GPU seconds.
served = st.lists(st.one_of(st.none(), st.floats(0, 300)), max_size=25)


async def serve(store: Store, history: list[float | None]) -> None:
    for gpu_seconds in history:
        (claim,) = await store.claim("gpu-0", lease_seconds=3600)
        if gpu_seconds is not None:
            await store.finish(claim.job.id, claim.token, result_png=PNG, gpu_seconds=gpu_seconds)


@EXAMPLES
@given(
    big=st.lists(shapes, min_size=100, max_size=100),
    newcomer=shapes,
    history=served,
    guilds=st.sampled_from([(1, 2), (2, 1)]),
    members=st.integers(1, 4),
)
async def test_a_guilds_first_job_runs_within_two_claims_of_a_busy_guild(
    fresh_store: FreshStore,
    big: list[dict],
    newcomer: dict,
    history: list[float | None],
    guilds: tuple[int, int],
    members: int,
) -> None:
    busy, quiet = guilds
    async with fresh_store(defaults=OPEN_LIMITS) as store:
        await store.enqueue_many(
            [new_job(guild=busy, user=100 + i % members, **p) for i, p in enumerate(big)],
            enforce_limits=False,
        )
        await serve(store, history)
        job = await store.enqueue(new_job(guild=quiet, user=900, **newcomer))
        next_two = [c.job.id for _ in range(2) for c in await store.claim("gpu-0", lease_seconds=60)]
        assert job.id in next_two


@EXAMPLES
@given(
    big=st.lists(shapes, min_size=100, max_size=100),
    newcomer=shapes,
    history=served,
    users=st.sampled_from([(100, 200), (200, 100)]),
    other_guild_jobs=st.integers(0, 20),
)
async def test_a_members_first_job_runs_within_two_of_the_guilds_claims(
    fresh_store: FreshStore,
    big: list[dict],
    newcomer: dict,
    history: list[float | None],
    users: tuple[int, int],
    other_guild_jobs: int,
) -> None:
    busy, quiet = users
    async with fresh_store(defaults=OPEN_LIMITS) as store:
        await store.enqueue_many(
            [new_job(guild=5, user=busy, **p) for p in big]
            + [new_job(guild=6, user=300 + i, seed=i) for i in range(other_guild_jobs)],
            enforce_limits=False,
        )
        await serve(store, history)
        job = await store.enqueue(new_job(guild=5, user=quiet, **newcomer))
        guild_claims: list[int] = []
        while len(guild_claims) < 2:
            (claim,) = await store.claim("gpu-0", lease_seconds=60)
            if claim.job.guild_id == 5:
                guild_claims.append(claim.job.id)
        assert job.id in guild_claims


async def test_equal_jobs_of_two_members_alternate_and_each_member_is_fifo(
    store: SqliteStore,
) -> None:
    jobs = await store.enqueue_many(
        [new_job(user=100, seed=i) for i in range(4)]
        + [new_job(user=200, seed=i) for i in range(4)]
    )
    order = [c.job.id for _ in range(8) for c in await store.claim("gpu-0", lease_seconds=60)]
    mine, theirs = [j.id for j in jobs[:4]], [j.id for j in jobs[4:]]
    assert order[0::2] in (mine, theirs) and order[1::2] in (mine, theirs)


async def test_a_member_with_higher_priority_jobs_runs_them_first(store: SqliteStore) -> None:
    low = await store.enqueue(new_job(seed=1))
    high = await store.enqueue(new_job(seed=2, priority=5))
    order = [c.job.id for _ in range(2) for c in await store.claim("gpu-0", lease_seconds=60)]
    assert order == [high.id, low.id]


async def test_a_guild_that_used_more_gpu_time_waits_for_the_one_that_used_less(
    store: SqliteStore,
) -> None:
    await store.enqueue_many(
        [new_job(guild=1, seed=i) for i in range(3)] + [new_job(guild=2, seed=9)]
    )
    first, second = [await store.claim("gpu-0", lease_seconds=60) for _ in range(2)]
    # Guild 1's job took far longer than estimated; guild 2's was quick.
    await store.finish(first[0].job.id, first[0].token, result_png=PNG, gpu_seconds=500)
    await store.finish(second[0].job.id, second[0].token, result_png=PNG, gpu_seconds=1)
    await store.enqueue_many([new_job(guild=2, seed=10), new_job(guild=2, seed=11)])
    guilds = [
        c.job.guild_id for _ in range(3) for c in await store.claim("gpu-0", lease_seconds=60)
    ]
    assert guilds[:2] == [2, 2]


async def test_an_idle_guild_banks_no_credit(store: SqliteStore) -> None:
    # Guild 2 ran once long ago; guild 1 has since used the GPU alone for hours.
    await store.enqueue(new_job(guild=2))
    (old,) = await store.claim("gpu-0", lease_seconds=60)
    await store.finish(old.job.id, old.token, result_png=PNG, gpu_seconds=10)
    await store.enqueue_many([new_job(guild=1, seed=i) for i in range(50)])
    for _ in range(40):
        (claim,) = await store.claim("gpu-0", lease_seconds=60)
        await store.finish(claim.job.id, claim.token, result_png=PNG, gpu_seconds=100)
    await store.enqueue_many([new_job(guild=2, seed=i) for i in range(10)])
    guilds = [
        c.job.guild_id for _ in range(8) for c in await store.claim("gpu-0", lease_seconds=60)
    ]
    assert 3 <= guilds.count(2) <= 5  # shares from now on, not 40 turns of catch-up


ops = st.lists(
    st.one_of(
        st.tuples(st.just("enqueue"), st.integers(1, 3), st.integers(1, 3)),
        st.tuples(st.just("claim"), st.integers(1, 3)),
        st.tuples(st.just("finish"), st.integers(0, 9)),
        st.tuples(st.just("fail"), st.integers(0, 9)),
        st.tuples(st.just("release"), st.integers(0, 9)),
        st.tuples(st.just("cancel"), st.integers(0, 30)),
        st.tuples(st.just("expire")),
    ),
    max_size=60,
)


@EXAMPLES
@given(steps=ops)
async def test_queue_counters_always_match_the_jobs(
    fresh_store: FreshStore, counters_match: Callable[[Store], None], steps: list[tuple]
) -> None:
    clock = FakeClock()
    async with fresh_store(clock=clock, defaults=OPEN_LIMITS) as store:
        claims, ids = [], []
        for op, *args in steps:
            if op == "enqueue":
                ids.append((await store.enqueue(new_job(guild=args[0], user=args[1], max_attempts=2))).id)
            elif op == "claim":
                claims += await store.claim("gpu", lease_seconds=10, max_jobs=args[0])
            elif op in ("finish", "fail", "release") and claims:
                c = claims.pop(args[0] % len(claims))
                if op == "finish":
                    await store.finish(c.job.id, c.token, result_png=PNG, gpu_seconds=args[0])
                elif op == "fail":
                    await store.fail(c.job.id, c.token, error="x", gpu_seconds=1, retry=True)
                else:
                    await store.release(c.job.id, c.token)
            elif op == "cancel" and ids:
                job_id = ids[args[0] % len(ids)]
                await store.request_cancel(job_id, by_user=0, is_admin=True)
            elif op == "expire":
                clock.advance(11)
                claims = []
        await store.reclaim_expired()
        counters_match(store)


async def test_claim_repairs_counters_that_disagree_with_the_jobs(
    store: SqliteStore, db_path: Path
) -> None:
    job = await store.enqueue(new_job(guild=2))
    conn = sqlite3.connect(db_path)
    with conn:  # a guild that claims to wait, with no job behind it
        conn.execute(
            "INSERT INTO guild_queues (guild_id, vtime, queued, pending) VALUES (1, -5, 3, 3)"
        )
    conn.close()
    assert [c.job.id for c in await store.claim("gpu-0", lease_seconds=60)] == [job.id]
    assert_counters_match(db_path)
