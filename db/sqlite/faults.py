"""What SQLite's errors mean for whoever runs vqbot: StoreUnavailable, with a sentence.

A fault is decided by SQLite's primary result code (data, not exception class names):
whether trying again later may help (``transient``), what the operator should do when the
store can't be opened, and what a caller is told when a running store can't read or write.
The running store's messages name no host path: they may reach Discord users.
"""

from __future__ import annotations

import errno
import logging
import sqlite3
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from db.errors import StoreUnavailable
from db.sqlite.connection import rollback

log = logging.getLogger(__name__)
T = TypeVar("T")


@dataclass(frozen=True)
class Fault:
    transient: bool
    at_open: str
    """For the operator at start-up; ``{path}`` is the database file."""
    later: str
    """For a caller of a store that was open; names no path."""


_BUSY = Fault(
    True,
    "The database {path} is locked by another program; stop that program (or the vqbot that "
    "holds it) and start again.",
    "The job database is busy; try again in a few seconds.",
)
_DISK = Fault(
    True,
    "vqbot could not write the database {path}: its disk is full or failing. Free some space "
    "(or check the disk) and start again.",
    "The job database could not be written: its disk is full or failing. Try again later.",
)
_DAMAGED = Fault(
    False,
    "The database {path} is damaged. Restore it from a backup, or move it away to start an "
    "empty one.",
    "The job database is damaged; an operator must restore it from a backup.",
)
FAULTS: dict[int, Fault] = {
    sqlite3.SQLITE_BUSY: _BUSY,
    sqlite3.SQLITE_LOCKED: _BUSY,
    sqlite3.SQLITE_PROTOCOL: _BUSY,
    sqlite3.SQLITE_FULL: _DISK,
    sqlite3.SQLITE_IOERR: _DISK,
    sqlite3.SQLITE_NOMEM: Fault(
        True,
        "SQLite ran out of memory opening {path}; free some memory and start again.",
        "The job database ran out of memory; try again later.",
    ),
    sqlite3.SQLITE_READONLY: Fault(
        False,
        "The database {path} is read-only; make the file and its folder writable by the user "
        "that runs vqbot.",
        "The job database has become read-only; an operator must make it writable again.",
    ),
    sqlite3.SQLITE_CANTOPEN: Fault(
        False,
        "vqbot can't open or create the database {path}; check that its folder exists and is "
        "writable by the user that runs vqbot.",
        "The job database file can't be opened any more; an operator must check it.",
    ),
    sqlite3.SQLITE_PERM: Fault(
        False,
        "vqbot may not open the database {path}; give the user that runs vqbot access to it.",
        "The job database may no longer be opened; an operator must check it.",
    ),
    sqlite3.SQLITE_NOTADB: Fault(
        False,
        "{path} is not an SQLite database; choose another file for vqbot's database (or move "
        "this one away).",
        "The job database file is no longer a database; an operator must restore it.",
    ),
    sqlite3.SQLITE_CORRUPT: _DAMAGED,
}


def fault_of(exc: sqlite3.Error) -> Fault | None:
    """The fault behind an SQLite error, or None for an error in vqbot's own SQL (a bug)."""
    code = getattr(exc, "sqlite_errorcode", None)
    return FAULTS.get(code & 0xFF) if isinstance(code, int) else None


def unavailable_at_open(exc: sqlite3.Error, path: Path) -> StoreUnavailable | None:
    fault = fault_of(exc)
    if fault is None:
        return None
    return StoreUnavailable(fault.at_open.format(path=path), transient=fault.transient)


def unavailable_later(exc: sqlite3.Error) -> StoreUnavailable | None:
    fault = fault_of(exc)
    return None if fault is None else StoreUnavailable(fault.later, transient=fault.transient)


def folder_unavailable(exc: OSError, folder: Path) -> StoreUnavailable:
    """The database's folder could not be made."""
    reason = exc.strerror or str(exc)
    full = exc.errno in (errno.ENOSPC, errno.EDQUOT)
    return StoreUnavailable(
        f"vqbot can't create the folder {folder} for its database ({reason}); create it, or "
        "choose a database path in a folder that exists.",
        transient=full,
    )


def call_guarded(
    conn: sqlite3.Connection, fn: Callable[..., T], args: tuple[Any, ...], kwargs: dict[str, Any]
) -> T:
    """Run one store function on the connection's thread; a locked database, a full disk or
    a damaged file becomes StoreUnavailable, with the transaction rolled back."""
    rollback(conn)  # in case a failed rollback left one open
    try:
        return fn(conn, *args, **kwargs)
    except sqlite3.Error as exc:
        rollback(conn)
        unavailable = unavailable_later(exc)
        if unavailable is None:
            raise
        log.warning("database unavailable (%s): %s", getattr(exc, "sqlite_errorname", "?"), exc)
        raise unavailable from exc
