"""The core of a disconnect job, free of arq: claim the request, call Stripe, record the outcome.

Contract of :func:`run_disconnect`:

- It claims the request through :func:`worker.claims.claim` (only this job's, only if waiting or
  lost mid-attempt under this job) and moves it with exactly one ledger transition per status
  change; a transition that lost a race (:class:`StaleTransition`) means someone else owns the
  request, and the job stops with :attr:`JobResult.SKIPPED`.
- The intent to post is written to the request (``last_posted_at``, under its claim) before the
  disconnect POST goes out, so an attempt cut off mid-call (shutdown, timeout, a killed worker)
  still counts as having posted: the next attempt never mistakes our own disconnect for an
  earlier one.
- If the job is cancelled (worker shutdown) mid-attempt, the request goes back to ``queued``
  under a fresh job without spending the attempt.
- While the service is paused it does nothing and returns :attr:`JobResult.PAUSED` (the adapter
  defers the job). A 401/403 from Stripe trips the circuit breaker: it pauses every worker (one
  loud ``service.paused`` event) and puts the request back to ``queued``, attempt not spent.
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
from ledger.detached import run_detached
from ledger.models import DisconnectRequest, RequestStatus, StaleTransition
from worker.attempt import ClaimLost, DisconnectDeps, Outcome, locked_attempt
from worker.calls import trip_breaker
from worker.claims import CANCELLED_NOTE, JobResult, claim, give_back

__all__ = ["DisconnectDeps", "JobResult", "Outcome", "run_disconnect"]

log = structlog.get_logger("fcd.worker")

RESUME_NOTE = "previous worker was lost mid-attempt; resuming with the same idempotency key"


async def run_disconnect(
    deps: DisconnectDeps, request_id: str, job_id: str
) -> RequestStatus | JobResult:
    """Run one attempt for ``request_id`` as arq job ``job_id``; return the resulting status,
    :attr:`JobResult.SKIPPED` (not this job's to do) or :attr:`JobResult.PAUSED`."""
    ledger = deps.ledger
    if await get_pause(ledger.redis, key=ledger.pause_key) is not None:
        return JobResult.PAUSED
    snapshot = await ledger.get(request_id)
    updates = {} if snapshot.first_attempt_at else {"first_attempt_at": time.time()}
    request = await claim(ledger, snapshot, job_id, resume_note=RESUME_NOTE, updates=updates)
    if request is None:
        return JobResult.SKIPPED
    structlog.contextvars.bind_contextvars(attempt=request.attempts)
    try:
        spent = _budget_spent_before(deps, request)
        if spent is not None:
            note = f"{spent}; earlier attempts ended without a recorded outcome"
            failed = await ledger.transition(
                request, RequestStatus.FAILED, TransitionDetails(message=note)
            )
            return failed.status
        try:
            outcome = await locked_attempt(deps, request)
        except asyncio.CancelledError:
            await run_detached(give_back(ledger, request, TransitionDetails(CANCELLED_NOTE)))
            raise
        except ClaimLost:
            log.info("job.claim_lost")
            return JobResult.SKIPPED
        except Exception as exc:  # a bug or Redis trouble mid-attempt: record it, budget applies
            log.exception("job.attempt_crashed")
            note = f"internal error during the attempt: {type(exc).__name__}: {exc}"
            outcome = Outcome(RequestStatus.RETRY_SCHEDULED, TransitionDetails(message=note))
        return (await _record_outcome(deps, request, outcome)).status
    except StaleTransition as exc:
        log.info("job.lost_race", actual=exc.actual)
        return JobResult.SKIPPED


def _budget_spent_before(deps: DisconnectDeps, request: DisconnectRequest) -> str | None:
    """The budget spent by earlier attempts alone: they crashed or their worker was lost, so no
    outcome ever checked it (the reconciler brought the request back)."""
    started = request.first_attempt_at or request.created_at
    return deps.policy.exhausted(request.attempts - 1, time.time() - started)


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
        await trip_breaker(deps, details)
        details = replace(details, message=f"circuit breaker paused all work; {details.message}")
    ledger = deps.ledger
    if outcome.status == RequestStatus.QUEUED:
        moved = await give_back(
            ledger, request, details, delay=deps.paused_recheck_seconds, updates=updates
        )
        if moved is None:
            raise StaleTransition(request.request_id, "in_progress", None)
        return moved
    if outcome.status != RequestStatus.RETRY_SCHEDULED:
        return await ledger.transition(request, outcome.status, details, updates=updates)
    refund = -1 if outcome.attempt_free else 0
    # Age counts from the first attempt since the last (re)queue: an operator's requeue resets it.
    started = request.first_attempt_at or request.created_at
    spent = deps.policy.exhausted(request.attempts + refund, time.time() - started)
    if spent is not None:
        failed = replace(details, message=f"{spent}; last error: {details.message}")
        return await ledger.transition(request, RequestStatus.FAILED, failed, updates=updates)
    delay = max(deps.policy.backoff(max(request.attempts + refund, 1)), outcome.not_before)
    details = replace(details, message=f"{details.message}; retrying in {delay:.1f}s")
    return await ledger.transition(
        request,
        RequestStatus.RETRY_SCHEDULED,
        details,
        attempts_delta=refund,
        enqueue_in=delay,
        updates=updates,
    )
