"""A claim never mixes batch keys: jobs it hands out together can always run in one batch.

The batch key (``jobspec.batch_key``) is the models, the size and the cutout count; jobs that
differ only in a CLIP model or a cutout count must not share a claim either. A worker topping
up a running batch asks for its key, and gets the jobs of that key in the fair order.
"""

from __future__ import annotations

import pytest

from db import InvalidInput, Store
from db.migrations import BATCH_KEY as SQLITE_BATCH_KEY
from db.postgres.schema import BATCH_KEY as POSTGRES_BATCH_KEY
from jobspec import batch_key
from tests.db.conftest import RawSql
from tests.db.factories import new_job, params

SMALL = {"width": 256, "height": 256}
OTHER_CLIP = {"clip_model": "ViT-B-16", "clip_pretrained": "laion2b_s34b_b88k"}


async def test_jobs_that_differ_only_in_clip_model_or_cutouts_are_never_claimed_together(store: Store) -> None:
    await store.enqueue_many(
        [new_job(guild=1, seed=1, **SMALL), new_job(guild=2, seed=2, **SMALL, **OTHER_CLIP),
         new_job(guild=3, seed=3, **SMALL, cutn=64), new_job(guild=1, seed=4, **SMALL),
         new_job(guild=2, seed=5, **SMALL, **OTHER_CLIP), new_job(guild=3, seed=6, **SMALL, cutn=64)]
    )
    taken: list[set[str]] = []
    while claims := await store.claim("gpu-0", lease_seconds=60, max_jobs=8):
        taken.append({c.job.batch_key for c in claims})
        assert len(claims) == 2
    assert len(taken) == 3 and all(len(keys) == 1 for keys in taken)
    assert len(set().union(*taken)) == 3


async def test_a_claim_for_a_key_takes_only_that_key_in_the_fair_order(store: Store) -> None:
    wanted = batch_key(params(**SMALL))
    await store.enqueue_many(
        [new_job(guild=9, seed=1, width=512, height=512)]  # the fairly first job, of another key
        + [new_job(guild=1, seed=10 + i, **SMALL) for i in range(3)]
        + [new_job(guild=2, seed=20 + i, **SMALL) for i in range(2)]
        + [new_job(guild=1, seed=30, **SMALL, cutn=8)]
    )
    claims = await store.claim("gpu-0", lease_seconds=60, max_jobs=4, batch_key=wanted)
    assert {c.job.batch_key for c in claims} == {wanted}
    assert sorted(c.job.guild_id for c in claims) == [1, 1, 2, 2]  # guilds 1 and 2 take turns
    (last,) = await store.claim("gpu-0", lease_seconds=60, max_jobs=4, batch_key=wanted)
    assert last.job.guild_id == 1 and last.job.batch_key == wanted
    assert await store.claim("gpu-0", lease_seconds=60, batch_key=wanted) == []
    # the jobs of other keys wait for a claim of their own
    rest = await store.claim("gpu-1", lease_seconds=60, max_jobs=4)
    assert [c.job.guild_id for c in rest] == [9]


async def test_a_claim_for_a_key_nobody_has_takes_nothing(store: Store) -> None:
    job = await store.enqueue(new_job())
    for key in ("", "512x512/32/3:abc", "x" * 10_000, "'; DROP TABLE jobs; --", "\u202e\U0001f600"):
        assert await store.claim("gpu-0", lease_seconds=60, max_jobs=4, batch_key=key) == []
    (claim,) = await store.claim("gpu-0", lease_seconds=60, batch_key=job.batch_key)
    assert claim.job.id == job.id


@pytest.mark.parametrize("key", [b"bytes", 5, ["a"], "nul\x00key", "\ud800", "k" * 70_000],
                         ids=["bytes", "number", "list", "nul", "surrogate", "too-long"])
async def test_a_malformed_key_is_refused(store: Store, key: object) -> None:
    with pytest.raises(InvalidInput) as refused:
        await store.claim("gpu-0", lease_seconds=60, batch_key=key)  # type: ignore[arg-type]
    assert refused.value.field == "batch_key"


async def test_rows_older_than_the_key_get_the_same_key_from_their_params(
    store: Store, raw_sql: RawSql, backend: str
) -> None:
    """The migration's SQL and jobspec's Python agree, also for names beyond ASCII and jobs
    whose params lack the CLIP fields (older bots wrote none)."""
    jobs = await store.enqueue_many(
        [new_job(seed=1), new_job(seed=2, **OTHER_CLIP, cutn=8), new_job(seed=3, model="wikiärt_16384|ß/x:1"),
         new_job(seed=4, clip_model="名前", clip_pretrained=None)]
    )
    raw_sql("UPDATE jobs SET batch_key = ''", ())
    fill = (POSTGRES_BATCH_KEY if backend == "postgres" else SQLITE_BATCH_KEY).statements[1]
    assert fill.startswith("UPDATE jobs SET batch_key")
    raw_sql(fill, ())
    stored = dict(raw_sql("SELECT id, batch_key FROM jobs", ()))
    assert stored == {job.id: batch_key(job.params) for job in jobs}
    assert len(set(stored.values())) == 4
