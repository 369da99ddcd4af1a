"""Fixtures for the store tests: real SQLite files in a temporary folder."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from db import FakeClock, SqliteStore
from tests.db.factories import OPEN_LIMITS


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    return tmp_path / "vqbot.sqlite3"


@pytest.fixture
async def store(db_path: Path, clock: FakeClock) -> AsyncIterator[SqliteStore]:
    async with await SqliteStore.open(db_path, clock=clock, defaults=OPEN_LIMITS) as opened:
        yield opened


@pytest.fixture
async def limited(db_path: Path, clock: FakeClock) -> AsyncIterator[SqliteStore]:
    """A store with the shipped default limits."""
    async with await SqliteStore.open(db_path, clock=clock) as opened:
        yield opened
