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
from dataclasses import replace
from typing import Any

import structlog

from control.pause import get_pause
from ledger.audit import TransitionDetails
from ledger.models import DisconnectRequest, RequestStatus, StaleTransition
from worker.attempt import DisconnectDeps, Outcome, locked_attempt, trip_breaker

__all__ = ["DisconnectDeps", "Outcome", "run_disconnect"]

log = structlog.get_logger("fcd.worker")

WAITING = frozenset({RequestStatus.QUEUED, RequestStatus.RETRY_SCHEDULED})


async def run_disconnect(deps: DisconnectDeps, request_id: str, job_id: str) -> str:
    """Run one attempt for ``request_id`` as arq job ``job_id``; return the resulting status,
    ``"skipped"`` (not this job's to do) or ``"paused"`` (nothing done; run the job later)."""
    if await get_pause(deps.ledger.redis, key=deps.ledger.pause_key) is not None:
        return "paused"
    try:
        request = await _claim(deps, await deps.ledger.get(request_id), job_id)
    except asyncio.CancelledError:
        await asyncio.shield(_give_back_if_claimed(deps, request_id, job_id))
        raise
    if request is None:
        return "skipped"
    structlog.contextvars.bind_contextvars(attempt=request.attempts)
    spent = _budget_spent_before(deps, request)
    if spent is not None:
        note = f"{spent}; earlier attempts ended without a recorded outcome"
        failed = await deps.ledger.transition(
            request, RequestStatus.FAILED, TransitionDetails(message=note)
        )
        return failed.status.value
    try:
        outcome = await locked_attempt(deps, request)
    except asyncio.CancelledError:
        await asyncio.shield(_give_back(deps, request))
        raise
    except Exception as exc:  # a bug or Redis trouble mid-attempt: record it, budget applies
        log.exception("job.attempt_crashed")
        note = f"internal error during the attempt: {type(exc).__name__}: {exc}"
        outcome = Outcome(RequestStatus.RETRY_SCHEDULED, TransitionDetails(message=note))
    final = await _record_outcome(deps, request, outcome)
    return final.status.value


def _budget_spent_before(deps: DisconnectDeps, request: DisconnectRequest) -> str | None:
    """The budget spent by earlier attempts alone: they crashed or their worker was lost, so no
    outcome ever checked it (the reconciler brought the request back)."""
    started = request.first_attempt_at or request.created_at
    return deps.policy.exhausted(request.attempts - 1, time.time() - started)


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


async def _give_back_if_claimed(deps: DisconnectDeps, request_id: str, job_id: str) -> None:
    """Cancelled while claiming: if the claim went through, hand the request straight back."""
    request = await deps.ledger.get(request_id)
    if request.status == RequestStatus.IN_PROGRESS and request.job_id == job_id:
        await _give_back(deps, request)


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
    if outcome.posted:
        updates["last_posted_at"] = time.time()
    if outcome.trip_breaker:
        await trip_breaker(deps, details)
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
