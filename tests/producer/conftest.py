"""Producer-side fixtures for tests that need the Stripe emulator and worker processes.

Each test that asks for ``group`` owns the processes it starts; they are stopped afterwards.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import aiohttp
import pytest

from devenv.processes import ProcessGroup, start_emulator
from tests.emulator_admin import EmulatorAdmin


@pytest.fixture
def group(tmp_path: Path) -> Iterator[ProcessGroup]:
    processes = ProcessGroup(tmp_path / "logs")
    yield processes
    processes.stop_all()


@pytest.fixture
def emulator_url(group: ProcessGroup) -> str:
    return start_emulator(group, accounts=10, extra=["--no-limits"])


@pytest.fixture
async def admin(emulator_url: str) -> AsyncIterator[EmulatorAdmin]:
    async with aiohttp.ClientSession() as session:
        yield EmulatorAdmin(emulator_url, session)
