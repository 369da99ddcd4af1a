"""Every backend gets the Store's public methods, and so their argument checks, from one place."""

from __future__ import annotations

import inspect

import pytest

from db import PostgresStore, SqliteStore, Store
from db.checked_store import CheckedStore

STORE_METHODS = sorted(
    name for name, member in vars(Store).items() if inspect.iscoroutinefunction(member) and name != "close"
)


def test_the_checked_store_defines_every_store_method() -> None:
    assert len(STORE_METHODS) > 30
    assert [name for name in STORE_METHODS if name not in vars(CheckedStore)] == []


@pytest.mark.parametrize("backend_class", [SqliteStore, PostgresStore])
def test_a_backend_defines_no_store_method_of_its_own(backend_class: type) -> None:
    """A backend implements the underscore methods only, so it can't skip a check."""
    assert issubclass(backend_class, CheckedStore)
    assert [name for name in STORE_METHODS if name in vars(backend_class)] == []
    assert not inspect.isabstract(backend_class)
