"""Fixtures shared by the unit tests."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from controlplane.store.sqlite import SqliteStore


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[SqliteStore]:
    """A fresh SQLite store (synchronous=NORMAL: a test needs no power-loss safety)."""
    db = SqliteStore(tmp_path / "db", synchronous="NORMAL")
    db.open()
    try:
        yield db
    finally:
        db.close()
