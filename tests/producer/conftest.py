"""Producer-side tests with worker processes call the process emulator's admin ``admin``."""

from __future__ import annotations

import pytest

from tests.emulator_admin import EmulatorAdmin


@pytest.fixture
def admin(process_admin: EmulatorAdmin) -> EmulatorAdmin:
    return process_admin
