"""The limiter's value types: the budget it enforces, the permit it grants, the snapshot it shows."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType, TracebackType
from typing import Literal, Self

from control.pause import PauseState

Priority = Literal["urgent", "bulk"]
STRIPE_ENDPOINTS = ("disconnect", "list", "retrieve")


@dataclass(frozen=True)
class RateBudget:
    """What all workers together may send to Stripe.

    Rates are requests per second at full health; the adaptive factor scales every rate at once.
    ``burst`` is the bucket capacity in requests: how many may go back to back after an idle spell
    (1 = perfectly even spacing, the default). ``lease_seconds`` must outlast one HTTP call, timeout
    included: a lease still held then is taken for a dead worker's and dropped. ``reserve_ahead_
    seconds`` is how far ahead a caller may book a slot and sleep until it instead of asking again.
    Endpoints in ``pause_exempt_endpoints`` are granted even while paused (none by default).
    ``protected_endpoint`` is the write the budget exists for (``disconnect``): no call to any
    other endpoint (a read) ever delays an urgent call to it (see the package docstring); ``None``
    (or an endpoint the budget does not name) protects nothing.
    """

    endpoint_rates: Mapping[str, float]
    global_rate: float
    max_in_flight: int
    lease_seconds: float = 30.0
    burst: float = 1.0
    min_rate_factor: float = 0.1
    recovery_per_second: float = 0.05
    decrease_factor: float = 0.5
    decrease_cooldown_seconds: float = 1.0
    reserve_ahead_seconds: float = 0.25
    pause_exempt_endpoints: frozenset[str] = frozenset()
    protected_endpoint: str | None = "disconnect"

    def __post_init__(self) -> None:
        object.__setattr__(self, "endpoint_rates", MappingProxyType(dict(self.endpoint_rates)))
        checks = [
            (bool(self.endpoint_rates), "endpoint_rates must name at least one endpoint"),
            (all(r > 0 for r in self.endpoint_rates.values()), "endpoint rates must be > 0"),
            (self.global_rate > 0, "global_rate must be > 0"),
            (self.max_in_flight >= 1, "max_in_flight must be >= 1"),
            (self.lease_seconds > 0, "lease_seconds must be > 0"),
            (self.burst >= 1, "burst must be >= 1"),
            (0 < self.min_rate_factor <= 1, "min_rate_factor must be in (0, 1]"),
            (0 < self.decrease_factor < 1, "decrease_factor must be in (0, 1)"),
            (self.recovery_per_second >= 0, "recovery_per_second must be >= 0"),
            (self.decrease_cooldown_seconds >= 0, "decrease_cooldown_seconds must be >= 0"),
            (self.reserve_ahead_seconds >= 0, "reserve_ahead_seconds must be >= 0"),
        ]
        problems = [message for ok, message in checks if not ok]
        if problems:
            raise ValueError("invalid RateBudget: " + "; ".join(problems))

    @classmethod
    def for_stripe(
        cls, *, live_mode: bool, headroom: float = 0.8, max_in_flight: int = 16
    ) -> RateBudget:
        """Stripe's published limits times ``headroom`` (other services share the account).

        25 requests/s per endpoint; 100 operations/s overall in live mode, 25/s in test mode.
        """
        if not 0 < headroom <= 1:
            raise ValueError("headroom must be in (0, 1]")
        overall = 100.0 if live_mode else 25.0
        return cls(
            endpoint_rates=dict.fromkeys(STRIPE_ENDPOINTS, 25.0 * headroom),
            global_rate=overall * headroom,
            max_in_flight=max_in_flight,
        )


@dataclass(frozen=True)
class LimiterSnapshot:
    """The shared limiter's state as all workers see it (``fcd queue``'s limiter line).

    ``waits`` counts every sleep an acquisition took (until a booked slot, or before asking again)
    and ``wait_seconds`` adds them up; ``grants`` and ``rate_limited_reports`` count since the
    stats key was created. ``urgent_waiting``/``bulk_waiting`` are callers refused and queued now.
    """

    rate_factor: float
    effective_global_rate: float
    effective_endpoint_rates: Mapping[str, float]
    in_flight: int
    urgent_waiting: int
    bulk_waiting: int
    grants: int
    waits: int
    wait_seconds: float
    rate_limited_reports: int
    paused: PauseState | None


@dataclass(eq=False)
class Permit:
    """Permission for one Stripe call; holds an in-flight lease until released.

    Release it as soon as the HTTP call has finished (``async with permit:`` does); releasing is
    idempotent and never raises. An unreleased lease expires after the budget's ``lease_seconds``.
    ``booked_at`` is the slot the limiter booked for this call, in unix seconds on Redis's clock:
    what the budget actually granted, whatever the caller's own clock says.
    """

    endpoint: str
    lease_id: str
    waited_seconds: float
    _release: Callable[[str], Awaitable[None]] = field(repr=False)
    released: bool = False
    booked_at: float | None = None

    async def release(self) -> None:
        """Give the in-flight slot back to every worker."""
        if not self.released:
            self.released = True
            await self._release(self.lease_id)

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.release()
