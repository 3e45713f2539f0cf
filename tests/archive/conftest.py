"""An archive store of each backend: SQLite in the test's tmp dir, PostgreSQL in a private
cluster's fresh database (see ``tests/conftest.py``)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from archive import ArchiveStore, open_archive


@pytest.fixture(params=["sqlite", "postgresql"])
async def archive_store(
    request: pytest.FixtureRequest, tmp_path: Path
) -> AsyncIterator[ArchiveStore]:
    dsn = request.getfixturevalue("archive_dsn") if request.param == "postgresql" else None
    store = open_archive(tmp_path / "archive", dsn)
    yield store
    await store.close()
