"""The Store's public methods, written once for every backend: arguments checked, then handed on.

Each public method of ``db.store.Store`` is defined here and nowhere else. It
checks its arguments with ``db.checks`` (InvalidInput naming the field), answers
at once what no row can change (a job id of 0 or 2**64 finds nothing), and only
then calls the backend's own method of the same name with an underscore
(``claim`` -> ``_claim``, declared in ``db.backend``), passing clean values
and the clock's ``now``. A backend subclasses ``CheckedStore`` and implements
the underscore methods; it never defines a public Store method itself
(tests/db/test_store_contract.py checks that), so no backend can skip a check
the others make.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Self

from db.backend import Backend
from db.checks import (
    MAX_SNOWFLAKE,
    check_batch_key,
    check_bool,
    check_bytes,
    check_gpu_seconds,
    check_id,
    check_int,
    check_lease,
    check_limit,
    check_seconds,
    check_text,
    check_token,
    check_worker,
    describe,
    lookup_id,
)
from db.clock import to_epoch, utc_day
from db.errors import InvalidInput, NotFound
from db.jobs import (
    MAX_BATCH,
    MAX_CHECKPOINT_BYTES,
    MAX_PREVIEW_BYTES,
    MAX_RESULT_BYTES,
    MESSAGE_COLUMNS,
    CheckedJob,
    Claim,
    Job,
    NewJob,
    ProgressAck,
    check_new_job,
    storable_error,
)
from db.presence import MAX_DETAIL, MAX_HOST, MAX_NAME, MAX_STATE, PRESENCE_KINDS, Presence
from db.settings import (
    AuditEntry,
    GuildSettings,
    check_style_name,
    check_style_text,
    setting,
)

MAX_VERSION = 2**63 - 1
MAX_STEP = 10**9
MAX_STEPS_PER_S = 1e6
MAX_PRUNE_DAYS = 100_000
MAX_WAIT_S = 86_400.0


def held(job_id: object, token: object) -> tuple[int, str] | None:
    """(job id, token) checked, or None when no job can match them (the caller holds nothing)."""
    found, checked = lookup_id("job_id", job_id), check_token(token)
    return None if found is None else (found, checked)


def check_new_jobs(news: object) -> list[CheckedJob]:
    """Every job of ``news`` checked, in order (InvalidInput before anything is stored)."""
    if isinstance(news, (str, bytes)) or not isinstance(news, Iterable):
        raise InvalidInput("job", f"enqueue_many takes a list of NewJob, got {type(news).__name__}.")
    return [check_new_job(new) for new in news]


def check_one_submission(jobs: list[CheckedJob]) -> None:
    """A group's jobs are one member's in one channel (InvalidInput otherwise)."""
    first = jobs[0].new
    for job in jobs[1:]:
        where = (job.new.guild_id, job.new.channel_id, job.new.user_id)
        if where != (first.guild_id, first.channel_id, first.user_id):
            raise InvalidInput(
                "group", "The jobs of one group must be one member's, in one channel of one server."
            )


class CheckedStore(Backend):
    """The checked front of every backend; see ``db.store.Store`` for what each method does
    and ``db.backend.Backend`` for what a backend implements."""

    def _now(self) -> float:
        return to_epoch(self.clock.now())

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    # --- waiting for changes -------------------------------------------------------
    async def wait_for_change(self, since: int, timeout: float) -> int:
        since = check_int("since", since, 0, MAX_VERSION)
        timeout = check_seconds("timeout", timeout, most=MAX_WAIT_S)
        return await self._wait_for_change(since, timeout)

    async def next_due_in(self) -> float | None:
        due = await self._next_due()
        return None if due is None else max(0.0, due - self._now())

    # --- submitting ----------------------------------------------------------------
    async def enqueue(self, new: NewJob) -> Job:
        (job,) = await self.enqueue_many([new])
        return job

    async def enqueue_many(
        self, news: Sequence[NewJob], *, enforce_limits: bool = True, group: bool = False
    ) -> list[Job]:
        enforce = check_bool("enforce_limits", enforce_limits)
        grouped = check_bool("group", group)
        jobs = check_new_jobs(news)
        if not jobs:
            return []
        if grouped:
            check_one_submission(jobs)
        return await self._enqueue(jobs, enforce_limits=enforce, group=grouped, now=self._now())

    async def request_cancel(self, job_id: int, *, by_user: int, is_admin: bool) -> Job:
        found = lookup_id("job_id", job_id)
        by_user = check_int("by_user", by_user, 0, MAX_SNOWFLAKE)  # 0: no member (the operator)
        is_admin = check_bool("is_admin", is_admin)
        if found is None:
            raise NotFound.job(job_id)
        return await self._request_cancel(found, by_user=by_user, is_admin=is_admin, now=self._now())

    # --- working -------------------------------------------------------------------
    async def claim(
        self, worker: str, *, lease_seconds: float, max_jobs: int = 1, batch_key: str | None = None
    ) -> list[Claim]:
        name = check_worker(worker)
        lease_s = check_lease(lease_seconds)
        count = check_int("max_jobs", max_jobs, 1, MAX_BATCH)
        key = None if batch_key is None else check_batch_key(batch_key)
        return await self._claim(name, lease_s=lease_s, max_jobs=count, now=self._now(), batch_key=key)

    async def reclaim_expired(self) -> int:
        return await self._reclaim_expired(self._now())

    async def heartbeat(self, job_id: int, token: str, *, lease_seconds: float) -> bool:
        lease_s = check_lease(lease_seconds)
        job = held(job_id, token)
        if job is None:
            return False
        return await self._heartbeat(*job, lease_s=lease_s, now=self._now())

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
        step = check_int("step", step, 0, MAX_STEP)
        speed = None if steps_per_s is None else check_seconds("steps_per_s", steps_per_s, most=MAX_STEPS_PER_S)
        lease_s = None if lease_seconds is None else check_lease(lease_seconds)
        image = None if preview is None else check_bytes("preview", preview, MAX_PREVIEW_BYTES)
        job = held(job_id, token)
        if job is None:
            return ProgressAck(ok=False)
        return await self._report_progress(
            *job, step=step, preview=image, steps_per_s=speed, lease_s=lease_s, now=self._now()
        )

    async def cancel_requested(self, job_id: int) -> bool:
        job = await self.get(job_id)
        return job is not None and job.cancel_requested

    async def finish(
        self, job_id: int, token: str, *, result_png: bytes, gpu_seconds: float
    ) -> bool:
        png = check_bytes("result_png", result_png, MAX_RESULT_BYTES)
        gpu_s = check_gpu_seconds(gpu_seconds)
        job = held(job_id, token)
        if job is None:
            return False
        return await self._finish(*job, result_png=png, gpu_seconds=gpu_s, now=self._now())

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
        gpu_s = check_gpu_seconds(gpu_seconds)
        text = storable_error(error)
        again = check_bool("retry", retry)
        counts = check_bool("count_attempt", count_attempt)
        job = held(job_id, token)
        if job is None:
            return False
        return await self._fail(
            *job,
            error=text,
            gpu_seconds=gpu_s,
            retry=again,
            count_attempt=counts,
            draw=self.retry_backoff.draw(),
            now=self._now(),
        )

    async def release(self, job_id: int, token: str) -> bool:
        job = held(job_id, token)
        if job is None:
            return False
        return await self._release(*job, now=self._now())

    async def confirm_cancelled(self, job_id: int, token: str, *, gpu_seconds: float) -> bool:
        gpu_s = check_gpu_seconds(gpu_seconds)
        job = held(job_id, token)
        if job is None:
            return False
        return await self._confirm_cancelled(*job, gpu_seconds=gpu_s, now=self._now())

    # --- checkpoints -----------------------------------------------------------------
    async def save_checkpoint(self, job_id: int, token: str, *, step: int, data: bytes) -> bool:
        step = check_int("step", step, 0, MAX_STEP)
        blob = check_bytes("data", data, MAX_CHECKPOINT_BYTES)
        job = held(job_id, token)
        if job is None:
            return False
        return await self._save_checkpoint(*job, step=step, data=blob, now=self._now())

    async def checkpoint(self, job_id: int) -> tuple[int, bytes] | None:
        found = lookup_id("job_id", job_id)
        return None if found is None else await self._checkpoint(found)

    async def discard_checkpoint(self, job_id: int, token: str) -> bool:
        job = held(job_id, token)
        if job is None:
            return False
        return await self._discard_checkpoint(*job)

    # --- reading -------------------------------------------------------------------
    async def get(self, job_id: int) -> Job | None:
        found = lookup_id("job_id", job_id)
        return None if found is None else await self._get(found)

    async def by_message(self, message_id: int) -> Job | None:
        found = lookup_id("message_id", message_id)
        return None if found is None else await self._by_message(found)

    async def set_message(self, job_id: int, message_id: int, *, kind: str = "card") -> Job:
        if not isinstance(kind, str) or kind not in MESSAGE_COLUMNS:
            raise InvalidInput(
                "kind", f"kind must be one of {sorted(MESSAGE_COLUMNS)}, got {describe(kind)}."
            )
        message = check_id("message_id", message_id)
        found = lookup_id("job_id", job_id)
        if found is None:
            raise NotFound.job(job_id)
        return await self._set_message(found, message, kind=kind)

    async def preview(self, job_id: int) -> tuple[int, bytes] | None:
        found = lookup_id("job_id", job_id)
        return None if found is None else await self._preview(found)

    async def result(self, job_id: int) -> bytes | None:
        found = lookup_id("job_id", job_id)
        return None if found is None else await self._result(found)

    async def position(self, job_id: int) -> tuple[int, float | None]:
        found = lookup_id("job_id", job_id)
        if found is None:
            raise NotFound.job(job_id)
        return await self._position(found)

    async def queue(self, guild_id: int, *, limit: int = 50) -> list[Job]:
        return await self._queue(check_id("guild_id", guild_id), check_limit(limit))

    async def history(
        self, user_id: int, *, guild_id: int | None = None, limit: int = 10
    ) -> list[Job]:
        user = check_id("user_id", user_id)
        count = check_limit(limit)
        guild = None if guild_id is None else check_id("guild_id", guild_id)
        return await self._history(user, guild, count)

    async def group(self, group_id: int) -> list[Job]:
        found = lookup_id("group_id", group_id)
        return [] if found is None else await self._group(found)

    async def version(self) -> int:
        return await self._version()

    async def changed_since(self, version: int, *, limit: int = 500) -> list[Job]:
        since = check_int("version", version, 0, MAX_VERSION)
        return await self._changed_since(since, check_limit(limit))

    async def mark_delivered(self, job_id: int, *, result_message_id: int | None = None) -> bool:
        message = None if result_message_id is None else check_id("result_message_id", result_message_id)
        found = lookup_id("job_id", job_id)
        return False if found is None else await self._mark_delivered(found, result_message_id=message)

    async def undelivered(self, *, limit: int = 100) -> list[Job]:
        return await self._undelivered(check_limit(limit))

    async def stats(self) -> dict[str, object]:
        return await self._stats(self._now())

    async def prune(
        self,
        *,
        previews_older_than_s: float = 3600.0,
        results_older_than_s: float | None = None,
        usage_older_than_days: int = 35,
    ) -> dict[str, int]:
        previews_s = check_seconds("previews_older_than_s", previews_older_than_s)
        results_s = (
            None
            if results_older_than_s is None
            else check_seconds("results_older_than_s", results_older_than_s)
        )
        days = check_int("usage_older_than_days", usage_older_than_days, 0, MAX_PRUNE_DAYS)
        now = self._now()
        return await self._prune(
            previews_before=now - previews_s,
            results_before=None if results_s is None else now - results_s,
            usage_before_day=utc_day(now) - days,
        )

    # --- presence --------------------------------------------------------------------
    async def report_presence(self, name: str, *, kind: str, host: str, state: str, detail: str = "") -> None:
        if kind not in PRESENCE_KINDS:
            raise InvalidInput("kind", f"kind must be one of {', '.join(PRESENCE_KINDS)}, got {kind!r}.")
        name = check_text("name", name, most=MAX_NAME, printable=True)
        if not name.strip():
            raise InvalidInput("name", "name must not be empty.")
        await self._report_presence(
            name, kind, check_text("host", host, most=MAX_HOST, printable=True),
            check_text("state", state, most=MAX_STATE, printable=True),
            check_text("detail", detail, most=MAX_DETAIL, printable=True), self._now(),
        )

    async def presences(self) -> list[Presence]:
        return await self._presences()

    async def params_in_use(
        self, *, ended_within_s: float, after_id: int = 0, limit: int = 500
    ) -> list[tuple[int, dict[str, object]]]:
        within = check_seconds("ended_within_s", ended_within_s)
        after = check_int("after_id", after_id, 0, MAX_VERSION)
        return await self._params_in_use(
            ended_after=self._now() - within, after_id=after, limit=check_limit(limit)
        )

    # --- guild configuration -------------------------------------------------------
    async def settings(self, guild_id: int) -> GuildSettings:
        return await self._settings(check_id("guild_id", guild_id))

    async def set_setting(
        self, guild_id: int, key: str, value: object, *, by_user: int
    ) -> GuildSettings:
        guild = check_id("guild_id", guild_id)
        user = check_id("by_user", by_user)
        spec = setting(key)
        new_value = None if value is None else spec.coerce(value)
        return await self._set_setting(guild, spec.key, new_value, by_user=user, now=self._now())

    async def audit(self, guild_id: int, limit: int = 20) -> list[AuditEntry]:
        return await self._audit(check_id("guild_id", guild_id), check_limit(limit))

    async def styles(self, guild_id: int) -> dict[str, str]:
        return await self._styles(check_id("guild_id", guild_id))

    async def set_style(
        self, guild_id: int, name: str, text: str, *, by_user: int
    ) -> dict[str, str]:
        guild = check_id("guild_id", guild_id)
        user = check_id("by_user", by_user)
        clean_name, clean_text = check_style_name(name), check_style_text(text)
        return await self._set_style(guild, clean_name, clean_text, by_user=user, now=self._now())

    async def delete_style(self, guild_id: int, name: str, *, by_user: int) -> dict[str, str]:
        guild = check_id("guild_id", guild_id)
        user = check_id("by_user", by_user)
        clean_name = check_style_name(name)
        return await self._delete_style(guild, clean_name, by_user=user, now=self._now())
