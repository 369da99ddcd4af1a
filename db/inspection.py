"""What is in a database, read without changing it (for ``vqbot doctor``): no file is created, no
migration runs. Opening a store for work (``open_store``) creates and upgrades; this only looks."""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass, field
from pathlib import Path

from db.errors import StoreUnavailable
from db.open import backend_of, sqlite_path


@dataclass(frozen=True)
class DatabaseReport:
    backend: str  # "sqlite" or "postgres"
    where: str  # the file, or host/port/database (never a password)
    exists: bool
    schema: int = 0  # migrations applied
    latest: int = 0  # migrations this vqbot has
    jobs: dict[str, int] = field(default_factory=dict)  # job count by state


async def inspect_database(spec: str | Path) -> DatabaseReport:
    """Report on the database ``spec`` names; StoreUnavailable (one sentence) when it can't be read."""
    if backend_of(spec) == "postgres":
        return await _inspect_postgres(str(spec).strip())
    return _inspect_sqlite(sqlite_path(spec))


def _inspect_sqlite(path: Path) -> DatabaseReport:
    from db.migrations import MIGRATIONS

    latest = len(MIGRATIONS)
    if not path.exists():
        return DatabaseReport("sqlite", str(path), False, latest=latest)
    if not path.is_file():
        raise StoreUnavailable(f"VQBOT_DATABASE {path} is a folder; name a file such as {path / 'vqbot.sqlite3'}.",
                               transient=False)
    try:
        conn = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True, timeout=5.0)
    except sqlite3.Error as exc:
        raise StoreUnavailable(f"The database {path} can't be opened ({exc}).", transient=True) from None
    try:
        schema = int(conn.execute("PRAGMA user_version").fetchone()[0])
        jobs = dict(conn.execute("SELECT state, COUNT(*) FROM jobs GROUP BY state").fetchall()) if schema else {}
    except sqlite3.DatabaseError as exc:
        raise StoreUnavailable(f"{path} is not a vqbot database ({exc}).", transient=False) from None
    finally:
        conn.close()
    return DatabaseReport("sqlite", str(path), True, schema, latest, jobs)


async def _inspect_postgres(url: str) -> DatabaseReport:
    from db.postgres.connection import SessionSettings, connect, where
    from db.postgres.schema import MIGRATIONS, schema_version

    conn = await connect(url, SessionSettings(statement_s=10.0), "vqbot-doctor")
    try:
        schema = await schema_version(conn)
        jobs: dict[str, int] = {}
        if schema:
            cursor = await conn.execute("SELECT state, COUNT(*) AS n FROM jobs GROUP BY state")
            jobs = {row["state"]: int(row["n"]) for row in await cursor.fetchall()}
    finally:
        await conn.close()
    return DatabaseReport("postgres", where(url), True, schema, len(MIGRATIONS), jobs)
