"""Who is running: each bot and worker process says so every few seconds (``Store.report_presence``).

``vqbot health`` (a container's HEALTHCHECK) and ``vqbot doctor`` read it back (``Store.presences``):
a worker whose last word is older than a few heartbeats is gone or stuck, a bot that is not
``connected`` can't reach Discord. Rows are kept small and replaced in place, one per process name.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

PRESENCE_KINDS = ("bot", "worker")
MAX_NAME = 100
MAX_HOST = 255
MAX_STATE = 40
MAX_DETAIL = 200
FORGET_AFTER_S = 7 * 86_400.0  # a process silent this long is dropped from the list at the next report


@dataclass(frozen=True)
class Presence:
    """A process's last report: ``state`` is its own word (``connected``, ``idle``, ``running``, ``stopped``...)."""

    name: str
    kind: str
    host: str
    state: str
    detail: str
    started_at: datetime
    seen_at: datetime

    def age_s(self, now: datetime) -> float:
        """Seconds since its last report."""
        return (now - self.seen_at).total_seconds()
