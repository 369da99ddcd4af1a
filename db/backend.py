"""What a store backend implements: the Store's methods with their arguments already checked.

``db.checked_store.CheckedStore`` subclasses ``Backend`` and defines the
public methods; a backend (``SqliteStore``, ``PostgresStore``) subclasses
CheckedStore and implements these, each named after its public method with
an underscore (``claim`` -> ``_claim``). Every argument arrives clean: ids
in range, text checked, numbers finite, ``now`` from the store's clock.
An id no row can have never gets here (the public method answers it).
"""

from __future__ import annotations

import asyncio
from abc import ABC, abstractmethod

from db.clock import Clock
from db.jobs import CheckedJob, Claim, Job, ProgressAck
from db.presence import Presence
from db.retries import RetryBackoff
from db.settings import AuditEntry, GuildSettings, SettingValue
from db.wakeups import Wakeups


class Backend(ABC):
    """The abstract half of every store; a subclass that leaves one method out can't be made."""

    clock: Clock
    defaults: GuildSettings
    retry_backoff: RetryBackoff
    """The waits between a failed job's attempts (``db.retries``)."""
    wakeups: Wakeups
    """What woke ``wait_for_change``'s waiters (``db.wakeups``)."""
    parked: asyncio.Event
    """Set while a ``wait_for_change`` sleeps (tests start their change then)."""

    @abstractmethod
    async def close(self) -> None: ...

    @abstractmethod
    async def _wait_for_change(self, since: int, timeout: float) -> int:
        """Return once the feed's version is above ``since`` (or at ``timeout``), counting
        what woke the waiter in ``wakeups`` and setting ``parked`` while it sleeps."""

    @abstractmethod
    async def _next_due(self) -> float | None:
        """The earliest ``not_before`` (epoch seconds) of a queued job that waits, or None."""

    @abstractmethod
    async def _enqueue(
        self, jobs: list[CheckedJob], *, enforce_limits: bool, group: bool, now: float
    ) -> list[Job]: ...

    @abstractmethod
    async def _request_cancel(
        self, job_id: int, *, by_user: int, is_admin: bool, now: float
    ) -> Job: ...

    @abstractmethod
    async def _claim(
        self, worker: str, *, lease_s: float, max_jobs: int, now: float, batch_key: str | None
    ) -> list[Claim]: ...

    @abstractmethod
    async def _reclaim_expired(self, now: float) -> int: ...

    @abstractmethod
    async def _heartbeat(self, job_id: int, token: str, *, lease_s: float, now: float) -> bool: ...

    @abstractmethod
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
    ) -> ProgressAck: ...

    @abstractmethod
    async def _finish(
        self, job_id: int, token: str, *, result_png: bytes, gpu_seconds: float, now: float
    ) -> bool: ...

    @abstractmethod
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
        """``draw``: the jitter draw for the wait, should the job be queued again."""

    @abstractmethod
    async def _save_checkpoint(
        self, job_id: int, token: str, *, step: int, data: bytes, now: float
    ) -> bool: ...

    @abstractmethod
    async def _checkpoint(self, job_id: int) -> tuple[int, bytes] | None: ...

    @abstractmethod
    async def _discard_checkpoint(self, job_id: int, token: str) -> bool: ...

    @abstractmethod
    async def _release(self, job_id: int, token: str, *, now: float) -> bool: ...

    @abstractmethod
    async def _confirm_cancelled(
        self, job_id: int, token: str, *, gpu_seconds: float, now: float
    ) -> bool: ...

    @abstractmethod
    async def _get(self, job_id: int) -> Job | None: ...

    @abstractmethod
    async def _by_message(self, message_id: int) -> Job | None: ...

    @abstractmethod
    async def _set_message(self, job_id: int, message_id: int, *, kind: str) -> Job: ...

    @abstractmethod
    async def _preview(self, job_id: int) -> tuple[int, bytes] | None: ...

    @abstractmethod
    async def _result(self, job_id: int) -> bytes | None: ...

    @abstractmethod
    async def _position(self, job_id: int) -> tuple[int, float | None]: ...

    @abstractmethod
    async def _queue(self, guild_id: int, limit: int) -> list[Job]: ...

    @abstractmethod
    async def _history(self, user_id: int, guild_id: int | None, limit: int) -> list[Job]: ...

    @abstractmethod
    async def _group(self, group_id: int) -> list[Job]: ...

    @abstractmethod
    async def _version(self) -> int: ...

    @abstractmethod
    async def _changed_since(self, version: int, limit: int) -> list[Job]: ...

    @abstractmethod
    async def _mark_delivered(self, job_id: int, *, result_message_id: int | None) -> bool: ...

    @abstractmethod
    async def _undelivered(self, limit: int) -> list[Job]: ...

    @abstractmethod
    async def _stats(self, now: float) -> dict[str, object]: ...

    @abstractmethod
    async def _prune(
        self, *, previews_before: float, results_before: float | None, usage_before_day: int
    ) -> dict[str, int]: ...

    @abstractmethod
    async def _report_presence(self, name: str, kind: str, host: str, state: str, detail: str, now: float) -> None: ...

    @abstractmethod
    async def _presences(self) -> list[Presence]: ...

    @abstractmethod
    async def _params_in_use(
        self, *, ended_after: float, after_id: int, limit: int
    ) -> list[tuple[int, dict[str, object]]]: ...

    @abstractmethod
    async def _settings(self, guild_id: int) -> GuildSettings: ...

    @abstractmethod
    async def _set_setting(
        self, guild_id: int, key: str, value: SettingValue | None, *, by_user: int, now: float
    ) -> GuildSettings: ...

    @abstractmethod
    async def _audit(self, guild_id: int, limit: int) -> list[AuditEntry]: ...

    @abstractmethod
    async def _styles(self, guild_id: int) -> dict[str, str]: ...

    @abstractmethod
    async def _set_style(
        self, guild_id: int, name: str, text: str, *, by_user: int, now: float
    ) -> dict[str, str]: ...

    @abstractmethod
    async def _delete_style(
        self, guild_id: int, name: str, *, by_user: int, now: float
    ) -> dict[str, str]: ...

