"""Opening the SQLite file the store lives in: its folder, the connection, the schema, and a
write that proves the file can be written; every fault on the way is StoreUnavailable."""

from __future__ import annotations

import logging
import os
import sqlite3
from pathlib import Path

from db.errors import InvalidInput, StoreUnavailable
from db.migrations import migrate
from db.sqlite.connection import connect, rollback
from db.sqlite.faults import folder_unavailable, unavailable_at_open

log = logging.getLogger(__name__)


def database_path(path: object) -> Path:
    if not isinstance(path, (str, os.PathLike)):
        raise InvalidInput("path", f"The database path must be text, got {type(path).__name__}.")
    try:
        where = Path(path)
    except TypeError:  # a PathLike that gives bytes
        where = None
    if where is None or "\x00" in str(where):
        raise InvalidInput(
            "path", "The database path must be text without NUL characters; choose another path."
        )
    return where


def open_database(path: Path, busy_timeout_s: float, synchronous: str) -> sqlite3.Connection:
    """Connect, migrate and check the file can be written, or raise StoreUnavailable."""
    try:
        if path.is_dir():
            raise StoreUnavailable(
                f"{path} is a folder; give the path of a database file in it, e.g. "
                f"{path / 'vqbot.sqlite3'}.",
                transient=False,
            )
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise folder_unavailable(exc, path.parent) from None
    try:
        conn = connect(path, busy_timeout_s=busy_timeout_s, synchronous=synchronous)
    except sqlite3.Error as exc:
        raise _unopenable(exc, path) from None
    try:
        applied = migrate(conn)
        _check_writable(conn)
    except sqlite3.Error as exc:
        conn.close()
        raise _unopenable(exc, path) from None
    except BaseException:
        conn.close()
        raise
    if applied:
        log.info("database %s migrated to version %d", path, applied[-1])
    return conn


def _unopenable(exc: sqlite3.Error, path: Path) -> StoreUnavailable:
    log.debug("opening %s failed: %s (%s)", path, exc, getattr(exc, "sqlite_errorname", "?"))
    return unavailable_at_open(exc, path) or StoreUnavailable(
        f"vqbot can't use {path} as its database ({exc}); choose another file for it.",
        transient=False,
    )


def _check_writable(conn: sqlite3.Connection) -> None:
    """Write in a transaction that is rolled back: a read-only file fails here, not later."""
    conn.execute("BEGIN IMMEDIATE")
    try:
        conn.execute("UPDATE store_state SET version = version WHERE id = 1")
    finally:
        rollback(conn)


def close_database(conn: sqlite3.Connection) -> None:
    try:
        conn.execute("PRAGMA optimize")  # refresh planner statistics where they are stale
    except sqlite3.Error as exc:  # e.g. other writers kept the lock: next time, then
        log.debug("PRAGMA optimize skipped: %s", exc)
    finally:
        conn.close()
