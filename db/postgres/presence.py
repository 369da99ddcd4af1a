"""Presence rows on PostgreSQL (see db/presence.py). Not part of the change feed: no one waits for them."""

from __future__ import annotations

from db.clock import from_epoch
from db.postgres.connection import Tx
from db.presence import FORGET_AFTER_S, Presence


async def report(tx: Tx, name: str, kind: str, host: str, state: str, detail: str, now: float) -> None:
    await tx.run(
        "INSERT INTO presence (name, kind, host, state, detail, started_at, seen_at) "
        "VALUES (%s, %s, %s, %s, %s, %s, %s) "
        "ON CONFLICT (name) DO UPDATE SET kind = excluded.kind, host = excluded.host, state = excluded.state, "
        "detail = excluded.detail, seen_at = excluded.seen_at, "
        "started_at = CASE WHEN presence.state = 'stopped' THEN excluded.started_at ELSE presence.started_at END",
        (name, kind, host, state, detail, now, now),
    )
    await tx.run("DELETE FROM presence WHERE seen_at < %s", (now - FORGET_AFTER_S,))


async def listing(tx: Tx) -> list[Presence]:
    rows = await tx.all("SELECT name, kind, host, state, detail, started_at, seen_at FROM presence ORDER BY kind, name")
    out = []
    for r in rows:
        started_at, seen_at = from_epoch(r["started_at"]), from_epoch(r["seen_at"])
        assert started_at is not None and seen_at is not None
        out.append(Presence(r["name"], r["kind"], r["host"], r["state"], r["detail"], started_at, seen_at))
    return out
