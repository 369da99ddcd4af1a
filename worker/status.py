"""What a worker tells the bot's /status (no torch here)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class WorkerStatus:
    name: str
    device: str
    state: str  # "idle", "running", "stopping", "stopped"
    steps_per_s: float | None = None
    jobs: tuple[int, ...] = ()
