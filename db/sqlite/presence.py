"""Presence rows on SQLite (see db/presence.py)."""

from __future__ import annotations

import sqlite3

from db.clock import from_epoch
from db.presence import FORGET_AFTER_S, Presence
from db.sqlite.connection import read, write


def report(conn: sqlite3.Connection, name: str, kind: str, host: str, state: str, detail: str, now: float) -> None:
    with write(conn):
        conn.execute(
            "INSERT INTO presence (name, kind, host, state, detail, started_at, seen_at) VALUES (?, ?, ?, ?, ?, ?, ?) "
            "ON CONFLICT (name) DO UPDATE SET kind = excluded.kind, host = excluded.host, state = excluded.state, "
            "detail = excluded.detail, seen_at = excluded.seen_at, "
            "started_at = CASE WHEN presence.state = 'stopped' THEN excluded.started_at ELSE presence.started_at END",
            (name, kind, host, state, detail, now, now),
        )
        conn.execute("DELETE FROM presence WHERE seen_at < ?", (now - FORGET_AFTER_S,))


def listing(conn: sqlite3.Connection) -> list[Presence]:
    with read(conn):
        rows = conn.execute(
            "SELECT name, kind, host, state, detail, started_at, seen_at FROM presence ORDER BY kind, name"
        ).fetchall()
    return [_presence(*row) for row in rows]


def _presence(name: str, kind: str, host: str, state: str, detail: str, started: float, seen: float) -> Presence:
    started_at, seen_at = from_epoch(started), from_epoch(seen)
    assert started_at is not None and seen_at is not None
    return Presence(name, kind, host, state, detail, started_at, seen_at)
