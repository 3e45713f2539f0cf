"""Every Stripe call the worker makes: what it needs, and the one way through the limiter.

:class:`DisconnectDeps` is built once per worker process (:func:`worker.app.startup`) and handed
to every core. :func:`call_stripe` waits at the shared rate limiter (at the deps' priority) and
reports a limiter 429 so every worker slows down; :func:`metered_call` counts and times each call
for ``/metrics`` (the sweeps' list calls, which wait at the limiter with their own priority, use
it directly). :func:`trip_breaker` pauses the fleet after a 401, or a 403 to the platform's own
call.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from redis.exceptions import RedisError

from control.metrics import CounterBuffer, record_stripe_call
from control.pause import pause
from ledger.audit import TransitionDetails
from ledger.store import Ledger
from worker.gate import CallGate, Priority
from worker.outcomes import is_account_forbidden
from worker.retry import RetryPolicy
from worker.stripe_client import (
    StripeAPIError,
    StripeClient,
    StripeError,
    StripeResult,
    StripeTimeout,
)


@dataclass(frozen=True)
class DisconnectDeps:
    """Everything a disconnect job needs, built once per worker process."""

    ledger: Ledger
    stripe: StripeClient
    gate: CallGate
    policy: RetryPolicy
    precheck_account: bool = False
    idempotency_refresh_seconds: float = 23 * 3600
    priority: Priority = "urgent"
    lock_seconds: float = 120.0
    paused_recheck_seconds: float = 10.0
    #: The Stripe client's total timeout: how long a call we cut off may still run at Stripe
    #: for all we know (the account lock is kept that long after a cancellation mid-call).
    call_timeout_seconds: float = 30.0
    #: The process's counters (flushed by :mod:`worker.presence`): Stripe calls are counted
    #: there, off the call path; without one each call is written to Redis as it is made.
    counters: CounterBuffer | None = None


async def call_stripe(
    deps: DisconnectDeps,
    endpoint: str,
    call: Callable[[], Awaitable[StripeResult]],
    *,
    before_send: Callable[[], Awaitable[None]] | None = None,
    stripe_account: str | None = None,
) -> StripeResult:
    """One Stripe call at the shared limiter; a limiter 429 slows every worker down.

    Raises :class:`LimiterPaused` (never waits) while the service is paused, so the caller can
    hand its work back instead of holding it. ``before_send`` runs once the permit is granted,
    right before the call (it may raise to stop the call). The call is counted and timed by
    :func:`metered_call`.
    """
    async with deps.gate.slot(endpoint, priority=deps.priority, wait_if_paused=False):
        if before_send is not None:
            await before_send()
        try:
            return await metered_call(deps, endpoint, call, stripe_account=stripe_account)
        except StripeAPIError as exc:
            if exc.is_rate_limit:
                # Best effort: failing to slow the fleet must not hide Stripe's answer.
                with contextlib.suppress(RedisError, OSError):
                    await deps.gate.report_rate_limited(endpoint, exc.meta.rate_limited_reason)
            raise


async def metered_call(
    deps: DisconnectDeps,
    endpoint: str,
    call: Callable[[], Awaitable[StripeResult]],
    *,
    stripe_account: str | None = None,
) -> StripeResult:
    """Make one Stripe call (the caller holds its limiter slot) and count it by endpoint and
    outcome (``ok``, the HTTP status, ``timeout``, ``transport_error``; a 403 for a call made
    with ``stripe_account`` is ``403_account``, apart from the platform's own 403s that trip the
    breaker) with its duration: ``fcd_stripe_calls_total`` and
    ``fcd_stripe_call_duration_seconds``. Every Stripe call of the worker goes through here,
    list calls included."""
    started = time.monotonic()
    try:
        result = await call()
    except StripeError as exc:
        label = _outcome_label(exc, stripe_account)
        await _count_call(deps, endpoint, label, time.monotonic() - started)
        raise
    await _count_call(deps, endpoint, "ok", time.monotonic() - started)
    return result


def _outcome_label(error: StripeError, stripe_account: str | None = None) -> str:
    if isinstance(error, StripeTimeout):
        return "timeout"
    if is_account_forbidden(error, stripe_account):
        return "403_account"
    if isinstance(error, StripeAPIError):
        return str(error.http_status)
    return "transport_error"


async def _count_call(deps: DisconnectDeps, endpoint: str, outcome: str, seconds: float) -> None:
    """Count one Stripe call for ``/metrics``; a counting failure never affects the call."""
    if deps.counters is not None:  # the same fields record_stripe_call writes, batched
        deps.counters.add("stripe", endpoint, outcome)
        deps.counters.observe("stripe_latency", seconds, endpoint, outcome)
        return
    with contextlib.suppress(RedisError, OSError):
        await record_stripe_call(deps.ledger.redis, deps.ledger.prefix, endpoint, outcome, seconds)


async def trip_breaker(deps: DisconnectDeps, details: TransitionDetails) -> None:
    """401/403: pause every worker; only the first worker to trip writes the audit event."""
    reason = f"Stripe answered HTTP {details.http_status}: {details.message}"
    await pause(
        deps.ledger.redis,
        deps.ledger.actor,
        reason,
        "breaker",
        key=deps.ledger.pause_key,
        audit=deps.ledger.audit,
        only_if_unpaused=True,
    )
