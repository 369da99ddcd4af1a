"""The Store on a PostgreSQL server, for workers on many GPUs and hosts sharing one queue.

Each PostgresStore owns a connection pool (psycopg 3, async): every call
runs as one transaction on a pooled connection, so the bot can serve many
calls at once and many workers (each with its own store) claim in parallel.
See docs/queue.md for how it differs from SqliteStore, and
``db/postgres/listings.py`` for the change feed.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Any, Self, TypeVar

from db.checked_store import CheckedStore
from db.checks import check_seconds
from db.clock import Clock, SystemClock
from db.errors import InvalidInput, StoreUnavailable
from db.jobs import CheckedJob, Claim, Job, ProgressAck
from db.postgres import admission, guild_config, listings, presence, scheduler, transitions
from db.postgres.connection import Pool, SessionSettings, Tx, connect, open_pool, run_transaction, where
from db.postgres.listener import Listener, wait_for_change
from db.postgres.rows import fetch_job
from db.postgres.schema import migrate
from db.presence import Presence
from db.retries import RetryBackoff
from db.settings import AuditEntry, GuildSettings, SettingValue
from db.wakeups import Wakeups

log = logging.getLogger(__name__)
T = TypeVar("T")

class PostgresStore(CheckedStore):
    """``await PostgresStore.open("postgresql://user@host/db")``; see ``db.store.Store``
    for the methods (``db.checked_store`` checks their arguments before they get here)
    and ``db.wakeups`` for how ``wait_for_change`` wakes up."""

    def __init__(
        self,
        pool: Pool,
        *,
        url: str,
        clock: Clock,
        defaults: GuildSettings,
        session: SessionSettings,
        poll_interval_s: float,
        listen_retry_s: float,
        retry_backoff: RetryBackoff,
    ) -> None:
        self._pool: Pool | None = pool
        self._url = url
        self.where = where(url)
        self.clock = clock
        self.defaults = defaults
        self.session = session
        self.poll_interval_s = poll_interval_s
        self.retry_backoff = retry_backoff
        self.wakeups = Wakeups()
        self.parked = asyncio.Event()  # set while a wait_for_change waits (tests start changes then)
        self.listener = Listener(url, session, retry_s=listen_retry_s)

    @classmethod
    async def open(
        cls,
        url: str,
        *,
        clock: Clock | None = None,
        defaults: GuildSettings | None = None,
        pool_size: int = 10,
        statement_timeout_s: float = 30.0,
        idle_in_transaction_timeout_s: float = 60.0,
        lock_timeout_s: float = 10.0,
        poll_interval_s: float = 2.0,
        listen_retry_s: float = 1.0,
        application_name: str = "vqbot",
        durable_claims: bool = True,
        retry_backoff: RetryBackoff | None = None,
    ) -> Self:
        """Connect to ``url`` (``postgresql://user:password@host:port/dbname``), migrating the
        database as needed.

        Raises StoreUnavailable (one sentence: what to fix) for a server that
        can't be reached, refuses the login, lacks the database or is too
        old, and SchemaTooNew for a database of a newer vqbot.
        ``poll_interval_s`` bounds how long ``wait_for_change`` relies on
        notifications alone; ``application_name`` names the pool's sessions
        in ``pg_stat_activity`` (e.g. one name per worker).

        ``durable_claims=False`` commits claims (like progress and heartbeats)
        without waiting for the disk: a claim then costs CPU, not a flush, but
        a server crash can forget the last claims of the crash's last fraction
        of a second; those jobs are queued again and their workers' next
        report fails its lease check, as after a lease expiry. Enqueues,
        finishes, failures and cancels always wait for the disk.
        ``retry_backoff``: the waits between a failed job's attempts (``db.retries``).
        """
        session = SessionSettings(
            statement_s=statement_timeout_s,
            idle_in_transaction_s=idle_in_transaction_timeout_s,
            lock_s=lock_timeout_s,
            synchronous=bool(durable_claims),
        )
        check_seconds("poll_interval_s", poll_interval_s, positive=True, most=3600)
        check_seconds("listen_retry_s", listen_retry_s, positive=True, most=3600)
        if retry_backoff is not None and not isinstance(retry_backoff, RetryBackoff):
            raise InvalidInput("retry_backoff", "retry_backoff must be a RetryBackoff.")
        if isinstance(pool_size, bool) or not isinstance(pool_size, int) or not 1 <= pool_size <= 1000:
            raise InvalidInput("pool_size", f"pool_size must be 1 to 1000 connections, got {pool_size!r}.")
        conn = await connect(url, session, "vqbot-migrate")
        try:
            applied = await migrate(conn)
        finally:
            await conn.close()
        if applied:
            log.info("database %s migrated to version %d", where(url), applied[-1])
        pool = await open_pool(
            url,
            session,
            application_name=application_name,
            min_size=1,
            max_size=pool_size,
            timeout_s=max(10.0, lock_timeout_s),
        )
        return cls(
            pool,
            url=url,
            clock=clock or SystemClock(),
            defaults=defaults or GuildSettings(),
            session=session,
            poll_interval_s=poll_interval_s,
            listen_retry_s=listen_retry_s,
            retry_backoff=retry_backoff or RetryBackoff(),
        )

    async def close(self) -> None:
        pool, self._pool = self._pool, None
        if pool is None:
            return
        await self.listener.close()
        await pool.close()

    async def _run(
        self,
        fn: Callable[..., Awaitable[T]],
        /,
        *args: Any,
        synchronous: bool = True,
        read_only: bool = False,
        single_statement: bool = False,
        **kwargs: Any,
    ) -> T:
        pool = self._pool
        if pool is None:
            raise RuntimeError(f"the store for {self.where} is closed")
        return await run_transaction(
            pool,
            lambda tx: fn(tx, *args, **kwargs),
            url=self._url,
            session=self.session,
            synchronous=synchronous,
            read_only=read_only,
            single_statement=single_statement,
        )

    # --- waiting for changes -----------------------------------------------------
    async def listen(self, timeout: float = 30.0) -> None:
        """Start listening for notifications now (``wait_for_change`` does it on first use)."""
        self.listener.start()
        try:
            await asyncio.wait_for(self.listener.connected.wait(), timeout)
        except TimeoutError:
            raise StoreUnavailable(
                f"Could not listen for changes at {self.where}; workers fall back to polling.", transient=True
            ) from None

    async def _wait_for_change(self, since: int, timeout: float) -> int:
        return await wait_for_change(
            self.listener, self.version, since, timeout,
            poll_interval_s=self.poll_interval_s, wakeups=self.wakeups, parked=self.parked,
        )

    async def _next_due(self) -> float | None:
        return await self._run(listings.next_due, read_only=True)

    # --- submitting ------------------------------------------------------------
    async def _enqueue(
        self, jobs: list[CheckedJob], *, enforce_limits: bool, group: bool, now: float
    ) -> list[Job]:
        added = await self._run(
            admission.enqueue, jobs, defaults=self.defaults, enforce_limits=enforce_limits, group=group,
            now=now,
        )
        admission.log_added(added)
        return added

    async def _request_cancel(self, job_id: int, *, by_user: int, is_admin: bool, now: float) -> Job:
        return await self._run(transitions.request_cancel, job_id, by_user=by_user, is_admin=is_admin, now=now)

    # --- working ---------------------------------------------------------------
    async def _claim(
        self, worker: str, *, lease_s: float, max_jobs: int, now: float, batch_key: str | None
    ) -> list[Claim]:
        claims = None
        if max_jobs == 1 and batch_key is None:  # the common case in one round trip; the full claim when it can't be
            claims = await self._run(scheduler.fast_claim, worker, lease_s=lease_s, now=now, single_statement=True)
        if claims is None:
            claims = await self._run(
                scheduler.claim,
                worker,
                lease_s=lease_s,
                max_jobs=max_jobs,
                now=now,
                batch_key=batch_key,
                synchronous=self.session.synchronous,
            )
        for c in claims:
            log.info("job %d claimed by %s (attempt %d of %d)", c.job.id, worker, c.job.attempts, c.job.max_attempts)
        return claims

    async def _reclaim_expired(self, now: float) -> int:
        return await self._run(scheduler.reclaim_expired, now)

    async def _heartbeat(self, job_id: int, token: str, *, lease_s: float, now: float) -> bool:
        return await self._run(transitions.heartbeat, job_id, token, lease_s=lease_s, now=now, synchronous=False)

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
            synchronous=False,
        )

    async def _finish(self, job_id: int, token: str, *, result_png: bytes, gpu_seconds: float, now: float) -> bool:
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

    async def _save_checkpoint(self, job_id: int, token: str, *, step: int, data: bytes, now: float) -> bool:
        return await self._run(transitions.save_checkpoint, job_id, token, step=step, data=data, now=now)

    async def _checkpoint(self, job_id: int) -> tuple[int, bytes] | None:
        return await self._run(listings.checkpoint, job_id, read_only=True)

    async def _discard_checkpoint(self, job_id: int, token: str) -> bool:
        return await self._run(transitions.discard_checkpoint, job_id, token)

    async def _release(self, job_id: int, token: str, *, now: float) -> bool:
        return await self._run(transitions.release, job_id, token, now=now)

    async def _confirm_cancelled(self, job_id: int, token: str, *, gpu_seconds: float, now: float) -> bool:
        return await self._run(transitions.confirm_cancelled, job_id, token, gpu_seconds=gpu_seconds, now=now)

    # --- reading ---------------------------------------------------------------
    async def _get(self, job_id: int) -> Job | None:
        return await self._run(fetch_job, job_id)

    async def _by_message(self, message_id: int) -> Job | None:
        return await self._run(listings.by_message, message_id)

    async def _set_message(self, job_id: int, message_id: int, *, kind: str) -> Job:
        return await self._run(transitions.set_message, job_id, message_id, kind=kind)

    async def _preview(self, job_id: int) -> tuple[int, bytes] | None:
        return await self._run(listings.preview, job_id)

    async def _result(self, job_id: int) -> bytes | None:
        return await self._run(listings.result, job_id)

    async def _position(self, job_id: int) -> tuple[int, float | None]:
        return await self._run(listings.position, job_id, read_only=True)

    async def _queue(self, guild_id: int, limit: int) -> list[Job]:
        return await self._run(listings.guild_queue, guild_id, limit, read_only=True)

    async def _history(self, user_id: int, guild_id: int | None, limit: int) -> list[Job]:
        return await self._run(listings.history, user_id, guild_id, limit)

    async def _group(self, group_id: int) -> list[Job]:
        return await self._run(listings.group, group_id)

    async def _version(self) -> int:
        return await self._run(listings.current_version)

    async def _changed_since(self, version: int, limit: int) -> list[Job]:
        return await self._run(listings.changed_since, version, limit, read_only=True)

    async def _mark_delivered(self, job_id: int, *, result_message_id: int | None) -> bool:
        return await self._run(transitions.mark_delivered, job_id, result_message_id=result_message_id)

    async def _undelivered(self, limit: int) -> list[Job]:
        return await self._run(listings.undelivered, limit)

    async def _stats(self, now: float) -> dict[str, object]:
        return await self._run(listings.stats, now, read_only=True)

    async def _prune(
        self, *, previews_before: float, results_before: float | None, usage_before_day: int
    ) -> dict[str, int]:
        return await self._run(
            listings.prune,
            previews_before=previews_before,
            results_before=results_before,
            usage_before_day=usage_before_day,
        )

    # --- guild configuration ---------------------------------------------------
    async def _report_presence(self, name: str, kind: str, host: str, state: str, detail: str, now: float) -> None:
        await self._run(presence.report, name, kind, host, state, detail, now, synchronous=False)

    async def _presences(self) -> list[Presence]:
        return await self._run(presence.listing, read_only=True)

    async def _params_in_use(
        self, *, ended_after: float, after_id: int, limit: int
    ) -> list[tuple[int, dict[str, object]]]:
        return await self._run(
            listings.params_in_use, ended_after=ended_after, after_id=after_id, limit=limit, read_only=True
        )

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

    async def _set_style(self, guild_id: int, name: str, text: str, *, by_user: int, now: float) -> dict[str, str]:
        return await self._run(guild_config.set_style, guild_id, name, text, by_user=by_user, now=now)

    async def _delete_style(self, guild_id: int, name: str, *, by_user: int, now: float) -> dict[str, str]:
        return await self._run(guild_config.delete_style, guild_id, name, by_user=by_user, now=now)

async def in_transaction(store: PostgresStore, fn: Callable[[Tx], Awaitable[T]]) -> T:
    """Run ``fn`` on one of the store's transactions (for imports and tests that need raw SQL)."""
    return await store._run(fn)
