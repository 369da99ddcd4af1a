"""Waiting for the store to change, instead of polling it in a loop.

A worker with nothing to claim, and the bot between card updates, wait on
the store: ``version = await store.wait_for_change(version, timeout=30)``
returns as soon as the change feed has something newer than ``version`` (or
when ``timeout`` runs out), with the newest version, ready for
``changed_since``. Every ``db.store.Store`` has it:

- PostgresStore wakes waiters with LISTEN/NOTIFY (one notification after
  each transaction that changed the feed), and polls ``version()`` every
  ``poll_interval_s`` besides, so a lost notification or a dropped listening
  connection only slows a wake-up down to the poll.
- SqliteStore wakes its own waiters at once after each of its own writes
  (an asyncio.Event), and reads ``PRAGMA data_version`` every
  ``poll_interval_s`` (0.2 s) while someone waits: it changes when another
  connection (another process, or another store on the same file) has
  committed, and only then is the feed's version read again. One such check
  is a read of SQLite's shared memory, no disk and no lock.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Protocol


class WaitsForChanges(Protocol):
    async def wait_for_change(self, since: int, timeout: float) -> int:
        """The newest version once it is above ``since``, or the current one after ``timeout`` seconds."""
        ...


class Wake(StrEnum):
    """Why a parked waiter woke up to look at the store again."""

    NOTIFIED = "notified"
    POLLED = "polled"
    DROPPED = "dropped"
    TIMEOUT = "timeout"


@dataclass
class Wakeups:
    """What woke a store's waiters, counted (read by tests, the queue benchmark and /status).

    ``notified``: a change announced at once (PostgreSQL: a NOTIFY; SQLite: a
    write by this same store). ``polled``: the fallback poll (SQLite: it saw
    another connection's commit; PostgreSQL: a poll interval ended).
    ``dropped``: PostgreSQL's listening connection dropped. ``parked``: how
    often a waiter went to sleep. ``timed_out``: waits that ended at their
    timeout with nothing newer than ``since``.
    """

    notified: int = 0
    polled: int = 0
    dropped: int = 0
    parked: int = 0
    timed_out: int = 0

    def count(self, woke: Wake) -> None:
        if woke is Wake.NOTIFIED:
            self.notified += 1
        elif woke is Wake.POLLED:
            self.polled += 1
        elif woke is Wake.DROPPED:
            self.dropped += 1
