"""A database that can't be written for a while (another process holds its write lock) costs no picture.

The lock is held by a second real connection doing BEGIN EXCLUSIVE on the same file, as a long
transaction of another process would; the worker's store gives up on it after its busy timeout.
"""

from __future__ import annotations

import io
import logging
import sqlite3
from collections.abc import Callable
from pathlib import Path

import pytest
from PIL import Image

from db import JobState, SqliteStore
from tests.worker.queue import enqueue, worker_for
from worker.waiting import Backoff

NO_WAIT = Backoff(first_s=0.0, max_s=0.0)  # retry at once: these tests release the lock themselves


class WriteLock:
    """Another connection to the database that takes its write lock once and keeps it until released."""

    def __init__(self, path: Path) -> None:
        self._conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        self.taken = self.used = False

    def take(self) -> None:
        if not self.used:
            self._conn.execute("BEGIN EXCLUSIVE")
            self.taken = self.used = True

    def release(self) -> None:
        if self.taken:
            self._conn.execute("ROLLBACK")
            self.taken = False

    def close(self) -> None:
        self.release()
        self._conn.close()


class WhenLogged(logging.Handler):
    """Runs ``action`` once, on whichever thread logs it, the first time a worker line contains ``text``."""

    def __init__(self, text: str, action: Callable[[], object]) -> None:
        super().__init__(logging.INFO)
        self.text, self.action, self.done = text, action, False

    def emit(self, record: logging.LogRecord) -> None:
        if not self.done and self.text in record.getMessage():
            self.done = True
            self.action()


@pytest.fixture
def when_logged(caplog):
    caplog.set_level(logging.INFO, logger="worker")
    handlers: list[WhenLogged] = []

    def install(text: str, action: Callable[[], object]) -> WhenLogged:
        handler = WhenLogged(text, action)
        logging.getLogger("worker").addHandler(handler)
        handlers.append(handler)
        return handler

    yield install
    for handler in handlers:
        logging.getLogger("worker").removeHandler(handler)


async def open_store(tmp_path: Path, busy_timeout_s: float) -> tuple[SqliteStore, WriteLock]:
    path = tmp_path / "vqbot.sqlite3"
    return await SqliteStore.open(path, busy_timeout_s=busy_timeout_s), WriteLock(path)


def lock_after_first_progress(store: SqliteStore, job_id: int, lock: WriteLock):
    async def changed() -> None:
        if not lock.used and (await store.get(job_id)).step > 0:
            lock.take()

    return changed


async def test_steps_go_on_while_the_database_is_locked(tiny_engine, tiny_models, tmp_path, when_logged):
    """The engine never waits for the database: the lock, taken after the first progress report, is let go
    only once the picture is made, so every later step ran while progress could not be written."""
    store, lock = await open_store(tmp_path, busy_timeout_s=30.0)
    try:
        job = await enqueue(store, tiny_models)
        made = when_logged("picture made", lock.release)
        worker = worker_for(store, tiny_engine, tmp_path, on_change=lock_after_first_progress(store, job.id, lock),
                            store_retry=NO_WAIT)
        assert await worker.run_once() == 1
        assert made.done
        done = await store.get(job.id)
        assert done.state is JobState.SUCCEEDED and done.step == 20
    finally:
        lock.close()
        await store.close()


async def test_a_picture_finished_while_the_database_is_locked_is_stored_once_it_is_free(
        tiny_engine, tiny_models, tmp_path, when_logged, caplog):
    store, lock = await open_store(tmp_path, busy_timeout_s=0.05)
    try:
        job = await enqueue(store, tiny_models)
        refused = when_logged("could not store the finished picture", lock.release)
        worker = worker_for(store, tiny_engine, tmp_path, on_change=lock_after_first_progress(store, job.id, lock),
                            store_retry=NO_WAIT, unstored_dir=tmp_path / "unstored")
        assert await worker.run_once() == 1
        assert refused.done  # the first try to store it met the lock
        done = await store.get(job.id)
        assert done.state is JobState.SUCCEEDED and done.attempts == 1  # stored, never handed back or run again
        assert Image.open(io.BytesIO(await store.result(job.id))).size == (64, 64)
        assert list((tmp_path / "unstored").iterdir()) == []  # the copy kept meanwhile is gone
        problems = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
        assert any("database" in line for line in problems), problems  # the database is named as the cause
        assert not any("engine" in line or "batch failed" in line for line in problems), problems
    finally:
        lock.close()
        await store.close()


async def test_a_picture_the_database_will_not_take_waits_on_disk_for_the_next_start(
        tiny_engine, tiny_models, tmp_path, when_logged):
    store, lock = await open_store(tmp_path, busy_timeout_s=0.05)
    unstored = tmp_path / "unstored"
    try:
        job = await enqueue(store, tiny_models)
        worker = worker_for(store, tiny_engine, tmp_path, on_change=lock_after_first_progress(store, job.id, lock),
                            store_retry=NO_WAIT, unstored_dir=unstored)
        when_logged("could not store the finished picture", worker.stop)  # and the database stays locked
        assert await worker.run_once() == 1
        kept = list(unstored.glob("*.png"))
        assert len(kept) == 1
        picture = kept[0].read_bytes()
        assert (await store.get(job.id)).state is JobState.RUNNING  # not handed back to run again

        lock.release()
        fresh = worker_for(store, tiny_engine, tmp_path, store_retry=NO_WAIT, unstored_dir=unstored)
        assert await fresh.run_once() == 0  # nothing to run: the kept picture only needed storing
        done = await store.get(job.id)
        assert done.state is JobState.SUCCEEDED and done.attempts == 1
        assert await store.result(job.id) == picture
        assert list(unstored.iterdir()) == []
    finally:
        lock.close()
        await store.close()
