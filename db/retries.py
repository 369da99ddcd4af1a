"""How long a failed job waits before its next attempt: exponential backoff with jitter, capped.

``Store.fail(..., retry=True)`` puts a job back in the queue with ``not_before = now + delay``;
``claim`` passes over it until then. While it waits the job is ``queued`` (it still counts
against its member's and guild's queue caps) but out of the fair-share queue counters: the
claim that finds its ``not_before`` passed counts it in again (``due`` in each scheduler).

The n-th retry of a job waits ``min(cap_s, base_s * 2**(n-1))`` seconds, scaled by a jitter
factor drawn from [0.5, 1.0) so that jobs that failed together (a crashed batch) don't all come
back at once: with the defaults 10 s (5-10 s), 20 s, 40 s, 80 s, ... up to 15 minutes
(7.5-15 min) from the 8th retry on. A counted retry uses the job's attempts as ``n``.

``count_attempt=False`` (the GPU's memory was held by other work: nothing about the job was
wrong) gives the attempt back and counts a *deferral* instead, with its own backoff, so that a busy
GPU can't burn a job's attempts in seconds. After ``max_deferrals`` deferrals (0.8-1.6 hours of
waiting with the defaults) a deferral counts an attempt after all, so a job that never fits ends.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass, field

from db.errors import InvalidInput

MAX_BACKOFF_S = 7 * 86_400.0


@dataclass(frozen=True)
class RetryBackoff:
    """The waits between attempts; ``jitter`` draws a float in [0, 1) (tests inject their own)."""

    base_s: float = 10.0
    cap_s: float = 900.0
    max_deferrals: int = 12
    jitter: Callable[[], float] = field(default=random.random, compare=False)

    def __post_init__(self) -> None:
        if not 0 < self.base_s <= self.cap_s <= MAX_BACKOFF_S:
            raise InvalidInput("retry_backoff", f"need 0 < base_s <= cap_s <= {MAX_BACKOFF_S:g}.")
        if not 0 <= self.max_deferrals <= 1000:
            raise InvalidInput("retry_backoff", "max_deferrals must be from 0 to 1000.")

    def delay(self, retry: int, draw: float) -> float:
        """Seconds before the ``retry``-th retry (1, 2, ...), ``draw`` a jitter draw in [0, 1)."""
        exponent = min(max(retry, 1) - 1, 60)
        ceiling = min(self.cap_s, self.base_s * 2.0**exponent)
        return ceiling * (0.5 + 0.5 * min(max(draw, 0.0), 1.0))

    def draw(self) -> float:
        """One jitter draw in [0, 1)."""
        value = float(self.jitter())
        return value if 0.0 <= value < 1.0 else 0.5
