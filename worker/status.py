"""What a worker tells the bot's /status (no torch here)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime


@dataclass(frozen=True)
class WorkerStatus:
    """A worker as /status shows it.

    ``steps_per_s`` is the most recent measured speed (kept after a batch ends,
    so an idle worker still says how fast it was); ``measured_at`` says when.
    ``device_name`` is the accelerator's marketing name ("NVIDIA H100 80GB HBM3")
    or "CPU", when known.
    """

    name: str
    device: str
    state: str  # "warming up", "idle", "running", "stopping", "stopped"
    steps_per_s: float | None = None
    jobs: tuple[int, ...] = ()
    device_name: str | None = None
    measured_at: datetime | None = None
