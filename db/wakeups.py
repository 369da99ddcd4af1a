"""Waiting for the store to change, instead of polling it in a loop.

A worker with nothing to claim, and the bot between card updates, wait on
the store: ``version = await store.wait_for_change(version, timeout=30)``
returns as soon as the change feed has something newer than ``version`` (or
when ``timeout`` runs out), with the newest version, ready for
``changed_since``. It is a protocol of its own beside ``db.store.Store``:

- PostgresStore wakes waiters with LISTEN/NOTIFY (one notification after
  each transaction that changed the feed), and polls ``version()`` every
  ``poll_interval_s`` besides, so a lost notification or a dropped listening
  connection only slows a wake-up down to the poll.
- SqliteStore (to do) can poll cheaply: ``PRAGMA data_version`` changes
  when another connection committed, and ``store_state.version`` says
  whether the feed moved; a short sleep between two such reads costs
  microseconds.
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable


@runtime_checkable
class WaitsForChanges(Protocol):
    async def wait_for_change(self, since: int, timeout: float) -> int:
        """The newest version once it is above ``since``, or the current one after ``timeout`` seconds."""
        ...
