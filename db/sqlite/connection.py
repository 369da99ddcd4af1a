"""Opening SQLite connections the way the store needs them, and transactions."""

from __future__ import annotations

import logging
import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from db.errors import InvalidInput, StoreUnavailable

log = logging.getLogger(__name__)

MIN_SQLITE = (3, 35, 0)  # RETURNING, and upserts with DO UPDATE
SYNCHRONOUS = ("OFF", "NORMAL", "FULL", "EXTRA")
# Checkpoint the WAL into the database every ~16 MiB instead of SQLite's 4 MiB:
# a checkpoint (two fsyncs) lands on whichever commit crosses the mark, so
# rarer checkpoints keep it out of the 99th percentile of claim latency.
WAL_AUTOCHECKPOINT_PAGES = 4000
WAL_SIZE_LIMIT_BYTES = 64 * 1024 * 1024


def connect(
    path: str | Path, *, busy_timeout_s: float = 10.0, synchronous: str = "NORMAL"
) -> sqlite3.Connection:
    """A connection in autocommit mode with WAL, busy_timeout and foreign keys on.

    ``synchronous=NORMAL`` (the default) survives any process crash; after a
    power loss the last few commits may be missing but the file is intact.
    ``FULL`` also survives power loss, at one fsync per commit.
    """
    if sqlite3.sqlite_version_info < MIN_SQLITE:
        raise StoreUnavailable(
            f"vqbot needs SQLite {'.'.join(map(str, MIN_SQLITE))} or newer; "
            f"this Python has {sqlite3.sqlite_version}. Use a newer Python build.",
            transient=False,
        )
    if not isinstance(synchronous, str) or synchronous.upper() not in SYNCHRONOUS:
        raise InvalidInput(
            "synchronous", f"synchronous must be one of {SYNCHRONOUS}, got {synchronous!r}."
        )
    conn = sqlite3.connect(path, isolation_level=None, timeout=busy_timeout_s)
    try:
        conn.row_factory = sqlite3.Row
        # PRAGMAs take no bound parameters; the values are checked above or constants.
        conn.execute(f"PRAGMA busy_timeout = {int(busy_timeout_s * 1000)}")
        mode = conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
        if mode.lower() != "wal":
            raise StoreUnavailable(
                f"SQLite could not switch {path} to WAL mode (it stays {mode!r}); keep the "
                "database on a local disk.",
                transient=False,
            )
        conn.execute("PRAGMA foreign_keys = ON")
        conn.execute(f"PRAGMA synchronous = {synchronous.upper()}")
        conn.execute(f"PRAGMA wal_autocheckpoint = {WAL_AUTOCHECKPOINT_PAGES}")
        conn.execute(f"PRAGMA journal_size_limit = {WAL_SIZE_LIMIT_BYTES}")
    except BaseException:
        conn.close()
        raise
    return conn


@contextmanager
def write(conn: sqlite3.Connection) -> Iterator[sqlite3.Connection]:
    """A write transaction: takes the write lock at once, commits or rolls back."""
    conn.execute("BEGIN IMMEDIATE")
    try:
        yield conn
        conn.execute("COMMIT")
    except BaseException:
        rollback(conn)
        raise


@contextmanager
def read(conn: sqlite3.Connection) -> Iterator[sqlite3.Connection]:
    """A read transaction: every statement inside sees the same snapshot."""
    conn.execute("BEGIN")
    try:
        yield conn
        conn.execute("COMMIT")
    except BaseException:
        rollback(conn)
        raise


def rollback(conn: sqlite3.Connection) -> None:
    """End the open transaction, if SQLite has not already (it rolls back on its own after a
    full disk or an I/O error), without hiding the error that brought us here."""
    if not conn.in_transaction:
        return
    try:
        conn.execute("ROLLBACK")
    except sqlite3.Error as exc:
        log.warning("rollback failed (%s); the next transaction tries again", exc)


def next_version(conn: sqlite3.Connection) -> int:
    """Take the next store-wide change number (inside a write transaction)."""
    row = conn.execute(
        "UPDATE store_state SET version = version + 1 WHERE id = 1 RETURNING version"
    ).fetchone()
    return int(row[0])
