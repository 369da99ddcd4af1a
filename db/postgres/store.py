"""The Store on a PostgreSQL server, for workers on many GPUs and hosts sharing one queue.

Each PostgresStore owns a connection pool (psycopg 3, async): every call
runs as one transaction on a pooled connection, so the bot can serve many
calls at once and many workers (each with its own store) claim in parallel.
See docs/queue.md for how it differs from SqliteStore, and
``db/postgres/listings.py`` for the change feed.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, Self, TypeVar

from db.clock import Clock, SystemClock, to_epoch, utc_day
from db.custom_ids import parse_custom_id
from db.errors import InvalidInput, StoreUnavailable
from db.jobs import Claim, Job, NewJob, ProgressAck, check_new_job, check_seconds
from db.postgres import admission, guild_config, listings, scheduler, transitions
from db.postgres.connection import Pool, SessionSettings, Tx, connect, open_pool, run_transaction, where
from db.postgres.listener import Listener, Wake, Wakeups
from db.postgres.rows import fetch_job
from db.postgres.schema import migrate
from db.settings import AuditEntry, GuildSettings

log = logging.getLogger(__name__)
T = TypeVar("T")


class PostgresStore:
    """``await PostgresStore.open("postgresql://user@host/db")``; see ``db.store.Store``
    for the methods and ``db.wakeups.WaitsForChanges`` for ``wait_for_change``."""

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
    ) -> None:
        self._pool: Pool | None = pool
        self._url = url
        self.where = where(url)
        self.clock = clock
        self.defaults = defaults
        self.session = session
        self.poll_interval_s = poll_interval_s
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
        """
        session = SessionSettings(
            statement_s=statement_timeout_s,
            idle_in_transaction_s=idle_in_transaction_timeout_s,
            lock_s=lock_timeout_s,
            synchronous=bool(durable_claims),
        )
        check_seconds("poll_interval_s", poll_interval_s, positive=True, most=3600)
        check_seconds("listen_retry_s", listen_retry_s, positive=True, most=3600)
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
        )

    async def close(self) -> None:
        pool, self._pool = self._pool, None
        if pool is None:
            return
        await self.listener.close()
        await pool.close()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

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

    def _now(self) -> float:
        return to_epoch(self.clock.now())

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

    async def wait_for_change(self, since: int, timeout: float) -> int:
        """The newest version once it is above ``since`` (woken by NOTIFY, or by the poll
        every ``poll_interval_s``), or the current version after ``timeout`` seconds."""
        check_seconds("timeout", timeout, most=86_400)
        self.listener.start()
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            if not self.listener.connected.is_set():  # a change after this check must notify us
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(
                        self.listener.connected.wait(), max(0.0, min(deadline - loop.time(), self.poll_interval_s))
                    )
            signal = self.listener.next_wake()
            current = await self.version()
            remaining = deadline - loop.time()
            if current > since or remaining <= 0:
                return current
            self.wakeups.parked += 1
            self.parked.set()
            try:
                woke = await self.listener.wait(signal, min(remaining, self.poll_interval_s))
            finally:
                self.parked.clear()
            if woke is Wake.NOTIFIED:
                self.wakeups.notified += 1
            elif woke is Wake.DROPPED:
                self.wakeups.dropped += 1
            else:
                self.wakeups.polled += 1

    # --- submitting ------------------------------------------------------------
    async def enqueue(self, new: NewJob) -> Job:
        (job,) = await self.enqueue_many([new])
        return job

    async def enqueue_many(self, news: Sequence[NewJob], *, enforce_limits: bool = True) -> list[Job]:
        if not news:
            return []
        checked = [check_new_job(new) for new in news]  # InvalidInput before touching the database
        added = await self._run(
            admission.enqueue, checked, defaults=self.defaults, enforce_limits=enforce_limits, now=self._now()
        )
        admission.log_added(added)
        return added

    async def request_cancel(self, job_id: int, *, by_user: int, is_admin: bool) -> Job:
        return await self._run(
            transitions.request_cancel, job_id, by_user=by_user, is_admin=is_admin, now=self._now()
        )

    # --- working ---------------------------------------------------------------
    async def claim(self, worker: str, *, lease_seconds: float, max_jobs: int = 1) -> list[Claim]:
        now = self._now()
        claims = None
        if max_jobs == 1:  # the common case in one round trip; the full claim when it can't be
            claims = await self._run(
                scheduler.fast_claim, worker, lease_s=lease_seconds, now=now, single_statement=True
            )
        if claims is None:
            claims = await self._run(
                scheduler.claim,
                worker,
                lease_s=lease_seconds,
                max_jobs=max_jobs,
                now=now,
                synchronous=self.session.synchronous,
            )
        for c in claims:
            log.info("job %d claimed by %s (attempt %d of %d)", c.job.id, worker, c.job.attempts, c.job.max_attempts)
        return claims

    async def reclaim_expired(self) -> int:
        return await self._run(scheduler.reclaim_expired, self._now())

    async def heartbeat(self, job_id: int, token: str, *, lease_seconds: float) -> bool:
        return await self._run(
            transitions.heartbeat, job_id, token, lease_s=lease_seconds, now=self._now(), synchronous=False
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
            synchronous=False,
        )

    async def cancel_requested(self, job_id: int) -> bool:
        job = await self.get(job_id)
        return job is not None and job.cancel_requested

    async def finish(self, job_id: int, token: str, *, result_png: bytes, gpu_seconds: float) -> bool:
        return await self._run(
            transitions.finish, job_id, token, result_png=result_png, gpu_seconds=gpu_seconds, now=self._now()
        )

    async def fail(
        self, job_id: int, token: str, *, error: str, gpu_seconds: float, retry: bool = False
    ) -> bool:
        return await self._run(
            transitions.fail, job_id, token, error=error, gpu_seconds=gpu_seconds, retry=retry, now=self._now()
        )

    async def release(self, job_id: int, token: str) -> bool:
        return await self._run(transitions.release, job_id, token, now=self._now())

    async def confirm_cancelled(self, job_id: int, token: str, *, gpu_seconds: float) -> bool:
        return await self._run(
            transitions.confirm_cancelled, job_id, token, gpu_seconds=gpu_seconds, now=self._now()
        )

    # --- reading ---------------------------------------------------------------
    async def get(self, job_id: int) -> Job | None:
        return await self._run(fetch_job, job_id)

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
        return await self._run(listings.position, job_id, read_only=True)

    async def queue(self, guild_id: int, *, limit: int = 50) -> list[Job]:
        return await self._run(listings.guild_queue, guild_id, limit, read_only=True)

    async def history(self, user_id: int, *, guild_id: int | None = None, limit: int = 10) -> list[Job]:
        return await self._run(listings.history, user_id, guild_id, limit)

    async def version(self) -> int:
        return await self._run(listings.current_version)

    async def changed_since(self, version: int, *, limit: int = 500) -> list[Job]:
        return await self._run(listings.changed_since, version, limit, read_only=True)

    async def mark_delivered(self, job_id: int) -> bool:
        return await self._run(transitions.mark_delivered, job_id)

    async def undelivered(self, *, limit: int = 100) -> list[Job]:
        return await self._run(listings.undelivered, limit)

    async def stats(self) -> dict[str, object]:
        return await self._run(listings.stats, self._now(), read_only=True)

    async def prune(
        self,
        *,
        previews_older_than_s: float = 3600.0,
        results_older_than_s: float | None = None,
        usage_older_than_days: int = 35,
    ) -> dict[str, int]:
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

    async def set_setting(self, guild_id: int, key: str, value: object, *, by_user: int) -> GuildSettings:
        return await self._run(
            guild_config.set_setting, guild_id, key, value, by_user=by_user, defaults=self.defaults, now=self._now()
        )

    async def audit(self, guild_id: int, limit: int = 20) -> list[AuditEntry]:
        return await self._run(guild_config.load_audit, guild_id, limit)

    async def styles(self, guild_id: int) -> dict[str, str]:
        return await self._run(guild_config.load_styles, guild_id)

    async def set_style(self, guild_id: int, name: str, text: str, *, by_user: int) -> dict[str, str]:
        return await self._run(guild_config.set_style, guild_id, name, text, by_user=by_user, now=self._now())

    async def delete_style(self, guild_id: int, name: str, *, by_user: int) -> dict[str, str]:
        return await self._run(guild_config.delete_style, guild_id, name, by_user=by_user, now=self._now())


async def in_transaction(store: PostgresStore, fn: Callable[[Tx], Awaitable[T]]) -> T:
    """Run ``fn`` on one of the store's transactions (for imports and tests that need raw SQL)."""
    return await store._run(fn)
