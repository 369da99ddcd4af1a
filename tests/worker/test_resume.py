"""A job goes on where it was: stopped cleanly or crashed after a checkpoint, it is taken again and finishes
with the very picture an uninterrupted run makes; a checkpoint that can't be resumed costs a log line, not the
job. The real worker, the real SQLite store and the real engine with tiny models, on the CPU."""

from __future__ import annotations

import io
import logging
from collections import Counter
from collections.abc import Callable
from datetime import timedelta

import pytest
from PIL import Image

from bot.cards import render_card
from db import JobState
from engine.checkpoints import encode
from engine.optimiser import BatchOptimiser
from jobspec import JobParams
from tests.worker.engine_fixtures import tiny_params
from tests.worker.queue import USER, enqueue, worker_for

STEPS = 30


def pixels(png: bytes | None) -> bytes:
    assert png is not None
    return Image.open(io.BytesIO(png)).convert("RGB").tobytes()


@pytest.fixture
def steps_made(monkeypatch) -> Counter[int]:
    """How many steps the engine made of each job, counted in the real optimiser."""
    made: Counter[int] = Counter()
    step = BatchOptimiser.step

    def counted(self: BatchOptimiser):
        result = step(self)
        made.update(result.done.keys())
        return result

    monkeypatch.setattr(BatchOptimiser, "step", counted)
    return made


async def uninterrupted_picture(store, tiny_engine, tiny_models, tmp_path) -> bytes:
    """The picture the job of these tests makes when nothing stops it."""
    reference = await enqueue(store, tiny_models, steps=STEPS, user=USER + 1)  # a member's cooldown: another
    assert await worker_for(store, tiny_engine, tmp_path).run_once() == 1
    return pixels(await store.result(reference.id))


async def test_a_job_stopped_cleanly_resumes_on_a_new_worker_to_the_uninterrupted_picture(
        store, tiny_engine, tiny_models, tmp_path, steps_made) -> None:
    expected = await uninterrupted_picture(store, tiny_engine, tiny_models, tmp_path)
    job = await enqueue(store, tiny_models, steps=STEPS)
    first = worker_for(store, tiny_engine, tmp_path)

    async def stop_past_step_5() -> None:
        current = await store.get(job.id)
        if current.state is JobState.RUNNING and current.step >= 5:
            first.stop()

    first.on_change = stop_past_step_5
    await first.run_once()
    handed_back = await store.get(job.id)
    kept = await store.checkpoint(job.id)
    assert handed_back.state is JobState.QUEUED and kept is not None
    stopped_at = kept[0]
    assert 5 <= stopped_at < STEPS and steps_made[job.id] == stopped_at  # the checkpoint of its last step

    cards: list[str] = []

    async def card() -> None:
        current = await store.get(job.id)
        if current.state is JobState.RUNNING:
            embed = render_card(current, buttons=False).embed
            assert embed is not None
            cards.append(str(embed.to_dict()))

    second = worker_for(store, tiny_engine, tmp_path, on_change=card)
    assert await second.run_once() == 1
    done = await store.get(job.id)
    assert done.state is JobState.SUCCEEDED and done.resumed_from_step == stopped_at
    assert f"resumed at {stopped_at}/{STEPS}" in cards[-1]
    assert steps_made[job.id] == STEPS  # a clean stop redoes no step
    assert pixels(await store.result(job.id)) == expected
    assert await store.checkpoint(job.id) is None  # gone with the job's end


async def test_a_crash_after_a_periodic_checkpoint_loses_at_most_the_interval(
        store, clock, tiny_engine, tiny_models, tmp_path, steps_made, monkeypatch) -> None:
    expected = await uninterrupted_picture(store, tiny_engine, tiny_models, tmp_path)
    job = await enqueue(store, tiny_models, steps=STEPS)
    stored: list[int] = []

    async def note_checkpoint() -> None:
        kept = await store.checkpoint(job.id)
        if kept is not None and kept[0] not in stored:
            stored.append(kept[0])

    crash_after = 13
    step = BatchOptimiser.step

    def crashing(self: BatchOptimiser):
        if steps_made[job.id] == crash_after:
            raise RuntimeError("CUDA error: an illegal memory access was encountered")
        return step(self)

    monkeypatch.setattr(BatchOptimiser, "step", crashing)
    await worker_for(store, tiny_engine, tmp_path, checkpoint_every_steps=5, on_change=note_checkpoint).run_once()
    assert stored == [5, 10]  # taken every 5 steps and written before the next progress report
    assert (await store.get(job.id)).state is JobState.QUEUED  # a crash is retried

    monkeypatch.setattr(BatchOptimiser, "step", step)
    clock.advance(timedelta(hours=1))  # the retry's wait
    assert await worker_for(store, tiny_engine, tmp_path, checkpoint_every_steps=5).run_once() == 1
    done = await store.get(job.id)
    assert done.state is JobState.SUCCEEDED and done.resumed_from_step == 10
    assert steps_made[job.id] - STEPS == crash_after - 10 <= 5  # the steps redone: those since the checkpoint
    assert pixels(await store.result(job.id)) == expected


def job_state_bytes(tiny_engine, params: JobParams, steps: int) -> bytes:
    """A real checkpoint of ``params`` after ``steps`` steps."""
    batch = tiny_engine.batch(params)
    batch.add("probe", params)
    for _ in range(steps):
        batch.step()
    return encode(batch.state("probe"), params)


def flip_a_byte(data: bytes, params: JobParams, tiny_engine) -> bytes:
    return data[:-100] + bytes([data[-100] ^ 0xFF]) + data[-99:]


def other_size(data: bytes, params: JobParams, tiny_engine) -> bytes:
    return job_state_bytes(tiny_engine, params.with_changes(width=32, height=32), 3)


def other_size_under_this_name(data: bytes, params: JobParams, tiny_engine) -> bytes:
    """A 32x32 job's numbers labelled as this 64x64 job's: the envelope is right, the latent is not."""
    small = params.with_changes(width=32, height=32)
    batch = tiny_engine.batch(small)
    batch.add("probe", small)
    batch.step()
    return encode(batch.state("probe"), params)


UNUSABLE: dict[str, tuple[Callable[[bytes, JobParams, object], bytes], str]] = {
    "torn": (lambda data, params, engine: data[: len(data) // 2], "checksum"),
    "corrupt": (flip_a_byte, "checksum"),
    "of an older format": (lambda data, params, engine: data[:8] + (0).to_bytes(4, "big") + data[12:], "older format"),
    "of another size": (other_size, "another model, size or cutouts"),
    "with a latent of another size": (other_size_under_this_name, "latent"),
}


@pytest.mark.parametrize("case", UNUSABLE)
async def test_a_checkpoint_that_cant_be_resumed_is_discarded_and_the_job_starts_from_step_0(
        store, tiny_engine, tiny_models, tmp_path, steps_made, caplog, case) -> None:
    expected = await uninterrupted_picture(store, tiny_engine, tiny_models, tmp_path)
    job = await enqueue(store, tiny_models, steps=STEPS)
    params = JobParams.from_json(tiny_params(tiny_models, steps=STEPS))
    spoil, reason = UNUSABLE[case]
    (claim,) = await store.claim("an-earlier-worker", lease_seconds=30)
    assert await store.save_checkpoint(job.id, claim.token, step=10, data=spoil(
        job_state_bytes(tiny_engine, params, 10), params, tiny_engine))
    assert await store.release(job.id, claim.token)
    steps_made.clear()

    starts: list[tuple[int | None, int]] = []

    async def note_start() -> None:
        current = await store.get(job.id)
        starts.append((current.resumed_from_step, current.step))

    caplog.set_level(logging.INFO, logger="worker")
    assert await worker_for(store, tiny_engine, tmp_path, on_change=note_start).run_once() == 1
    done = await store.get(job.id)
    assert done.state is JobState.SUCCEEDED and done.resumed_from_step is None
    assert steps_made[job.id] == STEPS  # all of them, from step 0
    assert pixels(await store.result(job.id)) == expected
    said = [r.getMessage() for r in caplog.records if r.name == "worker.checkpointing"]
    assert len(said) == 1 and f"job {job.id}: its checkpoint at step 10 can't be resumed" in said[0], said
    assert reason in said[0]
    assert (None, 5) in starts  # the card never said "resumed" once the job made progress


def test_a_job_is_checkpointed_each_interval_of_its_work_and_not_while_the_last_is_being_written(
        tiny_engine, tiny_models) -> None:
    from types import SimpleNamespace

    from worker.checkpointing import Checkpointer, Resumes

    now = [0.0]
    checkpointer = Checkpointer(every_s=30.0, every_steps=None, clock=lambda: now[0])
    params = JobParams.from_json(tiny_params(tiny_models, steps=STEPS))
    batch = tiny_engine.batch(params)
    checkpointer.add(batch, SimpleNamespace(job=SimpleNamespace(id=1), token="t"), params, Resumes(), print)
    batch.step()
    now[0] = 29.0
    assert checkpointer.take_due(batch, {1: 1}) == []  # less than 30 s of its work so far
    now[0] = 30.0
    (first,) = checkpointer.take_due(batch, {1: 1})
    assert first.step == 1 and first.data
    now[0] = 61.0
    batch.step()
    assert checkpointer.take_due(batch, {1: 2}) == []  # the first is still on its way to the store
    checkpointer.written(1)
    assert [c.step for c in checkpointer.take_due(batch, {1: 2})] == [2]
    now[0] = 1000.0
    checkpointer.written(1)
    assert checkpointer.take_due(batch, {1: STEPS}) == []  # its last step: the picture follows, not a checkpoint
