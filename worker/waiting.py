"""How the worker waits: until woken or a timeout, and how long before trying a write again."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from dataclasses import dataclass


class Wakeup:
    """Sleep until woken or a timeout: the one way the worker waits for something to happen.

    A wake that comes while nobody sleeps is kept for the next ``sleep``. Event-loop side only.
    """

    def __init__(self) -> None:
        self._event = asyncio.Event()

    def wake(self) -> None:
        self._event.set()

    async def sleep(self, timeout: float | None = None) -> bool:
        """Until ``wake`` (True) or ``timeout`` seconds have passed (False; None: no timeout)."""
        try:
            await asyncio.wait_for(self._event.wait(), timeout)
            return True
        except TimeoutError:
            return False
        finally:
            self._event.clear()


def idle_timeout(poll_interval_s: float, due_in: float | None) -> float:
    """How long an idle worker waits for the store to change: ``poll_interval_s``, or less when a
    waiting retry is due sooner (in ``due_in`` seconds, ``Store.next_due_in``; None: none waits)."""
    return poll_interval_s if due_in is None else max(0.0, min(poll_interval_s, due_in))


async def first_of(*waits: Awaitable[object]) -> None:
    """Wait until the first of ``waits`` ends (its result or error is dropped); cancel the others."""
    tasks = [asyncio.ensure_future(wait) for wait in waits]
    try:
        await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


@dataclass(frozen=True)
class Backoff:
    """The waits between tries of a failed store write: ``first_s``, growing by ``factor``, at most ``max_s``.

    The default keeps the first retry quick (a write lock is usually held for moments) and waits
    at most 30 s, so a database that comes back is used within half a minute.
    """

    first_s: float = 0.5
    factor: float = 2.0
    max_s: float = 30.0

    def delay(self, failures: int) -> float:
        """Seconds to wait after the ``failures``-th failure in a row (1, 2, ...)."""
        return min(self.max_s, self.first_s * self.factor ** max(failures - 1, 0))
