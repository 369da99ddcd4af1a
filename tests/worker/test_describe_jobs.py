"""Describe jobs on the real worker, the real store and the tiny CLIP: alone, short, answered as JSON."""

from __future__ import annotations

from pathlib import Path

from PIL import Image

from db import JobState, NewJob
from jobspec.describe import Candidate, DescribeParams, Description
from jobspec.vocabulary import vocabulary_phrases
from tests.worker.queue import CHANNEL, GUILD, USER, enqueue, worker_for


async def enqueue_describe(store, tiny_models, picture: Path, *, top_k: int = 3, user: int = USER):
    candidates = (Candidate("Studio Ghibli style", "ghibli"), *(Candidate(p) for p in vocabulary_phrases()[:40]))
    params = DescribeParams(picture=str(picture), candidates=candidates, top_k=top_k,
                            clip_model=tiny_models.clip_model, clip_pretrained="")
    return await store.enqueue(NewJob(GUILD, CHANNEL, user, "describe a picture", params.to_json(), seed=0))


def a_picture(tmp_path: Path) -> Path:
    path = tmp_path / "upload.png"
    Image.new("RGB", (40, 30), (200, 120, 30)).save(path)
    return path


async def test_a_describe_job_is_answered_with_its_closest_phrases(store, tiny_engine, tiny_models, tmp_path):
    job = await enqueue_describe(store, tiny_models, a_picture(tmp_path), top_k=3)
    assert await worker_for(store, tiny_engine, tmp_path).run_once() == 1
    done = await store.get(job.id)
    assert done.state is JobState.SUCCEEDED and done.gpu_seconds > 0
    description = Description.from_bytes(await store.result(job.id))
    assert len(description.matches) == 3
    similarities = [m.similarity for m in description.matches]
    assert similarities == sorted(similarities, reverse=True)


async def test_describe_and_picture_jobs_run_side_by_side_each_their_own_way(store, tiny_engine, tiny_models,
                                                                             tmp_path):
    picture_job = await enqueue(store, tiny_models)
    described = await enqueue_describe(store, tiny_models, a_picture(tmp_path), user=USER + 1)
    worker = worker_for(store, tiny_engine, tmp_path)
    ran = await worker.run_once() + await worker.run_once()
    assert ran == 2
    assert (await store.get(picture_job.id)).state is JobState.SUCCEEDED
    assert (await store.result(picture_job.id)).startswith(b"\x89PNG")
    assert Description.from_bytes(await store.result(described.id)).matches


async def test_a_picture_that_vanished_fails_the_job_with_a_sentence(store, tiny_engine, tiny_models, tmp_path):
    job = await enqueue_describe(store, tiny_models, tmp_path / "deleted.png")
    await worker_for(store, tiny_engine, tmp_path).run_once()
    failed = await store.get(job.id)
    assert failed.state is JobState.FAILED and failed.attempts == 1
    assert failed.error == "The picture deleted.png does not exist."


async def test_a_describe_job_cancelled_before_it_ran_is_not_described(store, tiny_engine, tiny_models, tmp_path):
    job = await enqueue_describe(store, tiny_models, a_picture(tmp_path))
    worker = worker_for(store, tiny_engine, tmp_path)
    original = store.claim

    async def claim_then_cancel(*args, **kwargs):
        claims = await original(*args, **kwargs)
        await store.request_cancel(job.id, by_user=USER, is_admin=False)
        return claims

    store.claim = claim_then_cancel
    await worker.run_once()
    assert (await store.get(job.id)).state is JobState.CANCELLED
    assert await store.result(job.id) is None
