"""The SQLite store, awaited: every call runs on one thread that owns the connection.

The store itself is synchronous (sqlite3). Calling it on the event loop would
block the bot while another process holds the write lock, so each call goes to
a single-thread executor: the connection is opened, used and closed there.
(This belongs in db/ as ``db.aio`` eventually; the worker uses it too.)
"""

from __future__ import annotations

import asyncio
import functools
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Callable

from db.clock import Clock


class AsyncStore:
    """``await store.enqueue(...)`` runs ``SqliteStore.enqueue(...)`` on the store's thread."""

    def __init__(self, executor: ThreadPoolExecutor, store: Any) -> None:
        self._executor = executor
        self._store = store

    @classmethod
    async def open(cls, path: Path | str, *, clock: Clock | None = None, name: str = "store") -> "AsyncStore":
        from db import SqliteStore

        executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"vqbot-{name}")
        loop = asyncio.get_running_loop()
        store = await loop.run_in_executor(executor, functools.partial(SqliteStore.open, path, clock=clock))
        return cls(executor, store)

    @property
    def sync(self) -> Any:
        """The underlying store, for code already on the store's thread (or tests)."""
        return self._store

    async def run(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, functools.partial(fn, *args, **kwargs))

    def __getattr__(self, name: str) -> Callable[..., Any]:
        method = getattr(self._store, name)
        if not callable(method):
            raise AttributeError(f"{name} is not a store method")

        async def call(*args: Any, **kwargs: Any) -> Any:
            return await self.run(method, *args, **kwargs)

        call.__name__ = name
        return call

    async def close(self) -> None:
        close = getattr(self._store, "close", None)
        if close is not None:
            await self.run(close)
        self._executor.shutdown(wait=False)
