"""Jobs queued as the bot queues them, and workers configured for tests (no waiting between steps)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from db import Job, NewJob, SqliteStore
from tests.worker.engine_fixtures import TinyModels, tiny_params
from worker.worker import Worker, WorkerConfig

GUILD, CHANNEL, USER = 1001, 2002, 3003


def worker_for(store: SqliteStore, engine: Any, tmp_path: Path, on_change: Any = None, **changes: Any) -> Worker:
    config = WorkerConfig(name="test-worker", progress_every=5, progress_min_interval_s=0.0,
                          timelapse_dir=tmp_path / "timelapses", **changes)
    return Worker(store, engine, config, on_change=on_change)


async def enqueue(store: SqliteStore, tiny_models: TinyModels, prompt: str = "a red apple", user: int = USER,
                  **changes: Any) -> Job:
    params = tiny_params(tiny_models, prompt, **changes)
    return await store.enqueue(NewJob(GUILD, CHANNEL, user, prompt, params, seed=params["seed"]))
