"""The core of a disconnect job, free of arq: claim the request, call Stripe, record the outcome.

Contract of :func:`run_disconnect`:

- It acts only if the ledger says this job is the request's current job and the request is
  waiting (``queued``/``retry_scheduled``), or was ``in_progress`` under this very job when its
  worker died (arq re-runs such jobs; the attempt then resumes and is audited as such).
- It moves the request with exactly one ledger transition per status change; a transition that
  lost a race (:class:`StaleTransition`) means someone else owns the request, and the job stops.
- If the job is cancelled (worker shutdown) mid-attempt, the request goes back to ``queued``
  under a fresh job without spending the attempt.
- While the service is paused it does nothing and returns ``"paused"`` (the adapter defers the
  job). A 401/403 from Stripe trips the circuit breaker: it pauses every worker (one loud
  ``service.paused`` event) and puts the request back to ``queued``, attempt not spent.
- Every Stripe call waits at the shared rate limiter; a limiter 429 slows every worker and, like
  finding the account locked by another call, does not spend an attempt.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field, replace
from typing import Any

import structlog

from ledger.audit import TransitionDetails
from ledger.models import DisconnectRequest, RequestStatus, StaleTransition
from ledger.pause import get_pause, pause
from ledger.store import Ledger
from worker.gate import CallGate, Priority
from worker.outcomes import Action, decide, is_auth_failure
from worker.ratelimit import AccountBusy, AccountLock, LimiterPaused
from worker.retry import RetryPolicy
from worker.stripe_client import (
    StripeAPIError,
    StripeClient,
    StripeError,
    StripeMeta,
    StripeResult,
)

log = structlog.get_logger("fcd.worker")

WAITING = frozenset({RequestStatus.QUEUED, RequestStatus.RETRY_SCHEDULED})


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


async def run_disconnect(deps: DisconnectDeps, request_id: str, job_id: str) -> str:
    """Run one attempt for ``request_id`` as arq job ``job_id``; return the resulting status,
    ``"skipped"`` (not this job's to do) or ``"paused"`` (nothing done; run the job later)."""
    if await get_pause(deps.ledger.redis, key=deps.ledger.pause_key) is not None:
        return "paused"
    request = await _claim(deps, await deps.ledger.get(request_id), job_id)
    if request is None:
        return "skipped"
    structlog.contextvars.bind_contextvars(attempt=request.attempts)
    try:
        outcome = await _locked_attempt(deps, request)
    except asyncio.CancelledError:
        await asyncio.shield(_give_back(deps, request))
        raise
    final = await _record_outcome(deps, request, outcome)
    return final.status.value


async def _claim(
    deps: DisconnectDeps, request: DisconnectRequest, job_id: str
) -> DisconnectRequest | None:
    if request.job_id != job_id:
        log.info("job.stale", current_job_id=request.job_id)
        return None
    try:
        if request.status == RequestStatus.IN_PROGRESS:
            note = "previous worker was lost mid-attempt; resuming with the same idempotency key"
            request = await deps.ledger.transition(
                request, RequestStatus.QUEUED, TransitionDetails(message=note)
            )
        if request.status not in WAITING:
            log.info("job.not_waiting", status=request.status.value)
            return None
        updates = {} if request.first_attempt_at else {"first_attempt_at": time.time()}
        return await deps.ledger.transition(
            request, RequestStatus.IN_PROGRESS, attempts_delta=1, updates=updates
        )
    except StaleTransition as exc:
        log.info("job.lost_race", actual=exc.actual)
        return None


async def _give_back(deps: DisconnectDeps, request: DisconnectRequest) -> None:
    """Cancelled (shutdown or job timeout): re-queue under a fresh job, attempt not spent."""
    note = "job cancelled mid-attempt (worker shutdown or job timeout); attempt not spent"
    try:
        await deps.ledger.transition(
            request,
            RequestStatus.QUEUED,
            TransitionDetails(message=note),
            attempts_delta=-1,
            enqueue_in=0.0,
        )
    except StaleTransition:
        log.warning("job.give_back_lost_race")


async def _locked_attempt(deps: DisconnectDeps, request: DisconnectRequest) -> Outcome:
    """The attempt under the account's lock: Stripe answers ``lock_timeout`` to parallel calls."""
    try:
        async with AccountLock(
            deps.ledger.redis,
            request.account_id,
            ttl_seconds=deps.lock_seconds,
            key_prefix=f"{deps.ledger.prefix}lock:account:",
        ):
            return await attempt_disconnect(deps, request)
    except AccountBusy:
        note = "another call holds this account's lock; trying again shortly"
        return Outcome(
            RequestStatus.RETRY_SCHEDULED, TransitionDetails(message=note), attempt_free=True
        )
    except LimiterPaused:
        note = "service paused; request handed back to the queue, attempt not spent"
        return Outcome(RequestStatus.QUEUED, TransitionDetails(message=note), attempt_free=True)


async def _call_stripe(
    deps: DisconnectDeps, endpoint: str, call: Callable[[], Awaitable[StripeResult]]
) -> StripeResult:
    """One Stripe call at the shared limiter; a limiter 429 slows every worker down."""
    try:
        async with deps.gate.slot(endpoint, priority=deps.priority, wait_if_paused=False):
            return await call()
    except StripeAPIError as exc:
        if exc.is_rate_limit:
            await deps.gate.report_rate_limited(endpoint, exc.meta.rate_limited_reason)
        raise


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
    try:
        result = await _call_stripe(
            deps,
            "disconnect",
            lambda: deps.stripe.disconnect_account(
                request.account_id,
                idempotency_key=key_request.idempotency_key,
                stripe_account=request.stripe_account,
            ),
        )
    except StripeError as exc:
        return await _after_error(deps, request, exc)
    return Outcome(
        RequestStatus.DISCONNECTED,
        _details(result.meta, "disconnected by this service"),
        fresh_idempotency_key=refresh_key,
    )


async def _precheck(deps: DisconnectDeps, request: DisconnectRequest) -> Outcome | None:
    """Retrieve the account; an outcome if that already settles the request, else ``None``."""
    try:
        account, meta = await _retrieve(deps, request)
    except StripeError as exc:
        return _from_error(exc)
    if account.get("status") != "disconnected":
        return None
    if request.attempts > 1:
        note = "found disconnected after an earlier attempt of ours"
        return Outcome(RequestStatus.DISCONNECTED, _details(meta, note))
    return Outcome(RequestStatus.ALREADY_DISCONNECTED, _details(meta, "was already disconnected"))


async def _after_error(
    deps: DisconnectDeps, request: DisconnectRequest, error: StripeError
) -> Outcome:
    decision = decide(error)
    if decision.action != Action.CHECK_ACCOUNT:
        return _from_error(error)
    try:
        account, meta = await _retrieve(deps, request)
    except StripeError as exc:
        return _from_error(exc, fresh_key=decision.fresh_idempotency_key)
    if account.get("status") == "disconnected":
        status = (
            RequestStatus.DISCONNECTED
            if decision.fresh_idempotency_key
            else RequestStatus.ALREADY_DISCONNECTED
        )
        note = f"account is disconnected (checked after HTTP {error.http_status}: {error.message})"
        return Outcome(status, _details(meta, note, error))
    if decision.otherwise == Action.RETRY:
        return Outcome(
            RequestStatus.RETRY_SCHEDULED, _details(error.meta, error.message, error), True
        )
    return Outcome(RequestStatus.FAILED, _details(error.meta, error.message, error))


def _from_error(error: StripeError, *, fresh_key: bool = False) -> Outcome:
    """Outcome of an error that needs no further look at the account."""
    decision = decide(error)
    details = _details(error.meta, error.message, error)
    if is_auth_failure(error):
        return Outcome(RequestStatus.QUEUED, details, attempt_free=True, trip_breaker=True)
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
    result = await _call_stripe(
        deps,
        "retrieve",
        lambda: deps.stripe.retrieve_account(
            request.account_id, stripe_account=request.stripe_account
        ),
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


async def _record_outcome(
    deps: DisconnectDeps, request: DisconnectRequest, outcome: Outcome
) -> DisconnectRequest:
    details = outcome.details
    updates: dict[str, Any] = {"last_stripe_request_id": details.stripe_request_id}
    failing = outcome.status in (RequestStatus.RETRY_SCHEDULED, RequestStatus.FAILED)
    updates["last_error"] = details.message if failing else None
    updates["last_error_code"] = (
        (details.stripe_error_code or details.http_status) if failing else None
    )
    if outcome.fresh_idempotency_key:
        updates["idempotency_generation"] = request.idempotency_generation + 1
    if outcome.trip_breaker:
        await _trip_breaker(deps, details)
        details = replace(details, message=f"circuit breaker paused all work; {details.message}")
    if outcome.status == RequestStatus.QUEUED:
        return await deps.ledger.transition(
            request,
            RequestStatus.QUEUED,
            details,
            attempts_delta=-1,
            enqueue_in=deps.paused_recheck_seconds,
            updates=updates,
        )
    if outcome.status != RequestStatus.RETRY_SCHEDULED:
        return await deps.ledger.transition(request, outcome.status, details, updates=updates)
    refund = -1 if outcome.attempt_free else 0
    # Age counts from the first attempt since the last (re)queue: an operator's requeue resets it.
    started = request.first_attempt_at or request.created_at
    spent = deps.policy.exhausted(request.attempts + refund, time.time() - started)
    if spent is not None:
        failed = replace(details, message=f"{spent}; last error: {details.message}")
        return await deps.ledger.transition(request, RequestStatus.FAILED, failed, updates=updates)
    delay = deps.policy.backoff(max(request.attempts + refund, 1))
    details = replace(details, message=f"{details.message}; retrying in {delay:.1f}s")
    return await deps.ledger.transition(
        request,
        RequestStatus.RETRY_SCHEDULED,
        details,
        attempts_delta=refund,
        enqueue_in=delay,
        updates=updates,
    )


async def _trip_breaker(deps: DisconnectDeps, details: TransitionDetails) -> None:
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
