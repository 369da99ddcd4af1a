"""Where a batch's engine thread spends its time: the profile a worker logs when a batch ends.

``stepping`` is the steps themselves; anything else is time the GPU may idle for. A batch that serves
users slower than the engine's own rate shows why here. On a GPU the host runs ahead of it: a step
returns before the GPU has finished it, and the first phase that reads a result back (``pictures``:
a decoded picture to the CPU) waits for the rest, so read those two together.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator

PHASES = ("stepping", "pictures", "checkpoints", "joining", "finishing", "stops")


class EngineTime:
    """Seconds by phase, on the engine thread only; ``summary`` for the log."""

    def __init__(self) -> None:
        self.seconds = dict.fromkeys(PHASES, 0.0)
        self.steps = 0
        self._started = time.perf_counter()

    @contextlib.contextmanager
    def phase(self, name: str) -> Iterator[None]:
        began = time.perf_counter()
        try:
            yield
        finally:
            self.seconds[name] += time.perf_counter() - began

    def summary(self) -> str:
        """One line: wall seconds, steps, and each phase's seconds and share of the wall time."""
        wall = max(time.perf_counter() - self._started, 1e-9)
        parts = ", ".join(f"{name} {secs:.2f} s ({secs / wall:.0%})" for name, secs in self.seconds.items() if secs)
        return f"{self.steps} steps in {wall:.2f} s: {parts or 'nothing'}"
