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
    """A guild setting or style that does not exist: what every /config call raises for a
    key it doesn't know (``set_setting``'s key, ``delete_style``'s name).

    ``field`` is ``"key"`` for a setting and ``"style"`` for a style; ``key`` is the
    name asked for, ``valid`` the names there are.
    """

    def __init__(self, key: str, valid: list[str], *, field: str = "key", message: str | None = None) -> None:
        shown = _shown(key)
        super().__init__(
            field, message or f"There is no setting called {shown}. Valid settings: {', '.join(valid)}."
        )
        self.key = key
        self.valid = valid

    @classmethod
    def style(cls, name: str, valid: list[str]) -> UnknownSetting:
        """No style ``name`` in this guild (``valid``: the ones it has)."""
        message = f"There is no style called {_shown(name)} in this server; /config styles lists its styles."
        return cls(name, valid, field="style", message=message)

    def __str__(self) -> str:  # KeyError would otherwise repr() the message
        return self.message


def _shown(key: str) -> str:
    return repr(key) if len(key) <= 60 else repr(key[:57]) + "..."


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
