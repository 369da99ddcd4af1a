"""The Store on one SQLite file (WAL), for the bot and workers on one host.

Each SqliteStore owns one connection and one thread: every call runs as a
single transaction on that thread, so the event loop never blocks on SQLite
and a transaction holds the write lock only for the microseconds its SQL
takes. Several stores (in one process or several) may share a file; SQLite's
write lock and ``busy_timeout`` serialise their transactions.
"""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from pathlib import Path
from typing import Self, TypeVar

from db.checked_store import CheckedStore
from db.checks import check_seconds
from db.clock import Clock, SystemClock
from db.errors import InvalidInput
from db.jobs import CheckedJob, Claim, Job, ProgressAck
from db.presence import Presence
from db.retries import RetryBackoff
from db.settings import AuditEntry, GuildSettings, SettingValue
from db.sqlite import admission, guild_config, listings, presence, scheduler, transitions
from db.sqlite.faults import call_guarded
from db.sqlite.opening import close_database, database_path, open_database
from db.wakeups import Wake, Wakeups

T = TypeVar("T")
MAX_BUSY_TIMEOUT_S = 3600.0
MAX_POLL_INTERVAL_S = 3600.0


def _counting_writes(
    conn: sqlite3.Connection, fn: Callable[..., T], args: tuple[object, ...], kwargs: dict[str, object]
) -> tuple[T, bool]:
    """``fn``'s result (run as ``call_guarded`` runs it) and whether it changed any row."""
    before = conn.total_changes
    result = call_guarded(conn, fn, args, kwargs)
    return result, conn.total_changes != before


class SqliteStore(CheckedStore):
    """``await SqliteStore.open(path)``; see ``db.store.Store`` for the methods
    (``db.checked_store`` checks their arguments before they get here)."""

    def __init__(
        self,
        conn: sqlite3.Connection,
        executor: ThreadPoolExecutor,
        *,
        path: Path,
        clock: Clock,
        defaults: GuildSettings,
        poll_interval_s: float,
        retry_backoff: RetryBackoff,
    ) -> None:
        self._conn: sqlite3.Connection | None = conn
        self._executor = executor
        self.path = path
        self.clock = clock
        self.defaults = defaults
        self.poll_interval_s = poll_interval_s
        self.retry_backoff = retry_backoff
        self.wakeups = Wakeups()
        self.parked = asyncio.Event()
        self._next_write = asyncio.Event()  # set (and replaced) after each write of this store

    @classmethod
    async def open(
        cls,
        path: str | Path,
        *,
        clock: Clock | None = None,
        defaults: GuildSettings | None = None,
        busy_timeout_s: float = 10.0,
        synchronous: str = "NORMAL",
        poll_interval_s: float = 0.2,
        retry_backoff: RetryBackoff | None = None,
    ) -> Self:
        """Open (creating its folder, the file and the schema as needed) the database at
        ``path``, and check that it can be written.

        ``defaults`` are the settings of a guild that changed nothing. Raises
        StoreUnavailable with a sentence for the operator when the database can't be opened
        or written (``transient``: a lock or a full disk, worth another try later),
        SchemaTooNew for a database of a newer vqbot, InvalidInput for a bad argument.
        Once open, a method that finds the database locked past ``busy_timeout_s`` or the
        disk full raises StoreUnavailable(transient=True) and changes nothing.
        ``poll_interval_s`` is how often ``wait_for_change`` looks for other connections'
        commits while someone waits (this store's own writes wake waiters at once).
        ``retry_backoff``: the waits between a failed job's attempts (``db.retries``).
        """
        where = database_path(path)
        busy = check_seconds("busy_timeout_s", busy_timeout_s, most=MAX_BUSY_TIMEOUT_S)
        poll = check_seconds("poll_interval_s", poll_interval_s, positive=True, most=MAX_POLL_INTERVAL_S)
        if defaults is not None and not isinstance(defaults, GuildSettings):
            raise InvalidInput("defaults", "defaults must be GuildSettings.")
        if retry_backoff is not None and not isinstance(retry_backoff, RetryBackoff):
            raise InvalidInput("retry_backoff", "retry_backoff must be a RetryBackoff.")
        executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="vqbot-db")
        loop = asyncio.get_running_loop()
        try:
            conn = await loop.run_in_executor(executor, partial(open_database, where, busy, synchronous))
        except BaseException:
            executor.shutdown(wait=False)
            raise
        return cls(
            conn,
            executor,
            path=where,
            clock=clock or SystemClock(),
            defaults=defaults or GuildSettings(),
            poll_interval_s=poll,
            retry_backoff=retry_backoff or RetryBackoff(),
        )

    async def close(self) -> None:
        conn, self._conn = self._conn, None
        if conn is None:
            return
        loop = asyncio.get_running_loop()
        try:
            await loop.run_in_executor(self._executor, close_database, conn)
        finally:
            self._executor.shutdown(wait=True)

    async def _run(self, fn: Callable[..., T], /, *args: object, **kwargs: object) -> T:
        conn = self._conn
        if conn is None:
            raise RuntimeError(f"the store for {self.path} is closed")
        loop = asyncio.get_running_loop()
        result, wrote = await loop.run_in_executor(self._executor, partial(_counting_writes, conn, fn, args, kwargs))
        if wrote:  # wake this store's waiters now; other connections' see it at their next poll
            written, self._next_write = self._next_write, asyncio.Event()
            written.set()
        return result

    # --- waiting for changes -----------------------------------------------------
    async def _wait_for_change(self, since: int, timeout: float) -> int:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            written = self._next_write  # taken before reading: a write after the read sets it
            seen, current = await self._run(listings.change_counters)
            if current > since:
                return current
            if deadline - loop.time() <= 0:
                self.wakeups.timed_out += 1
                return current
            self.wakeups.parked += 1
            self.parked.set()
            try:
                woke = await self._sleep_until_change(written, seen, deadline)
            finally:
                self.parked.clear()
            self.wakeups.count(woke)

    async def _sleep_until_change(self, written: asyncio.Event, seen: int, deadline: float) -> Wake:
        """Until this store writes (NOTIFIED), another connection commits (POLLED: ``PRAGMA
        data_version`` moved from ``seen``, checked every ``poll_interval_s``) or the deadline."""
        loop = asyncio.get_running_loop()
        while (remaining := deadline - loop.time()) > 0:
            try:
                await asyncio.wait_for(written.wait(), min(remaining, self.poll_interval_s))
            except TimeoutError:
                if await self._run(listings.data_version) != seen:
                    return Wake.POLLED
            else:
                return Wake.NOTIFIED
        return Wake.TIMEOUT

    async def _next_due(self) -> float | None:
        return await self._run(listings.next_due)

    # --- submitting ------------------------------------------------------------
    async def _enqueue(
        self, jobs: list[CheckedJob], *, enforce_limits: bool, group: bool, now: float
    ) -> list[Job]:
        return await self._run(
            admission.enqueue, jobs, defaults=self.defaults, enforce_limits=enforce_limits, group=group,
            now=now,
        )

    async def _request_cancel(self, job_id: int, *, by_user: int, is_admin: bool, now: float) -> Job:
        return await self._run(
            transitions.request_cancel, job_id, by_user=by_user, is_admin=is_admin, now=now
        )

    # --- working ---------------------------------------------------------------
    async def _claim(
        self, worker: str, *, lease_s: float, max_jobs: int, now: float, batch_key: str | None
    ) -> list[Claim]:
        return await self._run(
            scheduler.claim, worker, lease_s=lease_s, max_jobs=max_jobs, now=now, batch_key=batch_key
        )

    async def _reclaim_expired(self, now: float) -> int:
        return await self._run(scheduler.reclaim, now)

    async def _heartbeat(self, job_id: int, token: str, *, lease_s: float, now: float) -> bool:
        return await self._run(transitions.heartbeat, job_id, token, lease_s=lease_s, now=now)

    async def _report_progress(
        self,
        job_id: int,
        token: str,
        *,
        step: int,
        preview: bytes | None,
        steps_per_s: float | None,
        lease_s: float | None,
        now: float,
    ) -> ProgressAck:
        return await self._run(
            transitions.report_progress,
            job_id,
            token,
            step=step,
            preview=preview,
            steps_per_s=steps_per_s,
            lease_s=lease_s,
            now=now,
        )

    async def _finish(
        self, job_id: int, token: str, *, result_png: bytes, gpu_seconds: float, now: float
    ) -> bool:
        return await self._run(
            transitions.finish, job_id, token, result_png=result_png, gpu_seconds=gpu_seconds, now=now
        )

    async def _fail(
        self,
        job_id: int,
        token: str,
        *,
        error: str,
        gpu_seconds: float,
        retry: bool,
        count_attempt: bool,
        draw: float,
        now: float,
    ) -> bool:
        return await self._run(
            transitions.fail,
            job_id,
            token,
            error=error,
            gpu_seconds=gpu_seconds,
            retry=retry,
            count_attempt=count_attempt,
            backoff=self.retry_backoff,
            draw=draw,
            now=now,
        )

    async def _save_checkpoint(
        self, job_id: int, token: str, *, step: int, data: bytes, now: float
    ) -> bool:
        return await self._run(transitions.save_checkpoint, job_id, token, step=step, data=data, now=now)

    async def _checkpoint(self, job_id: int) -> tuple[int, bytes] | None:
        return await self._run(listings.checkpoint, job_id)

    async def _discard_checkpoint(self, job_id: int, token: str) -> bool:
        return await self._run(transitions.discard_checkpoint, job_id, token)

    async def _release(self, job_id: int, token: str, *, now: float) -> bool:
        return await self._run(transitions.release, job_id, token, now=now)

    async def _confirm_cancelled(
        self, job_id: int, token: str, *, gpu_seconds: float, now: float
    ) -> bool:
        return await self._run(
            transitions.confirm_cancelled, job_id, token, gpu_seconds=gpu_seconds, now=now
        )

    # --- reading ---------------------------------------------------------------
    async def _get(self, job_id: int) -> Job | None:
        return await self._run(listings.job, job_id)

    async def _by_message(self, message_id: int) -> Job | None:
        return await self._run(listings.by_message, message_id)

    async def _set_message(self, job_id: int, message_id: int, *, kind: str) -> Job:
        return await self._run(transitions.set_message, job_id, message_id, kind=kind)

    async def _preview(self, job_id: int) -> tuple[int, bytes] | None:
        return await self._run(listings.preview, job_id)

    async def _result(self, job_id: int) -> bytes | None:
        return await self._run(listings.result, job_id)

    async def _position(self, job_id: int) -> tuple[int, float | None]:
        return await self._run(listings.position, job_id)

    async def _queue(self, guild_id: int, limit: int) -> list[Job]:
        return await self._run(listings.guild_queue, guild_id, limit)

    async def _history(self, user_id: int, guild_id: int | None, limit: int) -> list[Job]:
        return await self._run(listings.history, user_id, guild_id, limit)

    async def _group(self, group_id: int) -> list[Job]:
        return await self._run(listings.group, group_id)

    async def _version(self) -> int:
        return await self._run(listings.current_version)

    async def _changed_since(self, version: int, limit: int) -> list[Job]:
        return await self._run(listings.changed_since, version, limit)

    async def _mark_delivered(self, job_id: int, *, result_message_id: int | None) -> bool:
        return await self._run(transitions.mark_delivered, job_id, result_message_id=result_message_id)

    async def _undelivered(self, limit: int) -> list[Job]:
        return await self._run(listings.undelivered, limit)

    async def _stats(self, now: float) -> dict[str, object]:
        return await self._run(listings.stats, now)

    async def _prune(
        self, *, previews_before: float, results_before: float | None, usage_before_day: int
    ) -> dict[str, int]:
        return await self._run(
            listings.prune,
            previews_before=previews_before,
            results_before=results_before,
            usage_before_day=usage_before_day,
        )

    # --- presence ----------------------------------------------------------------
    async def _report_presence(self, name: str, kind: str, host: str, state: str, detail: str, now: float) -> None:
        await self._run(presence.report, name, kind, host, state, detail, now)

    async def _presences(self) -> list[Presence]:
        return await self._run(presence.listing)

    async def _params_in_use(
        self, *, ended_after: float, after_id: int, limit: int
    ) -> list[tuple[int, dict[str, object]]]:
        return await self._run(listings.params_in_use, ended_after=ended_after, after_id=after_id, limit=limit)

    # --- guild configuration ---------------------------------------------------
    async def _settings(self, guild_id: int) -> GuildSettings:
        return await self._run(guild_config.load_settings, guild_id, self.defaults)

    async def _set_setting(
        self, guild_id: int, key: str, value: SettingValue | None, *, by_user: int, now: float
    ) -> GuildSettings:
        return await self._run(
            guild_config.set_setting, guild_id, key, value, by_user=by_user, defaults=self.defaults, now=now
        )

    async def _audit(self, guild_id: int, limit: int) -> list[AuditEntry]:
        return await self._run(guild_config.load_audit, guild_id, limit)

    async def _styles(self, guild_id: int) -> dict[str, str]:
        return await self._run(guild_config.load_styles, guild_id)

    async def _set_style(
        self, guild_id: int, name: str, text: str, *, by_user: int, now: float
    ) -> dict[str, str]:
        return await self._run(guild_config.set_style, guild_id, name, text, by_user=by_user, now=now)

    async def _delete_style(
        self, guild_id: int, name: str, *, by_user: int, now: float
    ) -> dict[str, str]:
        return await self._run(guild_config.delete_style, guild_id, name, by_user=by_user, now=now)
