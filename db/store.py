"""The store's interface: everything bot/ and the worker may ask of the database.

Backends (``SqliteStore``, ``PostgresStore``) implement this protocol by
subclassing ``db.checked_store.CheckedStore``, which defines every method
here once, with its argument checks; callers depend on nothing else. That each
backend is a Store is checked by the type checker, not at run time
(``db.open.BACKENDS``).
Every method is one atomic transaction. Methods that change a claimed job
take the lease ``token`` from ``claim`` and return False (or an ack with
``ok=False``) when the caller no longer holds the job, e.g. because its
lease expired and another worker claimed it: such a call changes nothing.

Any method raises StoreUnavailable(transient=True) when the database is locked past
its busy timeout or its disk is full (nothing changed: try again later), and
InvalidInput (``field`` names the argument) for an argument of the wrong type or out
of range. The /config calls (``set_setting``, ``set_style``, ``delete_style``) raise
nothing but InvalidInput for what an admin typed: UnknownSetting, an InvalidInput, for a
setting key or style name there is none of. A job or message id that no row can have (0, negative, 2**63 or more)
finds nothing, as an id that doesn't exist would. See docs/queue.md.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol, Self

from db.jobs import Claim, Job, NewJob, ProgressAck
from db.presence import Presence
from db.settings import AuditEntry, GuildSettings
from db.wakeups import WaitsForChanges


class Store(WaitsForChanges, Protocol):
    async def close(self) -> None: ...
    async def __aenter__(self) -> Self: ...
    async def __aexit__(self, *exc_info: object) -> None: ...

    # --- waiting (the bot and idle workers) -------------------------------------
    async def wait_for_change(self, since: int, timeout: float) -> int:
        """The newest version once the change feed has something above ``since``, or the
        current one after ``timeout`` seconds (0 to 86,400); see ``db.wakeups`` for how
        each backend wakes its waiters. Start from ``version()``, then hand what it
        returns to ``changed_since``."""
        ...

    async def next_due_in(self) -> float | None:
        """Seconds, by the store's clock, until the earliest retry that waits out its backoff
        (``fail(retry=True)``: ``job.not_before``) may be claimed; 0 when one may be already, None
        when no retry waits. Nothing changes in the store when that moment comes, so nothing
        wakes ``wait_for_change``: an idle worker waits no longer than this."""
        ...

    # --- submitting (the bot) -------------------------------------------------
    async def enqueue(self, new: NewJob) -> Job:
        """Queue a job if the guild's limits allow it.

        Raises InvalidInput (malformed job; ``field`` names it) or
        LimitExceeded (``limit`` names the guild setting, ``retry_at`` says
        when it frees up, if known).
        """
        ...

    async def enqueue_many(
        self, news: Sequence[NewJob], *, enforce_limits: bool = True, group: bool = False
    ) -> list[Job]:
        """Queue several jobs, all or none (limits count the earlier ones in ``news``).

        ``enforce_limits=False`` skips the guild limits (imports, benchmarks);
        the jobs are still validated. ``group=True`` makes them one group (a grid of
        candidates: one member's, in one channel): each gets the first one's id as
        ``group_id``.
        """
        ...

    async def request_cancel(self, job_id: int, *, by_user: int, is_admin: bool) -> Job:
        """Queued: cancelled at once. Running: cancelling until the worker stops.
        Otherwise unchanged. Raises NotFound, or NotAllowed for another member's job."""
        ...

    # --- working (the worker) -------------------------------------------------
    async def claim(
        self, worker: str, *, lease_seconds: float, max_jobs: int = 1, batch_key: str | None = None
    ) -> list[Claim]:
        """Lease the next job(s) fairly: least-served guild, then least-served
        member, then priority and age. First reclaims expired leases. One claim
        never mixes batch keys (``jobspec.batch_key``): with ``batch_key``, only
        jobs of that key (the fair order among them); without it, the first job
        picked fairly sets the key that the rest of the claim shares."""
        ...

    async def reclaim_expired(self) -> int:
        """Take back jobs whose lease expired (``claim`` also does this)."""
        ...

    async def heartbeat(self, job_id: int, token: str, *, lease_seconds: float) -> bool: ...

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
        """Record progress and the latest preview (small JPEG/WebP, replaces the last).

        ``ack.cancel`` asks the worker to stop; ``bool(ack)`` is False if the
        lease is lost. ``lease_seconds`` also extends the lease.
        """
        ...

    async def cancel_requested(self, job_id: int) -> bool: ...

    async def finish(
        self, job_id: int, token: str, *, result_png: bytes, gpu_seconds: float
    ) -> bool:
        """Succeed with the final picture. ``gpu_seconds``: this job's share of GPU
        time for this attempt (batch wall time / batch size)."""
        ...

    async def fail(
        self,
        job_id: int,
        token: str,
        *,
        error: str,
        gpu_seconds: float,
        retry: bool = False,
        count_attempt: bool = True,
    ) -> bool:
        """End the attempt with a user-readable ``error``; ``retry`` queues it again
        while attempts are left, to be claimed no sooner than ``job.not_before`` (backoff
        with jitter, ``db.retries``). ``count_attempt=False`` (with ``retry``: the job was
        not at fault, e.g. other work held the GPU's memory) gives the attempt back, so the
        job is queued again even on its last attempt, with its own backoff; after
        ``RetryBackoff.max_deferrals`` such retries the attempt counts after all. A job
        queued again keeps its checkpoint; one that ends loses it."""
        ...

    async def release(self, job_id: int, token: str) -> bool:
        """Hand the job back (clean shutdown): queued again, the attempt not counted, its ``step``
        the one its next attempt starts at (its checkpoint's, which it keeps; 0 without one).
        A job whose cancel was requested is cancelled instead."""
        ...

    async def confirm_cancelled(self, job_id: int, token: str, *, gpu_seconds: float) -> bool: ...

    # --- checkpoints (resume after a crash or a clean stop) -------------------
    async def save_checkpoint(self, job_id: int, token: str, *, step: int, data: bytes) -> bool:
        """Keep ``data`` (the engine's bytes, at most ``MAX_CHECKPOINT_BYTES``) as the job's
        checkpoint at ``step`` (0 to the job's steps), replacing the previous one, in one
        transaction; False, changing nothing, when the caller no longer holds the job. The next
        claim of the job starts it at ``step`` (``job.step`` and ``job.resumed_from_step``).
        It is deleted when the job ends (finished, failed for good, cancelled) and by ``prune``."""
        ...

    async def checkpoint(self, job_id: int) -> tuple[int, bytes] | None:
        """(step, bytes) of the job's checkpoint, or None when it has none."""
        ...

    async def discard_checkpoint(self, job_id: int, token: str) -> bool:
        """The holder found the checkpoint unusable (torn, another shape or format): delete
        it and start the job over (``step`` 0, ``resumed_from_step`` None); False, changing
        nothing, when the caller no longer holds the job."""
        ...

    # --- reading ---------------------------------------------------------------
    async def get(self, job_id: int) -> Job | None: ...
    async def by_message(self, message_id: int) -> Job | None: ...
    async def set_message(self, job_id: int, message_id: int, *, kind: str = "card") -> Job: ...
    async def preview(self, job_id: int) -> tuple[int, bytes] | None: ...
    async def result(self, job_id: int) -> bytes | None: ...

    async def position(self, job_id: int) -> tuple[int, float | None]:
        """(queued jobs expected to start first, seconds until this one should
        finish or None before any speed is known)."""
        ...

    async def queue(self, guild_id: int, *, limit: int = 50) -> list[Job]: ...
    async def history(
        self, user_id: int, *, guild_id: int | None = None, limit: int = 10
    ) -> list[Job]: ...

    async def group(self, group_id: int) -> list[Job]:
        """The jobs whose ``group_id`` is ``group_id``, oldest first ([] for none)."""
        ...

    async def version(self) -> int:
        """The current store-wide change number (start polling ``changed_since`` here)."""
        ...

    async def changed_since(self, version: int, *, limit: int = 500) -> list[Job]:
        """Jobs whose ``version`` is above ``version``, oldest change first; never
        splits one version, so polling from the highest version seen misses nothing."""
        ...

    async def mark_delivered(self, job_id: int, *, result_message_id: int | None = None) -> bool:
        """Record that the bot posted the finished job's outcome, and (if given) the message
        it posted, in one transaction; False, changing nothing, if the job is not finished
        or was marked already. ``set_message(job_id, id, kind="result")`` still works alone."""
        ...
    async def undelivered(self, *, limit: int = 100) -> list[Job]: ...
    async def stats(self) -> dict[str, object]: ...
    async def prune(
        self,
        *,
        previews_older_than_s: float = 3600.0,
        results_older_than_s: float | None = None,
        usage_older_than_days: int = 35,
    ) -> dict[str, int]:
        """Delete previews of jobs finished long enough ago, delivered results
        (only if ``results_older_than_s`` is given), checkpoints of ended jobs and old daily
        GPU usage; how many of each went (keys ``previews``, ``results``, ``checkpoints``,
        ``gpu_usage``)."""
        ...

    async def params_in_use(
        self, *, ended_within_s: float, after_id: int = 0, limit: int = 500
    ) -> list[tuple[int, dict[str, object]]]:
        """(id, params) of jobs not ended or ended less than ``ended_within_s`` ago, id above
        ``after_id``, in id order, at most ``limit``: page through them to find the files
        (uploads) some job may still read."""
        ...

    # --- presence (db/presence.py) ----------------------------------------------
    async def report_presence(self, name: str, *, kind: str, host: str, state: str, detail: str = "") -> None:
        """Say that process ``name`` (a ``kind`` in PRESENCE_KINDS) on ``host`` is alive and in ``state``,
        now; replaces its earlier report. Touches no job and is not part of the change feed."""
        ...

    async def presences(self) -> list[Presence]:
        """Every process's last report (those silent for a week are forgotten), by kind and name."""
        ...

    # --- guild configuration ---------------------------------------------------
    async def settings(self, guild_id: int) -> GuildSettings: ...
    async def set_setting(
        self, guild_id: int, key: str, value: object, *, by_user: int
    ) -> GuildSettings:
        """Validate and change one setting (None: back to default); audited.
        Raises UnknownSetting (``field="key"``) for a key there is no setting of, or
        InvalidInput (``field``: the key) for a value it refuses."""
        ...

    async def audit(self, guild_id: int, limit: int = 20) -> list[AuditEntry]: ...
    async def styles(self, guild_id: int) -> dict[str, str]: ...
    async def set_style(
        self, guild_id: int, name: str, text: str, *, by_user: int
    ) -> dict[str, str]:
        """Add or change a style preset; audited; the guild's styles after it. Raises
        InvalidInput for a malformed name or text, or when the guild has 100 styles."""
        ...

    async def delete_style(self, guild_id: int, name: str, *, by_user: int) -> dict[str, str]:
        """Remove a style preset (a default one is hidden in this guild); audited. Raises
        UnknownSetting (``field="style"``) when the guild has no such style, as
        ``set_setting`` does for an unknown key, and InvalidInput for a malformed name."""
        ...
