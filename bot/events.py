"""The client events the bot's features tell each other by (``client.dispatch``), beside Discord's own.

A feature sends one with ``client.dispatch(NAME, ...)``; a cog hears it with a listener named
``on_<name>``, or waits for it with ``client.wait_for(NAME, timeout=...)``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

JOBS_CHANGED = "jobs_changed"
"""Jobs changed in the store (a worker's progress, a cancel, a new job): whatever shows jobs looks again."""

JOB_BUTTON = "job_button"
"""A JobButton was clicked: (interaction, action, job id)."""


@dataclass(frozen=True)
class Wakeups:
    """Whom the bot wakes after it changed jobs itself (queued one, cancelled one)."""

    worker: Callable[[], None]
    """This process's worker, if it has one: there is new or cancelled work."""
    jobs_changed: Callable[[], None]
    """The client's ``jobs_changed`` event: whatever shows jobs looks again."""
