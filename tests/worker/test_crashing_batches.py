"""A job that crashes its batch is found by running the batch's jobs alone, and only it pays for it."""

from __future__ import annotations

import logging

import pytest
import torch

from db import JobState
from engine.images import ImageInputError
from engine.optimiser import BatchOptimiser
from engine.runner import InsufficientMemoryError
from jobspec import ParamError
from tests.worker.queue import USER, enqueue, worker_for
from worker.failures import policy_for

POISON = "a poisoned pear"


@pytest.fixture
def poisoned_steps(monkeypatch):
    """Fault injection into the real engine: any step of a batch that holds the poisoned job crashes, as a
    kernel fault that one job's input sets off would."""
    step = BatchOptimiser.step

    def crashing_step(self: BatchOptimiser):
        if any(POISON in slot.params.prompt_text for slot in self.slots):
            raise RuntimeError("CUDA error: an illegal memory access was encountered")
        return step(self)

    monkeypatch.setattr(BatchOptimiser, "step", crashing_step)


async def test_only_the_job_that_crashes_its_batch_is_charged_and_failed(store, clock, tiny_engine, tiny_models,
                                                                          tmp_path, poisoned_steps, caplog):
    apple = await enqueue(store, tiny_models, "a red apple")
    pear = await enqueue(store, tiny_models, POISON, user=USER + 1)
    plum = await enqueue(store, tiny_models, "a blue plum", user=USER + 2)
    worker = worker_for(store, tiny_engine, tmp_path)
    for _ in range(6):  # a crash requeues the pear; three attempts, then it fails for good
        if await worker.run_once() == 0:
            break
        clock.advance(3600)  # past the retry's wait
    for innocent in (apple, plum):
        done = await store.get(innocent.id)
        assert done.state is JobState.SUCCEEDED and done.step == 20
        assert done.attempts == 1  # the crash cost them nothing
    failed = await store.get(pear.id)
    assert failed.state is JobState.FAILED and failed.attempts == failed.max_attempts == 3
    assert "internal error" in failed.error
    assert any("alone" in r.getMessage() for r in caplog.records if r.name.startswith("worker"))


def test_failures_are_judged_by_their_type_and_its_subclasses() -> None:
    class DeviceLost(torch.OutOfMemoryError):
        """A subclass (a driver's own out-of-memory error): judged as what it is."""

    refused = policy_for(ImageInputError("The init image x.png does not exist."))
    assert not refused.retry and not refused.isolate and refused.message is None  # its text is for the user
    assert not policy_for(ParamError("steps must be between 1 and 5000, not 0.")).retry
    busy = policy_for(InsufficientMemoryError("does not fit now"))
    assert busy.retry and not busy.isolate and not busy.counts  # a busy GPU is not the job's fault
    oom = policy_for(DeviceLost("CUDA out of memory"))
    assert not oom.retry and oom.isolate and "ran out of memory" in oom.message
    crash = policy_for(RuntimeError("CUDA error: an illegal memory access was encountered"))
    assert crash.retry and crash.isolate and crash.counts and "internal error" in crash.message
    assert crash.level == oom.level == logging.ERROR
