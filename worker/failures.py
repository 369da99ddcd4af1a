"""What a failed run of a job means for it: one policy per kind of error, chosen by the error's type."""

from __future__ import annotations

import logging
from dataclasses import dataclass

import torch

from engine.images import ImageInputError
from engine.runner import InsufficientMemoryError
from jobspec import ParamError, PromptError


@dataclass(frozen=True)
class FailurePolicy:
    """How an error ends a job's attempt.

    ``message``: what the job's owner reads (None: the error's own text, which is written for
    users). ``retry``: the job goes back to the queue while it has attempts left, and waits before
    it is taken again (``db.retries``). ``isolate``: when
    it stops a batch of several jobs, each of them runs alone before any is charged, so that only a
    job that fails alone pays. ``level`` and ``what``: the worker's log line.
    """

    message: str | None
    retry: bool
    isolate: bool
    level: int
    what: str
    counts: bool = True
    """False: the job was not at fault (the GPU was busy), so a retry costs it no attempt
    (``Store.fail(count_attempt=False)``); it still waits out its backoff."""


USER_ERRORS: tuple[type[Exception], ...] = (ImageInputError, ParamError, PromptError)

# The first entry whose types the error is an instance of applies.
POLICIES: tuple[tuple[tuple[type[BaseException], ...], FailurePolicy], ...] = (
    (USER_ERRORS, FailurePolicy(None, retry=False, isolate=False, level=logging.WARNING,
                                what="refused by the engine")),
    # Other work holds the GPU's memory: nothing is wrong with the job, so no attempt is counted.
    ((InsufficientMemoryError,), FailurePolicy(None, retry=True, isolate=False, level=logging.WARNING,
                                               what="not enough free GPU memory now; back to the queue",
                                               counts=False)),
    # A batch that ran out of memory may fit one job at a time; a job that doesn't fit alone never will.
    ((torch.OutOfMemoryError,), FailurePolicy("The GPU ran out of memory; try a smaller size or fewer cutouts.",
                                              retry=False, isolate=True, level=logging.ERROR,
                                              what="out of GPU memory")),
    ((Exception,), FailurePolicy("The picture could not be made because of an internal error.", retry=True,
                                 isolate=True, level=logging.ERROR, what="the engine failed")),
)


def policy_for(error: BaseException) -> FailurePolicy:
    return next(policy for types, policy in POLICIES if isinstance(error, types))
