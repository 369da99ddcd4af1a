"""The worker against the real SQLite store and the real engine with tiny models."""

from __future__ import annotations

import asyncio
import io
import threading

from PIL import Image

from db import JobState
from tests.worker.engine_fixtures import tiny_params
from tests.worker.queue import USER, enqueue, worker_for


async def test_a_queued_job_is_run_and_its_png_stored(store, tiny_engine, tiny_models, tmp_path):
    job = await enqueue(store, tiny_models)
    steps_seen: list[int] = []

    async def changed():
        current = await store.get(job.id)
        steps_seen.append(current.step)

    worker = worker_for(store, tiny_engine, tmp_path, on_change=changed)
    assert await worker.run_once() == 1
    done = await store.get(job.id)
    assert done.state is JobState.SUCCEEDED and done.step == 20
    png = await store.result(job.id)
    assert Image.open(io.BytesIO(png)).size == (64, 64)
    assert {5, 10, 15} <= set(steps_seen)  # progress reached the store while it ran
    assert await worker.run_once() == 0  # nothing left


async def test_progress_pictures_are_stored_as_previews(store, tiny_engine, tiny_models, tmp_path):
    job = await enqueue(store, tiny_models)
    previews: list[bytes] = []

    async def changed():
        stored = await store.preview(job.id)
        if stored is not None:
            previews.append(stored[1])

    await worker_for(store, tiny_engine, tmp_path, on_change=changed).run_once()
    assert previews and Image.open(io.BytesIO(previews[0])).format == "WEBP"


async def test_jobs_of_one_shape_run_in_one_batch(store, tiny_engine, tiny_models, tmp_path):
    first = await enqueue(store, tiny_models, "a red apple")
    second = await enqueue(store, tiny_models, "a blue pear", user=USER + 1)
    assert await worker_for(store, tiny_engine, tmp_path).run_once() == 2
    assert (await store.get(first.id)).state is JobState.SUCCEEDED
    assert (await store.get(second.id)).state is JobState.SUCCEEDED


async def test_a_cancel_request_stops_the_running_job(store, tiny_engine, tiny_models, tmp_path):
    job = await enqueue(store, tiny_models)

    async def changed():
        current = await store.get(job.id)
        if current.state is JobState.RUNNING and current.step >= 5:
            await store.request_cancel(job.id, by_user=USER, is_admin=False)

    await worker_for(store, tiny_engine, tmp_path, on_change=changed).run_once()
    ended = await store.get(job.id)
    assert ended.state is JobState.CANCELLED and ended.step < 20


async def test_stopping_the_worker_hands_the_running_job_back(store, tiny_engine, tiny_models, tmp_path):
    job = await enqueue(store, tiny_models)
    worker = worker_for(store, tiny_engine, tmp_path)

    async def changed():
        current = await store.get(job.id)
        if current.state is JobState.RUNNING and current.step >= 5:
            worker.stop()

    worker.on_change = changed
    await worker.run_once()
    again = await store.get(job.id)
    assert again.state is JobState.QUEUED
    fresh = worker_for(store, tiny_engine, tmp_path)
    assert await fresh.run_once() == 1
    assert (await store.get(job.id)).state is JobState.SUCCEEDED


async def test_a_missing_init_image_fails_the_job_with_a_reason(store, tiny_engine, tiny_models, tmp_path):
    job = await enqueue(store, tiny_models, init_image=str(tmp_path / "gone.png"))
    await worker_for(store, tiny_engine, tmp_path).run_once()
    failed = await store.get(job.id)
    assert failed.state is JobState.FAILED
    assert "init image" in failed.error and "does not exist" in failed.error


async def test_a_timelapse_is_written_when_asked_for(store, tiny_engine, tiny_models, tmp_path):
    job = await enqueue(store, tiny_models, extra={"timelapse": True})
    await worker_for(store, tiny_engine, tmp_path, frames_every=5).run_once()
    path = tmp_path / "timelapses" / f"{job.id}.webp"
    assert (await store.get(job.id)).state is JobState.SUCCEEDED
    assert Image.open(path).format == "WEBP"


class ThreadRecorder:
    """The real engine, noting which thread runs each batch."""

    def __init__(self, engine) -> None:
        self._engine = engine
        self.threads: list[int] = []

    def __getattr__(self, name):
        return getattr(self._engine, name)

    def batch(self, params):
        self.threads.append(threading.get_ident())
        return self._engine.batch(params)


async def test_every_batch_runs_on_the_same_engine_thread(store, tiny_engine, tiny_models, tmp_path):
    """CUDA graphs and their memory pool belong to the thread that recorded them, so batches must not
    wander between threads, even while other blocking work holds the event loop's threads."""
    engine = ThreadRecorder(tiny_engine)
    worker = worker_for(store, engine, tmp_path)
    await enqueue(store, tiny_models, "a red apple")
    assert await worker.run_once() == 1
    release = threading.Event()
    busy = asyncio.gather(*(asyncio.to_thread(release.wait) for _ in range(4)))  # the loop's pool threads
    try:
        await enqueue(store, tiny_models, "a blue pear", user=USER + 1)
        assert await worker.run_once() == 1
    finally:
        release.set()
        await busy
    assert len(engine.threads) == 2 and engine.threads[0] == engine.threads[1]
    assert threading.get_ident() not in engine.threads  # and never on the event loop's own thread


async def test_a_warming_worker_prepares_the_usual_shape_before_it_takes_jobs(store, tiny_engine, tiny_models,
                                                                            tmp_path):
    from jobspec import JobParams

    class Recorder(ThreadRecorder):
        def batch(self, params):
            batch = super().batch(params)
            add = batch.add

            def noted_add(key, job_params):
                runs.append(([key], worker.status().state))
                add(key, job_params)

            batch.add = noted_add
            return batch

        def warm_up(self, params, **kwargs):
            runs.append((["warm-up"], worker.status().state))
            seconds = self._engine.warm_up(params, **kwargs)  # the real engine runs the throwaway job
            assert seconds > 0
            return seconds

    runs: list[tuple[list, str]] = []
    job = await enqueue(store, tiny_models)  # already waiting when the worker starts

    async def changed():
        if (await store.get(job.id)).state is JobState.SUCCEEDED:
            worker.stop()

    shape = JobParams.from_json(tiny_params(tiny_models))
    worker = worker_for(store, Recorder(tiny_engine), tmp_path, on_change=changed)
    worker.warm_up = (shape,)
    await asyncio.wait_for(worker.run_forever(), timeout=120)
    assert runs == [(["warm-up"], "warming up"), ([job.id], "running")]
    assert (await store.get(job.id)).state is JobState.SUCCEEDED
    assert worker.status().state == "stopped"
