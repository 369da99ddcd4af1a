"""Typed errors raised by the store.

``str(error)`` is always a message a user can read: one or two sentences
saying what went wrong and what to do. The attributes carry the details
for code (which limit, which field, when to retry).
"""

from __future__ import annotations

from datetime import datetime


class StoreError(Exception):
    """Base class of every error the store raises on purpose."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class InvalidInput(StoreError, ValueError):
    """A value was malformed or out of range; nothing was stored.

    ``field`` names the offending input, e.g. ``"prompt"`` or ``"params.steps"``.
    """

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field


class UnknownSetting(InvalidInput, KeyError):
    """A guild setting or style key that does not exist."""

    def __init__(self, key: str, valid: list[str]) -> None:
        shown = repr(key) if len(key) <= 60 else repr(key[:57]) + "..."
        super().__init__(
            "key", f"There is no setting called {shown}. Valid settings: {', '.join(valid)}."
        )
        self.key = key
        self.valid = valid

    def __str__(self) -> str:  # KeyError would otherwise repr() the message
        return self.message


class LimitExceeded(StoreError):
    """A guild limit refused a job.

    ``limit`` is the guild setting that refused it (a key of ``SETTINGS``,
    e.g. ``"max_queued_per_user"`` or ``"cooldown_s"``); ``retry_at`` is when
    the limit frees up (UTC), or None when that depends on other jobs
    finishing or on an admin changing the setting.
    """

    def __init__(self, limit: str, retry_at: datetime | None, message: str) -> None:
        super().__init__(message)
        self.limit = limit
        self.retry_at = retry_at


class NotFound(StoreError, LookupError):
    """A job (or other row) that does not exist."""

    @classmethod
    def job(cls, job_id: int) -> NotFound:
        number = f"Job {job_id}" if job_id.bit_length() <= 64 else "That job"
        return cls(f"{number} does not exist. Check the job number and try again.")


class NotAllowed(StoreError, PermissionError):
    """The caller may not do this to this job (e.g. cancel another user's job)."""


class StoreUnavailable(StoreError):
    """The database can't be opened or written now (a locked or full disk, a file that is no
    database, a folder without write permission, an unreachable server).

    ``transient`` is True when trying again later may succeed (locked, full disk, server down),
    False when the operator must change something first (wrong path, not a database).
    """

    def __init__(self, message: str, *, transient: bool) -> None:
        super().__init__(message)
        self.transient = transient


class SchemaTooNew(StoreUnavailable):
    """The database was written by a newer vqbot than this one."""

    def __init__(self, message: str) -> None:
        super().__init__(message, transient=False)
