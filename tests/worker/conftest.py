"""Worker fixtures: the emulator in-process (in both already-disconnected modes) and job deps."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable

import aiohttp
import pytest

from ledger.store import Ledger
from stripe_emulator import DEFAULT_API_KEY, EmulatorConfig, RunningEmulator, run_emulator
from tests.emulator_admin import EmulatorAdmin
from tests.worker_deps import build_test_deps
from worker.disconnect import DisconnectDeps
from worker.stripe_client import client_timeout

MakeDeps = Callable[..., DisconnectDeps]


#: Where Stripe documents nothing, the emulator offers each plausible answer as an option and
#: the worker is tested against each. Every worker test runs against both answers to a second
#: disconnect; a test about another undocumented answer parametrizes ``emulator`` indirectly
#: with the options it needs (see :data:`INACTIVE_DISCONNECT_MODES`).
SECOND_DISCONNECT_MODES = [
    {"already_disconnected_mode": "200"},
    {"already_disconnected_mode": "400"},
]
INACTIVE_DISCONNECT_MODES = [
    pytest.param({"inactive_disconnect_mode": "200"}, id="inactive-disconnect-200"),
    pytest.param({"inactive_disconnect_mode": "400"}, id="inactive-disconnect-400"),
]


@pytest.fixture(
    params=SECOND_DISCONNECT_MODES, ids=["second-disconnect-200", "second-disconnect-400"]
)
async def emulator(request: pytest.FixtureRequest) -> AsyncIterator[RunningEmulator]:
    """The emulator with one combination of the options for undocumented behaviour."""
    config = EmulatorConfig.model_validate({"accounts": 20, "seed": 3, **request.param})
    async with run_emulator(config) as running:
        yield running


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession(timeout=client_timeout(2.0, 1.5)) as session:
        yield session


@pytest.fixture
def admin(emulator: RunningEmulator, http: aiohttp.ClientSession) -> EmulatorAdmin:
    return EmulatorAdmin(emulator.url, http)


@pytest.fixture
def make_deps(ledger: Ledger, emulator: RunningEmulator, http: aiohttp.ClientSession) -> MakeDeps:
    """Build job deps against the emulator; keyword overrides for policy and precheck."""

    def build(
        *, api_key: str = DEFAULT_API_KEY, max_attempts: int = 5, precheck_account: bool = False
    ) -> DisconnectDeps:
        return build_test_deps(
            ledger,
            emulator.url,
            http,
            api_key=api_key,
            max_attempts=max_attempts,
            precheck_account=precheck_account,
        )

    return build
