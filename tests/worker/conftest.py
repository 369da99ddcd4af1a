from pathlib import Path

import pytest

from db import FakeClock, SqliteStore
from tests.worker.engine_fixtures import tiny_engine, tiny_models  # noqa: F401  (fixtures)


@pytest.fixture
def clock() -> FakeClock:
    """The store's clock: a retried job's wait (db/retries.py) passes when a test moves it."""
    return FakeClock()


@pytest.fixture
async def store(tmp_path: Path, clock: FakeClock):
    store = await SqliteStore.open(tmp_path / "vqbot.sqlite3", clock=clock)
    yield store
    await store.close()
