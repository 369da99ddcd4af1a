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
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from pathlib import Path
from typing import Self, TypeVar

from db.checks import check_bool, check_int, check_seconds
from db.clock import Clock, SystemClock, to_epoch, utc_day
from db.custom_ids import parse_custom_id
from db.errors import InvalidInput
from db.jobs import Claim, Job, NewJob, ProgressAck
from db.settings import AuditEntry, GuildSettings
from db.sqlite import admission, guild_config, listings, scheduler, transitions
from db.sqlite.faults import call_guarded
from db.sqlite.opening import close_database, database_path, open_database

T = TypeVar("T")
MAX_BUSY_TIMEOUT_S = 3600.0


class SqliteStore:
    """``await SqliteStore.open(path)``; see ``db.store.Store`` for the methods."""

    def __init__(
        self,
        conn: sqlite3.Connection,
        executor: ThreadPoolExecutor,
        *,
        path: Path,
        clock: Clock,
        defaults: GuildSettings,
    ) -> None:
        self._conn: sqlite3.Connection | None = conn
        self._executor = executor
        self.path = path
        self.clock = clock
        self.defaults = defaults

    @classmethod
    async def open(
        cls,
        path: str | Path,
        *,
        clock: Clock | None = None,
        defaults: GuildSettings | None = None,
        busy_timeout_s: float = 10.0,
        synchronous: str = "NORMAL",
    ) -> Self:
        """Open (creating its folder, the file and the schema as needed) the database at
        ``path``, and check that it can be written.

        ``defaults`` are the settings of a guild that changed nothing. Raises
        StoreUnavailable with a sentence for the operator when the database can't be opened
        or written (``transient``: a lock or a full disk, worth another try later),
        SchemaTooNew for a database of a newer vqbot, InvalidInput for a bad argument.
        Once open, a method that finds the database locked past ``busy_timeout_s`` or the
        disk full raises StoreUnavailable(transient=True) and changes nothing.
        """
        where = database_path(path)
        busy = check_seconds("busy_timeout_s", busy_timeout_s, most=MAX_BUSY_TIMEOUT_S)
        if defaults is not None and not isinstance(defaults, GuildSettings):
            raise InvalidInput("defaults", "defaults must be GuildSettings.")
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

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    async def _run(self, fn: Callable[..., T], /, *args: object, **kwargs: object) -> T:
        conn = self._conn
        if conn is None:
            raise RuntimeError(f"the store for {self.path} is closed")
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, partial(call_guarded, conn, fn, args, kwargs))

    def _now(self) -> float:
        return to_epoch(self.clock.now())

    # --- submitting ------------------------------------------------------------
    async def enqueue(self, new: NewJob) -> Job:
        (job,) = await self.enqueue_many([new])
        return job

    async def enqueue_many(
        self, news: Sequence[NewJob], *, enforce_limits: bool = True
    ) -> list[Job]:
        check_bool("enforce_limits", enforce_limits)
        if not news:
            return []
        return await self._run(
            admission.enqueue,
            list(news),
            defaults=self.defaults,
            enforce_limits=enforce_limits,
            now=self._now(),
        )

    async def request_cancel(self, job_id: int, *, by_user: int, is_admin: bool) -> Job:
        return await self._run(
            transitions.request_cancel, job_id, by_user=by_user, is_admin=is_admin, now=self._now()
        )

    # --- working ---------------------------------------------------------------
    async def claim(self, worker: str, *, lease_seconds: float, max_jobs: int = 1) -> list[Claim]:
        return await self._run(
            scheduler.claim, worker, lease_s=lease_seconds, max_jobs=max_jobs, now=self._now()
        )

    async def reclaim_expired(self) -> int:
        return await self._run(scheduler.reclaim, self._now())

    async def heartbeat(self, job_id: int, token: str, *, lease_seconds: float) -> bool:
        return await self._run(
            transitions.heartbeat, job_id, token, lease_s=lease_seconds, now=self._now()
        )

    async def report_progress(
        self,
        job_id: int,
        token: str,
        *,
        step: int,
        preview: bytes | None = None,
        steps_per_s: float | None = None,
        lease_seconds: float | None = None,
    ) -> ProgressAck:
        return await self._run(
            transitions.report_progress,
            job_id,
            token,
            step=step,
            preview=preview,
            steps_per_s=steps_per_s,
            lease_s=lease_seconds,
            now=self._now(),
        )

    async def cancel_requested(self, job_id: int) -> bool:
        job = await self.get(job_id)
        return job is not None and job.cancel_requested

    async def finish(
        self, job_id: int, token: str, *, result_png: bytes, gpu_seconds: float
    ) -> bool:
        return await self._run(
            transitions.finish,
            job_id,
            token,
            result_png=result_png,
            gpu_seconds=gpu_seconds,
            now=self._now(),
        )

    async def fail(
        self, job_id: int, token: str, *, error: str, gpu_seconds: float, retry: bool = False
    ) -> bool:
        return await self._run(
            transitions.fail,
            job_id,
            token,
            error=error,
            gpu_seconds=gpu_seconds,
            retry=retry,
            now=self._now(),
        )

    async def release(self, job_id: int, token: str) -> bool:
        return await self._run(transitions.release, job_id, token, now=self._now())

    async def confirm_cancelled(self, job_id: int, token: str, *, gpu_seconds: float) -> bool:
        return await self._run(
            transitions.confirm_cancelled, job_id, token, gpu_seconds=gpu_seconds, now=self._now()
        )

    # --- reading ---------------------------------------------------------------
    async def get(self, job_id: int) -> Job | None:
        return await self._run(listings.job, job_id)

    async def by_message(self, message_id: int) -> Job | None:
        return await self._run(listings.by_message, message_id)

    async def by_custom_id(self, custom_id: str) -> Job | None:
        parsed = parse_custom_id(custom_id)
        return None if parsed is None else await self.get(parsed[1])

    async def set_message(self, job_id: int, message_id: int, *, kind: str = "card") -> Job:
        return await self._run(transitions.set_message, job_id, message_id, kind=kind)

    async def preview(self, job_id: int) -> tuple[int, bytes] | None:
        return await self._run(listings.preview, job_id)

    async def result(self, job_id: int) -> bytes | None:
        return await self._run(listings.result, job_id)

    async def position(self, job_id: int) -> tuple[int, float | None]:
        return await self._run(listings.position, job_id)

    async def queue(self, guild_id: int, *, limit: int = 50) -> list[Job]:
        return await self._run(listings.guild_queue, guild_id, limit)

    async def history(
        self, user_id: int, *, guild_id: int | None = None, limit: int = 10
    ) -> list[Job]:
        return await self._run(listings.history, user_id, guild_id, limit)

    async def version(self) -> int:
        return await self._run(listings.current_version)

    async def changed_since(self, version: int, *, limit: int = 500) -> list[Job]:
        return await self._run(listings.changed_since, version, limit)

    async def mark_delivered(self, job_id: int) -> bool:
        return await self._run(transitions.mark_delivered, job_id)

    async def undelivered(self, *, limit: int = 100) -> list[Job]:
        return await self._run(listings.undelivered, limit)

    async def stats(self) -> dict[str, object]:
        return await self._run(listings.stats, self._now())

    async def prune(
        self,
        *,
        previews_older_than_s: float = 3600.0,
        results_older_than_s: float | None = None,
        usage_older_than_days: int = 35,
    ) -> dict[str, int]:
        check_seconds("previews_older_than_s", previews_older_than_s)
        if results_older_than_s is not None:
            check_seconds("results_older_than_s", results_older_than_s)
        check_int("usage_older_than_days", usage_older_than_days, 0, 100_000)
        now = self._now()
        return await self._run(
            listings.prune,
            previews_before=now - previews_older_than_s,
            results_before=None if results_older_than_s is None else now - results_older_than_s,
            usage_before_day=utc_day(now) - usage_older_than_days,
        )

    # --- guild configuration ---------------------------------------------------
    async def settings(self, guild_id: int) -> GuildSettings:
        return await self._run(guild_config.load_settings, guild_id, self.defaults)

    async def set_setting(
        self, guild_id: int, key: str, value: object, *, by_user: int
    ) -> GuildSettings:
        return await self._run(
            guild_config.set_setting,
            guild_id,
            key,
            value,
            by_user=by_user,
            defaults=self.defaults,
            now=self._now(),
        )

    async def audit(self, guild_id: int, limit: int = 20) -> list[AuditEntry]:
        return await self._run(guild_config.load_audit, guild_id, limit)

    async def styles(self, guild_id: int) -> dict[str, str]:
        return await self._run(guild_config.load_styles, guild_id)

    async def set_style(
        self, guild_id: int, name: str, text: str, *, by_user: int
    ) -> dict[str, str]:
        return await self._run(
            guild_config.set_style, guild_id, name, text, by_user=by_user, now=self._now()
        )

    async def delete_style(self, guild_id: int, name: str, *, by_user: int) -> dict[str, str]:
        return await self._run(
            guild_config.delete_style, guild_id, name, by_user=by_user, now=self._now()
        )
