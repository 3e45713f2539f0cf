"""One disconnect attempt against Stripe, and what its answer means (no ledger writes here).

:func:`locked_attempt` holds the account's lock (Stripe answers ``lock_timeout`` to parallel calls
on one object), optionally retrieves the account first, posts the disconnect with the request's
``Idempotency-Key`` and turns the answer into an :class:`Outcome` using the table in
:mod:`worker.outcomes`. Every Stripe call goes through :func:`call_stripe`: it waits at the shared
rate limiter and reports a limiter 429 so every worker slows down; :func:`metered_call` counts and
times it (the sweeps' list calls, which wait at the limiter with their own priority, use it too).
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field, replace
from typing import Any

from redis.exceptions import RedisError

from control.metrics import record_stripe_call
from control.pause import pause
from ledger.audit import TransitionDetails
from ledger.models import DisconnectRequest, RequestStatus
from ledger.store import Ledger
from worker.gate import CallGate, Priority
from worker.outcomes import Action, decide, is_account_forbidden, is_auth_failure
from worker.ratelimit import AccountBusy, AccountLock, LimiterPaused
from worker.retry import RetryPolicy
from worker.stripe_client import (
    StripeAPIError,
    StripeClient,
    StripeError,
    StripeMeta,
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
    precheck_account: bool = True
    idempotency_refresh_seconds: float = 23 * 3600
    priority: Priority = "urgent"
    lock_seconds: float = 120.0
    paused_recheck_seconds: float = 10.0


class ClaimLost(Exception):
    """The request is no longer held under this attempt's claim: someone else owns it now, and
    nothing may be sent for it."""


@dataclass(frozen=True)
class Outcome:
    """Where one attempt leaves the request: a terminal status, ``RETRY_SCHEDULED``, or
    ``QUEUED`` (the circuit breaker tripped)."""

    status: RequestStatus
    details: TransitionDetails = field(default_factory=TransitionDetails)
    fresh_idempotency_key: bool = False
    #: The attempt does not count against the budget (limiter 429, account busy, breaker).
    attempt_free: bool = False
    trip_breaker: bool = False
    #: A retry waits at least this long (seconds), e.g. until another holder's lock expires.
    not_before: float = 0.0
    #: A disconnect POST was sent during this attempt (its intent is on the request already,
    #: ``last_posted_at``, so a later "found disconnected" is known to be ours).
    posted: bool = False


async def locked_attempt(deps: DisconnectDeps, request: DisconnectRequest) -> Outcome:
    """The attempt under the account's lock: Stripe answers ``lock_timeout`` to parallel calls."""
    try:
        async with AccountLock(
            deps.ledger.redis,
            request.account_id,
            ttl_seconds=deps.lock_seconds,
            key_prefix=f"{deps.ledger.prefix}lock:account:",
        ):
            return await attempt_disconnect(deps, request)
    except AccountBusy as busy:
        note = "another call holds this account's lock; trying again when it is free"
        return Outcome(
            RequestStatus.RETRY_SCHEDULED,
            TransitionDetails(message=note),
            attempt_free=True,
            not_before=busy.retry_after,
        )
    except LimiterPaused:
        note = "service paused; request handed back to the queue, attempt not spent"
        return Outcome(RequestStatus.QUEUED, TransitionDetails(message=note), attempt_free=True)


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
    with contextlib.suppress(RedisError, OSError):
        await record_stripe_call(deps.ledger.redis, deps.ledger.prefix, endpoint, outcome, seconds)


async def attempt_disconnect(deps: DisconnectDeps, request: DisconnectRequest) -> Outcome:
    """One attempt: optionally retrieve first, then POST the disconnect, then classify."""
    age = time.time() - (request.first_attempt_at or time.time())
    refresh_key = age >= deps.idempotency_refresh_seconds
    if deps.precheck_account or refresh_key:
        early = await _precheck(deps, request)
        if early is not None:
            return early
    key_request = request
    if refresh_key:
        generation = request.idempotency_generation + 1
        key_request = request.model_copy(update={"idempotency_generation": generation})

    async def record_intent() -> None:
        # Before the POST leaves: an attempt cut off mid-call must still count as having posted.
        if not await deps.ledger.update_if_held(request, {"last_posted_at": time.time()}):
            raise ClaimLost(request.request_id)

    try:
        result = await call_stripe(
            deps,
            "disconnect",
            lambda: deps.stripe.disconnect_account(
                request.account_id,
                idempotency_key=key_request.idempotency_key,
                stripe_account=request.stripe_account,
            ),
            before_send=record_intent,
            stripe_account=request.stripe_account,
        )
    except StripeError as exc:
        return replace(await _after_error(deps, request, exc), posted=True)
    return Outcome(
        RequestStatus.DISCONNECTED,
        _details(result.meta, "disconnected by this service"),
        fresh_idempotency_key=refresh_key,
        posted=True,
    )


async def _precheck(deps: DisconnectDeps, request: DisconnectRequest) -> Outcome | None:
    """Retrieve the account; an outcome if that already settles the request, else ``None``."""
    try:
        account, meta = await _retrieve(deps, request)
    except StripeError as exc:
        return _from_error(exc, request.stripe_account)
    if account.get("status") != "disconnected":
        return None
    if request.last_posted_at is not None:
        note = "found disconnected after an earlier disconnect call of ours"
        return Outcome(RequestStatus.DISCONNECTED, _details(meta, note))
    return Outcome(RequestStatus.ALREADY_DISCONNECTED, _details(meta, "was already disconnected"))


async def _after_error(
    deps: DisconnectDeps, request: DisconnectRequest, error: StripeError
) -> Outcome:
    decision = decide(error)
    stripe_account = request.stripe_account
    if decision.action != Action.CHECK_ACCOUNT:
        return _from_error(error, stripe_account)
    try:
        account, meta = await _retrieve(deps, request)
    except StripeError as exc:
        return _from_error(exc, stripe_account, fresh_key=decision.fresh_idempotency_key)
    if account.get("status") == "disconnected":
        status = (
            RequestStatus.DISCONNECTED
            if decision.call_may_have_acted
            else RequestStatus.ALREADY_DISCONNECTED
        )
        note = f"account is disconnected (checked after HTTP {error.http_status}: {error.message})"
        return Outcome(status, _details(meta, note, error))
    fresh = decision.fresh_idempotency_key
    message = error.message + ("; next attempt with a fresh Idempotency-Key" if fresh else "")
    if decision.otherwise == Action.RETRY:
        return Outcome(RequestStatus.RETRY_SCHEDULED, _details(error.meta, message, error), fresh)
    return Outcome(RequestStatus.FAILED, _details(error.meta, message, error), fresh)


def _from_error(
    error: StripeError, stripe_account: str | None, *, fresh_key: bool = False
) -> Outcome:
    """Outcome of an error that needs no further look at the account."""
    decision = decide(error)
    details = _details(error.meta, error.message, error)
    if is_auth_failure(error, stripe_account):
        return Outcome(RequestStatus.QUEUED, details, attempt_free=True, trip_breaker=True)
    if is_account_forbidden(error, stripe_account):
        note = (
            f"Stripe refused access to connected account {stripe_account} (HTTP 403: "
            f"{error.message}); only this request fails, other work goes on"
        )
        return Outcome(RequestStatus.FAILED, replace(details, message=note))
    if decision.action == Action.FINISH and decision.status is not None:
        return Outcome(decision.status, details)
    if decision.action == Action.CHECK_ACCOUNT and decision.otherwise == Action.FINISH:
        return Outcome(RequestStatus.FAILED, details)
    rate_limited = isinstance(error, StripeAPIError) and error.is_rate_limit
    return Outcome(
        RequestStatus.RETRY_SCHEDULED,
        details,
        fresh_idempotency_key=fresh_key or decision.fresh_idempotency_key,
        attempt_free=rate_limited,
    )


async def _retrieve(
    deps: DisconnectDeps, request: DisconnectRequest
) -> tuple[dict[str, Any], StripeMeta]:
    result = await call_stripe(
        deps,
        "retrieve",
        lambda: deps.stripe.retrieve_account(
            request.account_id, stripe_account=request.stripe_account
        ),
        stripe_account=request.stripe_account,
    )
    return result.body, result.meta


def _details(meta: StripeMeta, message: str, error: StripeError | None = None) -> TransitionDetails:
    return TransitionDetails(
        message=message,
        stripe_request_id=meta.request_id,
        http_status=meta.http_status,
        stripe_error_code=error.code if isinstance(error, StripeAPIError) else None,
        duration_ms=meta.duration_ms,
    )


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
