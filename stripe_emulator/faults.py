"""Forced outcomes of Stripe calls: scripted per account, or drawn at random from `FaultsConfig`.

A `ForcedOutcome` says what one call does instead of (or besides) its normal work:

- `hang_seconds`: wait that long first (longer than the client's timeout to simulate a hang);
  then the call goes on as below, though the client has usually given up by then.
- `reset: true`: close the connection without an answer.
- `status`: answer with this status and a Stripe error body (`type`, `code`, `message`, `param`
  default to Stripe's usual ones for the status); `status` 200 or absent means "run normally".
- `should_retry`: send `Stripe-Should-Retry: true|false`.
- `rate_limited_reason`: send `Stripe-Rate-Limited-Reason` (with a 429).
- `execute`: also do the work (disconnect, webhook) before answering with the error or reset,
  the ambiguous case where Stripe acted but the client never learns. Default: true for a plain
  hang, false otherwise. A reset after executing keeps the real answer under the idempotency
  key, so a retry with the same key replays it.
- `store`: keep the answer under the idempotency key; default: as Stripe keeps an answer of an
  executing endpoint (every status but 401, 403, 409, 429, 502, 503, 504; see
  `idempotency.should_store`).
- A 500 carries `Stripe-Should-Retry: false` unless `should_retry` says otherwise: stripe-python
  expects it "in most cases when a 500 is returned, since our idempotency framework would
  typically replay it anyway".

Scripts are FIFO queues per account for its next disconnect calls, each outcome used once.
Random faults apply to every `/v1` call, from a RNG seeded by the emulator's seed.
"""

from __future__ import annotations

import math
import random
import time
from collections import deque

from pydantic import BaseModel, ConfigDict, Field

from stripe_emulator.config import FaultsConfig
from stripe_emulator.idempotency import should_store


class ForcedOutcome(BaseModel):
    """One scripted or random outcome; see the module docstring for each field."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    status: int | None = Field(default=None, ge=200, le=599)
    type: str | None = None
    code: str | None = None
    message: str | None = None
    param: str | None = None
    should_retry: bool | None = None
    rate_limited_reason: str | None = None
    hang_seconds: float = Field(default=0.0, ge=0)
    reset: bool = False
    execute: bool | None = None
    store: bool | None = None

    @property
    def is_error(self) -> bool:
        """Whether the call answers with an error instead of its normal result."""
        return self.status is not None and self.status >= 300

    @property
    def executes(self) -> bool:
        """Whether the call does its work before the forced answer (see `execute`)."""
        if self.execute is not None:
            return self.execute
        return not self.reset and not self.is_error

    @property
    def stores(self) -> bool:
        """Whether the forced error answer is kept for idempotent replay."""
        if self.store is not None:
            return self.store
        return self.status is not None and should_store(self.status)


class Scripts:
    """Per-account FIFO queues of forced outcomes for disconnect calls."""

    def __init__(self) -> None:
        self._queues: dict[str, deque[ForcedOutcome]] = {}

    def __bool__(self) -> bool:
        return bool(self._queues)

    def add(self, account_id: str, outcomes: list[ForcedOutcome]) -> int:
        """Append outcomes for `account_id`; returns how many are now queued for it."""
        queue = self._queues.setdefault(account_id, deque())
        queue.extend(outcomes)
        return len(queue)

    def pop(self, account_id: str) -> ForcedOutcome | None:
        """The next outcome for `account_id`, if any, removing it."""
        queue = self._queues.get(account_id)
        if not queue:
            return None
        outcome = queue.popleft()
        if not queue:
            del self._queues[account_id]
        return outcome

    def pending(self) -> dict[str, int]:
        """How many outcomes are queued per account."""
        return {account: len(queue) for account, queue in self._queues.items()}

    def clear(self, account_id: str | None = None) -> None:
        """Drop the queue of one account, or of all."""
        if account_id is None:
            self._queues.clear()
        else:
            self._queues.pop(account_id, None)


class FaultInjector:
    """Random faults and latency per `FaultsConfig`; cheap when everything is off."""

    def __init__(self, config: FaultsConfig, rng: random.Random) -> None:
        self.config = config
        self._rng = rng
        latency = config.latency
        self._fixed_latency = latency.fixed_ms / 1000 if latency.kind == "fixed" else 0.0
        self._lognormal = latency.kind == "lognormal"
        self._mu = math.log(latency.median_ms / 1000)
        self._sigma = latency.sigma
        self._random_faults = bool(
            config.hang_rate or config.reset_rate or any(config.error_rates.values())
        )

    def in_outage(self) -> bool:
        """Whether now is inside the configured outage window."""
        outage = self.config.outage
        return outage is not None and outage.start <= time.time() < outage.end

    def latency(self) -> float:
        """Seconds this call should take before answering."""
        if self._lognormal:
            return self._rng.lognormvariate(self._mu, self._sigma)
        return self._fixed_latency

    def draw(self) -> ForcedOutcome | None:
        """A random fault for this call, or None."""
        if not self._random_faults:
            return None
        config, rng = self.config, self._rng
        if config.reset_rate and rng.random() < config.reset_rate:
            return ForcedOutcome(reset=True)
        for status, rate in config.error_rates.items():
            if rate and rng.random() < rate:
                return ForcedOutcome(status=int(status))
        if config.hang_rate and rng.random() < config.hang_rate:
            return ForcedOutcome(hang_seconds=config.hang_seconds)
        return None
