"""A stateful local Stripe for tests, benchmarks and the demo (Financial Connections accounts).

It serves retrieve, list and disconnect of `financial_connections.account` objects with Stripe's
auth, errors, idempotency, rate limits and webhooks, plus an admin API under `/_emulator/` to set
up data, script outcomes and read what happened. See README.md beside this file.

    from stripe_emulator import EmulatorConfig, run_emulator

    async with run_emulator(EmulatorConfig(accounts=50, seed=1)) as emulator:
        ...  # point the Stripe client at emulator.url
"""

from stripe_emulator.app import RunningEmulator, create_app, free_port, run_emulator
from stripe_emulator.config import (
    DEFAULT_API_KEY,
    EmulatorConfig,
    FaultsConfig,
    LatencyConfig,
    LimitsConfig,
    OutageWindow,
    WebhookEndpoint,
)
from stripe_emulator.faults import ForcedOutcome
from stripe_emulator.state import EmulatorState
from stripe_emulator.webhooks import sign_webhook_payload

__all__ = [
    "DEFAULT_API_KEY",
    "EmulatorConfig",
    "EmulatorState",
    "FaultsConfig",
    "ForcedOutcome",
    "LatencyConfig",
    "LimitsConfig",
    "OutageWindow",
    "RunningEmulator",
    "WebhookEndpoint",
    "create_app",
    "free_port",
    "run_emulator",
    "sign_webhook_payload",
]
