"""Opening the store that ``VQBOT_DATABASE`` names: a SQLite file or a PostgreSQL server.

    store = await open_store("data/vqbot.sqlite3")                  # SqliteStore
    store = await open_store("sqlite:///data/vqbot.sqlite3")        # the same, as a URL
    store = await open_store("postgresql://vqbot@db.example/vqbot") # PostgresStore
    store = await open_store("host=db.example dbname=vqbot")        # the same, libpq's key=value form

``sqlite:///relative/path`` and ``sqlite:////absolute/path`` follow the
usual database-URL convention (three slashes, then the path).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import TYPE_CHECKING, Any

from db.errors import InvalidInput
from db.sqlite_store import SqliteStore
from db.store import Store

if TYPE_CHECKING:
    from db.postgres import PostgresStore

    BACKENDS: tuple[type[Store], ...] = (SqliteStore, PostgresStore)
    """Every backend, as the type checker sees it: mypy refuses this line when one of them is
    not a ``Store`` (a method missing or of another signature). Nothing checks it at run time."""

POSTGRES_SCHEMES = ("postgresql://", "postgres://")
SQLITE_SCHEME = "sqlite:///"
_SCHEME = re.compile(r"^[a-zA-Z][a-zA-Z0-9+.-]*://")
# libpq's other spelling of a server, "host=db user=vqbot dbname=vqbot": psycopg takes it as it takes a URL.
_KEYWORDS = re.compile(r"^(host|hostaddr|port|dbname|user|password|service|sslmode|options)\s*=")


def backend_of(spec: str | Path) -> str:
    """``"sqlite"`` or ``"postgres"`` for a database spec; InvalidInput for anything else."""
    if isinstance(spec, Path):
        return "sqlite"
    text = str(spec).strip()
    if not text:
        raise InvalidInput("database", "The database setting is empty; give a file path or a postgresql:// URL.")
    if text.startswith(POSTGRES_SCHEMES) or _KEYWORDS.match(text):
        return "postgres"
    if text.startswith(SQLITE_SCHEME) or not _SCHEME.match(text):
        return "sqlite"
    scheme = text.split("://", 1)[0]
    raise InvalidInput(
        "database",
        f"vqbot can't open a {scheme}:// database; use a file path, sqlite:///path or postgresql://user@host/db.",
    )


def sqlite_path(spec: str | Path) -> Path:
    """The file of a SQLite spec (a path, or ``sqlite:///path``)."""
    text = str(spec).strip()
    return Path(text[len(SQLITE_SCHEME) :] if text.startswith(SQLITE_SCHEME) else text).expanduser()


async def open_store(spec: str | Path, **options: Any) -> Store:
    """Open the store ``spec`` names; ``options`` go to ``SqliteStore.open`` or ``PostgresStore.open``."""
    if backend_of(spec) == "postgres":
        from db.postgres import PostgresStore  # psycopg loads only when a server is used

        return await PostgresStore.open(str(spec).strip(), **options)
    return await SqliteStore.open(sqlite_path(spec), **options)
