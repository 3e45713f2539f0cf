"""Configuration of the emulator: what data it holds, which limits and faults it applies.

`EmulatorConfig` is built once (by the CLI's `main()` or by a test) and handed to `create_app`.
The parts that may change while the emulator runs (`already_disconnected_mode`, `limits`,
`faults`, `webhook_endpoints`) are replaced wholesale through `POST /_emulator/config`; every
model here is frozen so a handler never sees a half-updated value.

Limits are OFF by default in the Python API (`limits=None`), so tests only meet a 429 when they
ask for one; the CLI turns Stripe-like limits on unless `--no-limits` is given.
"""

from __future__ import annotations

import math
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

DEFAULT_API_KEY = "sk_test_fcd_emulator"
DEFAULT_API_VERSION = "2026-06-24.dahlia"

AlreadyDisconnectedMode = Literal["200", "400"]
#: Undocumented: disconnecting an `inactive` account disconnects it (200) or is refused (400).
InactiveDisconnectMode = Literal["200", "400"]
#: Undocumented: our own disconnect's event names our request and key ("set") or not ("null").
EventRequestMode = Literal["set", "null"]


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class LimitsConfig(_Frozen):
    """Stripe's limiters: token buckets per endpoint and per mode, and a cap on calls in flight."""

    endpoint_rate: float = Field(default=25.0, gt=0)
    """Requests per second for each endpoint (disconnect, retrieve and list each have one)."""
    global_rate_test: float = Field(default=25.0, gt=0)
    """Requests per second over all endpoints with an `sk_test_` key."""
    global_rate_live: float = Field(default=100.0, gt=0)
    """Requests per second over all endpoints with an `sk_live_` key."""
    burst_seconds: float = Field(default=1.0, gt=0)
    """Bucket capacity, in seconds of rate: 1.0 lets a full second's budget through at once."""
    max_concurrency: int = Field(default=20, ge=1)
    """Requests in flight over all endpoints before `global-concurrency` 429s."""
    endpoint_max_concurrency: int | None = Field(default=None, ge=1)
    """Requests in flight per endpoint before `endpoint-concurrency` 429s; None: no cap."""


class LatencyConfig(_Frozen):
    """How long a Stripe call takes before it answers: fixed, or lognormal by median and p99."""

    kind: Literal["fixed", "lognormal"] = "fixed"
    fixed_ms: float = Field(default=0.0, ge=0)
    median_ms: float = Field(default=300.0, gt=0)
    p99_ms: float = Field(default=1500.0, gt=0)

    @model_validator(mode="after")
    def _p99_above_median(self) -> LatencyConfig:
        if self.kind == "lognormal" and self.p99_ms < self.median_ms:
            raise ValueError("p99_ms must be at least median_ms")
        return self

    @property
    def sigma(self) -> float:
        """The lognormal shape parameter that puts the 99th percentile at `p99_ms`."""
        return math.log(self.p99_ms / self.median_ms) / 2.3263478740408408


LATENCY_PRESETS: dict[str, LatencyConfig] = {
    "none": LatencyConfig(),
    "realistic": LatencyConfig(kind="lognormal", median_ms=300.0, p99_ms=1500.0),
}


class OutageWindow(_Frozen):
    """Every Stripe call between `start` and `end` (unix seconds) answers 503."""

    start: float
    end: float


class FaultsConfig(_Frozen):
    """Random faults, drawn from a RNG seeded by `EmulatorConfig.seed`."""

    error_rates: dict[Literal["500", "502", "503"], Annotated[float, Field(ge=0, le=1)]] = {}
    """Probability per call of each injected error status. A 500 is stored for idempotency."""
    latency: LatencyConfig = LatencyConfig()
    hang_rate: float = Field(default=0.0, ge=0, le=1)
    """Probability that a call hangs for `hang_seconds`, then completes (the client has gone)."""
    hang_seconds: float = Field(default=60.0, ge=0)
    reset_rate: float = Field(default=0.0, ge=0, le=1)
    """Probability that the connection is reset without a response and without executing."""
    outage: OutageWindow | None = None


class WebhookEndpoint(_Frozen):
    """Where events are POSTed, and the `whsec_` secret they are signed with."""

    url: str
    secret: str


class EmulatorConfig(_Frozen):
    """Everything `create_app` needs; see the module docstring for which parts are mutable."""

    accounts: int = Field(default=200, ge=0)
    """Accounts generated at start (more can be added through the admin API)."""
    connected_accounts: int = Field(default=0, ge=0)
    """Stripe accounts connected to the platform at start (Connect; more through the admin API).
    They hold no FC accounts until the admin API creates some with `stripe_account`."""
    seed: int = 0
    """Seeds the data set and the fault RNG: the same seed gives the same ids and fields."""
    reference_time: int | None = None
    """Unix seconds the generated timestamps lead up to; None: today's midnight UTC."""
    api_keys: tuple[str, ...] = (DEFAULT_API_KEY,)
    api_version: str = DEFAULT_API_VERSION
    already_disconnected_mode: AlreadyDisconnectedMode = "200"
    inactive_disconnect_mode: InactiveDisconnectMode = "200"
    event_request_mode: EventRequestMode = "set"
    limits: LimitsConfig | None = None
    faults: FaultsConfig = FaultsConfig()
    idempotency_ttl_seconds: float = Field(default=24 * 3600.0, gt=0)
    request_log_size: int = Field(default=1_000_000, ge=0)
    webhook_endpoints: tuple[WebhookEndpoint, ...] = ()
    webhook_max_attempts: int = Field(default=5, ge=1)
    webhook_backoff_seconds: float = Field(default=0.5, ge=0)
    """Delay before the second delivery attempt; it doubles for each later one."""
    webhook_timeout_seconds: float = Field(default=10.0, gt=0)
    event_retention_seconds: float = Field(default=30 * 86400.0, gt=0)
    """How far back `GET /v1/events` lists (Stripe: 30 days)."""


class ConfigUpdate(_Frozen):
    """Body of `POST /_emulator/config`: each field given replaces the running value.

    `limits: null` turns limits off; `outage_for_seconds: N` sets an outage from now for N s.
    """

    already_disconnected_mode: AlreadyDisconnectedMode | None = None
    inactive_disconnect_mode: InactiveDisconnectMode | None = None
    event_request_mode: EventRequestMode | None = None
    limits: LimitsConfig | None = None
    faults: FaultsConfig | None = None
    webhook_endpoints: tuple[WebhookEndpoint, ...] | None = None
    outage_for_seconds: float | None = Field(default=None, ge=0)
