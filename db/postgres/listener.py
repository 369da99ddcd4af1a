"""LISTEN on the change feed's channel, wake waiters, and reconnect after a drop; and the wait
itself (``wait_for_change``, PostgresStore's).

One connection per store, outside the pool, opened on the first
``wait_for_change``. Waiters never depend on it alone: they poll the feed
every ``poll_interval_s`` anyway, so a notification lost in a crash, or a
listening connection the server dropped (a restart, ``pg_terminate_backend``,
a network cut), costs at most one poll interval until it is back.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable

import psycopg
from psycopg import sql

from db.errors import StoreUnavailable
from db.postgres.connection import CHANNEL, Conn, SessionSettings, connect
from db.wakeups import Wake, Wakeups

log = logging.getLogger(__name__)

HORIZON_RECHECK_S = 0.01  # the first look again for a change notified but not readable yet


class Signal:
    """Set once, by the next notification or drop after it was handed out."""

    def __init__(self) -> None:
        self.event = asyncio.Event()
        self.reason = Wake.TIMEOUT

    def fire(self, reason: Wake) -> None:
        self.reason = reason
        self.event.set()


class Listener:
    def __init__(self, url: str, session: SessionSettings, *, retry_s: float) -> None:
        self._url = url
        self._timeouts = session
        self._retry_s = retry_s
        self._signal = Signal()
        self._task: asyncio.Task[None] | None = None
        self._conn: Conn | None = None
        self.connected = asyncio.Event()
        self.dropped = asyncio.Event()
        self.notifications = 0
        self.drops = 0
        self.newest = 0  # the highest change number notified so far (a NOTIFY's payload)

    @property
    def backend_pid(self) -> int | None:
        """The server process of the listening connection (None while there is none)."""
        conn = self._conn
        return conn.info.backend_pid if conn is not None and not conn.closed else None

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._listen(), name="vqbot-listener")

    async def close(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    def next_wake(self) -> Signal:
        """The signal the next notification (or drop) fires: take it before checking the store,
        so that a notification that arrives in between still wakes the waiter."""
        return self._signal

    @staticmethod
    async def wait(signal: Signal, timeout: float) -> Wake:
        try:
            await asyncio.wait_for(signal.event.wait(), timeout)
        except TimeoutError:
            return Wake.TIMEOUT
        return signal.reason

    def _fire(self, reason: Wake) -> None:
        signal, self._signal = self._signal, Signal()
        signal.fire(reason)

    async def _listen(self) -> None:
        while True:
            try:
                self._conn = await connect(self._url, self._timeouts, "vqbot-listener")
                await self._conn.execute(sql.SQL("LISTEN {}").format(sql.Identifier(CHANNEL)))
                self.dropped.clear()
                self.connected.set()
                log.info("listening for changes (server process %s)", self.backend_pid)
                async for note in self._conn.notifies():
                    self.notifications += 1
                    if note.payload.isdecimal():
                        self.newest = max(self.newest, int(note.payload))
                    self._fire(Wake.NOTIFIED)
            except (psycopg.Error, StoreUnavailable) as exc:
                log.warning("the listening connection dropped (%s); polling until it is back", exc)
            finally:
                conn, self._conn = self._conn, None
                if conn is not None:
                    with contextlib.suppress(psycopg.Error):
                        await conn.close()
            self.connected.clear()
            self.drops += 1
            self.dropped.set()
            self._fire(Wake.DROPPED)
            await asyncio.sleep(self._retry_s)


async def wait_for_change(
    listener: Listener,
    read_version: Callable[[], Awaitable[int]],
    since: int,
    timeout: float,
    *,
    poll_interval_s: float,
    wakeups: Wakeups,
    parked: asyncio.Event,
) -> int:
    """PostgresStore's ``wait_for_change``: the newest version (``read_version``) once it is above
    ``since`` (woken by ``listener``'s NOTIFY, or by the poll every ``poll_interval_s``), or the
    current version after ``timeout`` seconds; what woke it is counted in ``wakeups``, and
    ``parked`` is set while it sleeps.

    The listening connection is up (LISTEN done) before the version is read, and the
    wake signal is taken before it, so a change committed after the read notifies this
    waiter. A change notified but not yet readable (behind the feed's horizon: an older
    transaction on the server is still open, ``db/postgres/listings.py``) may end without
    any further notification, so it is looked for again after ``HORIZON_RECHECK_S``,
    doubling up to the poll interval, until it shows."""
    listener.start()
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    recheck = HORIZON_RECHECK_S
    while True:
        if not listener.connected.is_set():  # a change after this check must notify us
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(
                    listener.connected.wait(), max(0.0, min(deadline - loop.time(), poll_interval_s))
                )
        signal = listener.next_wake()
        current = await read_version()
        remaining = deadline - loop.time()
        if current > since:
            return current
        if remaining <= 0:
            wakeups.timed_out += 1
            return current
        pause = min(remaining, poll_interval_s)
        if listener.newest > since:  # notified, but behind the horizon: look again soon
            pause, recheck = min(pause, recheck), min(recheck * 2, poll_interval_s)
        wakeups.parked += 1
        parked.set()
        try:
            woke = await listener.wait(signal, pause)
        finally:
            parked.clear()
        wakeups.count(Wake.POLLED if woke is Wake.TIMEOUT else woke)
