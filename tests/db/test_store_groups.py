"""Groups of jobs (a grid's candidates) and the relations that tie a job to where it came from."""

from __future__ import annotations

import dataclasses
import sqlite3
from datetime import UTC, datetime
from pathlib import Path

import pytest

from db import InvalidInput, LimitExceeded, Relation, Store
from db.clock import to_epoch
from db.migrations import MIGRATIONS, migrate
from db.sqlite.connection import connect
from db.sqlite.rows import fetch_job
from tests.db.factories import OPEN_LIMITS, new_job


async def test_a_group_of_four_shares_the_first_jobs_id_and_reads_back_in_order(store: Store) -> None:
    alone = await store.enqueue(new_job())
    grid = await store.enqueue_many([new_job(seed=s) for s in (1, 2, 3, 4)], group=True)
    assert [j.group_id for j in grid] == [grid[0].id] * 4
    assert alone.group_id is None and (await store.get(alone.id)).group_id is None
    assert await store.group(grid[0].id) == [await store.get(j.id) for j in grid]
    assert [j.seed for j in await store.group(grid[0].id)] == [1, 2, 3, 4]
    assert await store.group(alone.id) == [] and await store.group(0) == []


async def test_jobs_queued_together_without_group_stay_apart(store: Store) -> None:
    jobs = await store.enqueue_many([new_job(seed=1), new_job(seed=2)])
    assert [j.group_id for j in jobs] == [None, None]


async def test_a_group_is_one_members_in_one_channel(store: Store) -> None:
    with pytest.raises(InvalidInput) as refused:
        await store.enqueue_many([new_job(user=1), new_job(user=2)], group=True)
    assert refused.value.field == "group"
    with pytest.raises(InvalidInput):
        await store.enqueue_many([new_job(channel_id=1), new_job(channel_id=2)], group=True)
    assert await store.queue(1) == []


async def test_every_job_of_a_group_counts_against_the_members_limit(open_store) -> None:
    store = await open_store(defaults=dataclasses.replace(OPEN_LIMITS, max_queued_per_user=3))
    with pytest.raises(LimitExceeded) as refused:
        await store.enqueue_many([new_job(seed=s) for s in (1, 2, 3, 4)], group=True)
    assert refused.value.limit == "max_queued_per_user"
    assert await store.queue(1) == []  # all or none
    assert len(await store.enqueue_many([new_job(seed=s) for s in (1, 2, 3)], group=True)) == 3


async def test_upscale_variation_and_blend_are_kept_and_a_blend_needs_no_parent(store: Store) -> None:
    blend = await store.enqueue(new_job(relation="blend"))
    assert blend.relation is Relation.BLEND and blend.parent_id is None
    upscale = await store.enqueue(new_job(parent_id=blend.id, relation="upscale"))
    variation = await store.enqueue(new_job(parent_id=upscale.id, relation="variation"))
    assert (await store.get(upscale.id)).relation is Relation.UPSCALE
    assert (await store.get(variation.id)).relation is Relation.VARIATION
    for relation in ("upscale", "rerun", "variation"):
        with pytest.raises(InvalidInput) as refused:
            await store.enqueue(new_job(relation=relation))
        assert refused.value.field == "relation"


OLD_JOB = """INSERT INTO jobs (guild_id, channel_id, user_id, prompt, params, model, width, height, state,
    cost, max_attempts, total_steps, created_at, parent_id, relation, seed, version)
    VALUES (1, 10, 100, 'a temple', ?, 'vqgan', 256, 256, 'queued', 1, 3, 100, ?, ?, ?, 7, 1)"""


def test_a_database_from_before_groups_keeps_its_relations(db_path: Path) -> None:
    conn = connect(db_path)
    assert migrate(conn, MIGRATIONS[:2]) == [1, 2]
    now = to_epoch(datetime(2024, 1, 1, tzinfo=UTC))
    params = '{"model": "vqgan", "width": 256, "height": 256}'
    conn.execute(OLD_JOB, (params, now, None, None))
    conn.execute(OLD_JOB, (params, now, 1, "variation"))
    assert migrate(conn) == list(range(3, len(MIGRATIONS) + 1))
    parent, child = fetch_job(conn, 1), fetch_job(conn, 2)
    assert parent is not None and parent.relation is None and parent.group_id is None
    assert child is not None and child.parent_id == 1 and child.relation is Relation.VARIATION
    conn.execute(OLD_JOB, (params, now, 2, "upscale"))
    assert conn.execute("SELECT relation FROM jobs WHERE id = 3").fetchone()[0] == "upscale"
    with pytest.raises(sqlite3.IntegrityError):
        conn.execute(OLD_JOB, (params, now, 2, "sideways"))
    conn.close()
