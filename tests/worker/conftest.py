from pathlib import Path

import pytest

from db import SqliteStore
from tests.worker.engine_fixtures import tiny_engine, tiny_models  # noqa: F401  (fixtures)


@pytest.fixture
async def store(tmp_path: Path):
    store = await SqliteStore.open(tmp_path / "vqbot.sqlite3")
    yield store
    await store.close()
