"""The customer job: list a customer's accounts through Stripe and submit one request for each.

Contract of :func:`run_customer` (mirrors :mod:`worker.disconnect`):

- It acts only if this job is the parent's current job and the parent is waiting (``queued`` or
  ``retry_scheduled``), or was ``listing`` under this very job when its worker died (the listing
  then resumes from the saved cursor).
- Pages are read with ``starting_after`` (100 accounts a page), each call through the worker's
  gate (``gate.slot("list")``). Each page's children and the cursor are recorded in one step
  after the page's accounts are submitted, so a crash repeats at most one page; repeating a
  submission merges into the account's active request.
- A list error is decided like a disconnect error (:func:`worker.outcomes.decide`): transient
  ones schedule a retry with the same backoff and attempt budget (a limiter 429 does not spend
  an attempt); anything else fails the parent. A 401, or a 403 for the platform's own call,
  trips the circuit breaker instead and, like a pause, hands the parent back to ``queued``
  (attempt not spent). A 403 for a listing made with ``Stripe-Account`` fails this parent only
  (that connected account's access was revoked). Children submitted before the failure still run.
- Cancelled mid-listing (shutdown or job timeout): the parent goes back to ``queued`` under a
  fresh job, the attempt not spent.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, replace
from functools import partial
from typing import Any

import structlog
from arq import Retry

from control.pause import get_pause
from ledger.audit import AuditTrail, TransitionDetails
from ledger.customer_models import CustomerJob, CustomerRequest, CustomerStatus
from ledger.customers import CustomerLedger
from ledger.models import ACCOUNT_ID_RE, StaleTransition
from worker.attempt import DisconnectDeps, call_stripe, trip_breaker
from worker.outcomes import is_auth_failure, is_transient
from worker.ratelimit import LimiterPaused
from worker.settings import WorkerSettings
from worker.stripe_client import StripeAPIError, StripeError

log = structlog.get_logger("fcd.worker")

PAGE_SIZE = 100
_WAITING = frozenset({CustomerStatus.QUEUED, CustomerStatus.RETRY_SCHEDULED})


@dataclass(frozen=True)
class CustomerDeps:
    """The customer ledger plus the disconnect job's deps (ledger, Stripe, gate, retry policy)."""

    customers: CustomerLedger
    base: DisconnectDeps


def build_customer_deps(
    deps: DisconnectDeps, audit: AuditTrail, settings: WorkerSettings
) -> CustomerDeps:
    return CustomerDeps(CustomerLedger(deps.ledger, audit, settings.job_expires_seconds), deps)


async def disconnect_customer(ctx: dict[str, Any], payload: dict[str, Any]) -> str:
    """arq job: list the accounts of the customer request named in ``payload``."""
    job = CustomerJob.model_validate(payload)
    deps: CustomerDeps = ctx["customer_deps"]
    with structlog.contextvars.bound_contextvars(request_id=job.parent_id, job_id=ctx["job_id"]):
        result = await run_customer(deps, job.parent_id, ctx["job_id"])
    if result == "paused":
        raise Retry(defer=deps.base.paused_recheck_seconds)
    return result


async def run_customer(deps: CustomerDeps, parent_id: str, job_id: str) -> str:
    """Run the listing for ``parent_id`` as job ``job_id``; return the parent's new status,
    ``"skipped"`` or ``"paused"`` (nothing done while the service is paused)."""
    ledger = deps.base.ledger
    if await get_pause(ledger.redis, key=ledger.pause_key) is not None:
        return "paused"
    parent = await _claim(deps, await deps.customers.get(parent_id), job_id)
    if parent is None:
        return "skipped"
    try:
        parent = await list_and_submit(deps, parent)
    except asyncio.CancelledError:
        await asyncio.shield(_give_back(deps, parent))
        raise
    except LimiterPaused:
        note = "service paused; listing handed back to the queue, attempt not spent"
        return await _hand_back(deps, parent, TransitionDetails(message=note))
    except StripeError as exc:
        if is_auth_failure(exc, parent.stripe_account):
            details = _error_details(parent, exc)
            await trip_breaker(deps.base, details)
            return await _hand_back(deps, parent, details)
        return await _after_error(deps, parent, exc)
    total = len(await deps.customers.children(parent_id))
    message = f"customer {parent.customer_id}: {total} account(s) listed, each has a request"
    try:
        await deps.customers.transition(
            parent, CustomerStatus.LISTED, TransitionDetails(message=message)
        )
    except StaleTransition:
        log.info("customer.lost_race")
        return "skipped"
    return CustomerStatus.LISTED.value


async def _claim(
    deps: CustomerDeps, parent: CustomerRequest, job_id: str
) -> CustomerRequest | None:
    if parent.job_id != job_id:
        log.info("job.stale", current_job_id=parent.job_id)
        return None
    try:
        if parent.status == CustomerStatus.LISTING:
            note = "previous worker was lost mid-listing; resuming from the saved cursor"
            parent = await deps.customers.transition(
                parent, CustomerStatus.QUEUED, TransitionDetails(message=note)
            )
        if parent.status not in _WAITING:
            log.info("job.not_waiting", status=parent.status.value)
            return None
        return await deps.customers.transition(parent, CustomerStatus.LISTING, attempts_delta=1)
    except StaleTransition as exc:
        log.info("job.lost_race", actual=exc.actual)
        return None


async def list_and_submit(deps: CustomerDeps, parent: CustomerRequest) -> CustomerRequest:
    """Page through the customer's accounts from the saved cursor, submitting each one once."""
    known = await deps.customers.children(parent.request_id)
    cursor = parent.cursor
    while True:
        fetch_page = partial(
            deps.base.stripe.list_accounts,
            customer=parent.customer_id,
            limit=PAGE_SIZE,
            starting_after=cursor,
            stripe_account=parent.stripe_account,
        )
        result = await call_stripe(
            deps.base, "list", fetch_page, stripe_account=parent.stripe_account
        )
        data = result.body.get("data")
        ids = [a.get("id") for a in data if isinstance(a, dict)] if isinstance(data, list) else []
        accounts = [i for i in ids if isinstance(i, str) and ACCOUNT_ID_RE.match(i)]
        page: dict[str, str] = {}
        for account_id in accounts:
            if account_id not in known:
                page[account_id] = await _submit_child(deps, parent, account_id)
        cursor = accounts[-1] if accounts else cursor
        parent = await deps.customers.add_children(parent, page, cursor)
        known.update(page)
        if not accounts or not result.body.get("has_more"):
            return parent


async def _submit_child(deps: CustomerDeps, parent: CustomerRequest, account_id: str) -> str:
    submission = await deps.base.ledger.submit(
        account_id,
        source=parent.source,
        reference=parent.reference,
        reason=parent.reason,
        stripe_account=parent.stripe_account,
        parent_id=parent.request_id,
    )
    return submission.request_id


async def _after_error(deps: CustomerDeps, parent: CustomerRequest, error: StripeError) -> str:
    retry = is_transient(error)
    details = _error_details(parent, error)
    message = details.message or ""
    refund = -1 if isinstance(error, StripeAPIError) and error.is_rate_limit else 0
    policy = deps.base.policy
    spent = policy.exhausted(parent.attempts + refund, time.time() - parent.created_at)
    try:
        if retry and spent is None:
            delay = policy.backoff(max(parent.attempts, 1))
            details = replace(details, message=f"{message}; retrying in {delay:.1f}s")
            moved = await deps.customers.transition(
                parent,
                CustomerStatus.RETRY_SCHEDULED,
                details,
                attempts_delta=refund,
                enqueue_in=delay,
                updates={"last_error": message},
            )
            return moved.status.value
        if spent is not None and retry:
            details = replace(details, message=f"{spent}; last error: {message}")
        failed = await deps.customers.transition(
            parent, CustomerStatus.FAILED, details, updates={"last_error": message}
        )
        return failed.status.value
    except StaleTransition:
        log.info("customer.lost_race")
        return "skipped"


def _error_details(parent: CustomerRequest, error: StripeError) -> TransitionDetails:
    return TransitionDetails(
        message=f"listing accounts of {parent.customer_id}: {error.message}",
        stripe_request_id=error.stripe_request_id,
        http_status=error.http_status,
        stripe_error_code=error.code if isinstance(error, StripeAPIError) else None,
        duration_ms=error.meta.duration_ms,
    )


async def _hand_back(
    deps: CustomerDeps, parent: CustomerRequest, details: TransitionDetails
) -> str:
    """Paused (by hand or by the breaker): back to ``queued`` under a deferred job, attempt kept."""
    try:
        moved = await deps.customers.transition(
            parent,
            CustomerStatus.QUEUED,
            details,
            attempts_delta=-1,
            enqueue_in=deps.base.paused_recheck_seconds,
        )
    except StaleTransition:
        log.info("customer.lost_race")
        return "skipped"
    return moved.status.value


async def _give_back(deps: CustomerDeps, parent: CustomerRequest) -> None:
    note = "job cancelled mid-listing (worker shutdown or job timeout); attempt not spent"
    try:
        await deps.customers.transition(
            parent,
            CustomerStatus.QUEUED,
            TransitionDetails(message=note),
            attempts_delta=-1,
            enqueue_in=0.0,
        )
    except StaleTransition:
        log.warning("job.give_back_lost_race")
