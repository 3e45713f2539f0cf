"""Everything one running emulator holds: accounts, limiters, faults, logs, webhooks.

`EmulatorState` is what the handlers read and what in-process tests inspect
(`RunningEmulator.state`). Reconfiguring at run time (`apply`) swaps whole immutable pieces
(a new `Limiter`, a new `FaultInjector`), so a call in flight keeps the pieces it started with.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import random
import time

from stripe_emulator.accounts import AccountStore
from stripe_emulator.config import ConfigUpdate, EmulatorConfig, FaultsConfig, OutageWindow
from stripe_emulator.connect import ConnectedAccounts
from stripe_emulator.faults import FaultInjector, Scripts
from stripe_emulator.idempotency import IdempotencyStore
from stripe_emulator.ids import to_base62
from stripe_emulator.limits import Limiter
from stripe_emulator.listener import Listener
from stripe_emulator.requestlog import RequestLog
from stripe_emulator.webhooks import WebhookDispatcher


class EmulatorState:
    """The mutable state of one emulator; built from an `EmulatorConfig`."""

    def __init__(self, config: EmulatorConfig) -> None:
        self.config = config
        reference = config.reference_time or int(time.time()) // 86400 * 86400
        self.accounts = AccountStore(config.accounts, config.seed, reference)
        self.api_keys = frozenset(config.api_keys)
        self.connect = ConnectedAccounts(config.seed)
        for _ in range(config.connected_accounts):
            self.connect.create(reference)
        self.idempotency = IdempotencyStore(config.idempotency_ttl_seconds)
        self.log = RequestLog(config.request_log_size)
        self.scripts = Scripts()
        self._rng = random.Random(config.seed)
        self.faults = FaultInjector(config.faults, self._rng)
        self.limiter = Limiter(config.limits) if config.limits is not None else None
        self.webhooks = WebhookDispatcher(
            config.webhook_endpoints,
            api_version=config.api_version,
            max_attempts=config.webhook_max_attempts,
            backoff=config.webhook_backoff_seconds,
            timeout=config.webhook_timeout_seconds,
            seed=config.seed,
        )
        self.locked_accounts: set[int] = set()
        self.closing = asyncio.Event()
        #: Set by whoever serves the app (the CLI, `run_emulator`), for connection refusals.
        self.listener: Listener | None = None
        self._request_prefix = to_base62(self._rng.getrandbits(64), 6)
        self._request_counter = itertools.count(1)

    def new_request_id(self) -> str:
        """A fresh `req_` id: a per-run prefix and a counter, 14 characters like Stripe's."""
        return f"req_{self._request_prefix}{to_base62(next(self._request_counter), 8)}"

    def apply(self, update: ConfigUpdate) -> None:
        """Replace the running configuration's mutable parts with those `update` sets."""
        given = update.model_fields_set
        changes: dict[str, object] = {}
        for mode in ("already_disconnected_mode", "inactive_disconnect_mode", "event_request_mode"):
            if getattr(update, mode) is not None:
                changes[mode] = getattr(update, mode)
        if "limits" in given:
            changes["limits"] = update.limits
            self.limiter = Limiter(update.limits) if update.limits is not None else None
        faults = update.faults if update.faults is not None else self.config.faults
        if update.outage_for_seconds is not None:
            now = time.time()
            window = OutageWindow(start=now, end=now + update.outage_for_seconds)
            faults = faults.model_copy(update={"outage": window})
        if faults is not self.config.faults:
            changes["faults"] = faults
            self.faults = FaultInjector(FaultsConfig.model_validate(faults), self._rng)
        if update.webhook_endpoints is not None:
            changes["webhook_endpoints"] = update.webhook_endpoints
            self.webhooks.endpoints = update.webhook_endpoints
        self.config = self.config.model_copy(update=changes)

    async def pause(self, seconds: float) -> None:
        """Sleep `seconds`, but wake at once when the emulator shuts down (so hangs end)."""
        if seconds <= 0 or self.closing.is_set():
            return
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.closing.wait(), seconds)
