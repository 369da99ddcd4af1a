"""Job states and the relations between jobs."""

from __future__ import annotations

from enum import StrEnum


class JobState(StrEnum):
    """Where a job is in its life.

    ``queued -> running -> succeeded | failed``; a user may cancel:
    ``queued -> cancelled`` at once, ``running -> cancelling -> cancelled``
    once the worker acknowledges. A running job whose worker dies goes back
    to ``queued`` (or to ``failed`` after its last attempt).
    """

    QUEUED = "queued"
    RUNNING = "running"
    CANCELLING = "cancelling"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"

    @property
    def is_active(self) -> bool:
        """Whether a worker holds the job (it has a lease)."""
        return self in ACTIVE_STATES

    @property
    def is_terminal(self) -> bool:
        """Whether the job will never change state again."""
        return self in TERMINAL_STATES


ACTIVE_STATES = frozenset({JobState.RUNNING, JobState.CANCELLING})
TERMINAL_STATES = frozenset({JobState.SUCCEEDED, JobState.FAILED, JobState.CANCELLED})


class JobKind(StrEnum):
    """What a job makes: a picture (``/imagine`` and what derives from it) or a description of an
    uploaded picture (``/describe``, jobspec.describe). ``params["kind"]``, absent for pictures;
    the ``kind`` column is generated from it."""

    IMAGINE = "imagine"
    DESCRIBE = "describe"


class Relation(StrEnum):
    """How a job relates to its parent job (``BLEND``: to the uploaded pictures it blends, so
    it may have no parent job)."""

    RERUN = "rerun"  # the parent's parameters with a new seed
    CONTINUE = "continue"  # the parent's parameters, starting from its finished picture
    VARIATION = "variation"  # a new candidate from the parent's picture, with a new seed and noise
    UPSCALE = "upscale"  # the parent's picture re-optimised at the full size and steps
    BLEND = "blend"  # uploaded pictures as image prompts (a parent only when made from a job)


PARENTLESS_RELATIONS = frozenset({Relation.BLEND})
"""Relations a job may have without a parent job."""
