"""The customer job: list a customer's accounts through Stripe and submit one request for each.

Contract of :func:`run_customer` (the same claim and give-back as every kind, :mod:`worker.claims`):

- It claims the parent only if this job is its current job and it is waiting (``queued`` or
  ``retry_scheduled``), or was ``listing`` under this very job when its worker died (the listing
  then resumes from the saved cursor).
- Pages are read with ``starting_after`` (100 accounts a page), each call through the worker's
  gate (``gate.slot("list")``). Each child is submitted and recorded on the parent in one script,
  so a listing cut off anywhere never forgets a child; the cursor is saved after each page, so a
  crash repeats at most one page, whose known children are skipped. On a resumed listing an
  account whose request (active or finished) names this parent is a known child too, so a child
  that already finished is never submitted again (children recorded by older versions).
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
from ledger.detached import run_detached
from ledger.models import ACCOUNT_ID_RE, StaleTransition
from worker.calls import DisconnectDeps, call_stripe, trip_breaker
from worker.claims import JobResult, claim, give_back
from worker.outcomes import is_auth_failure, is_transient
from worker.ratelimit import LimiterPaused
from worker.settings import WorkerSettings
from worker.stripe_client import StripeAPIError, StripeError

log = structlog.get_logger("fcd.worker")

PAGE_SIZE = 100
RESUME_NOTE = "previous worker was lost mid-listing; resuming from the saved cursor"
CANCELLED_NOTE = "job cancelled mid-listing (worker shutdown or job timeout); attempt not spent"
PAUSED_NOTE = "service paused; listing handed back to the queue, attempt not spent"


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
    if result == JobResult.PAUSED:
        raise Retry(defer=deps.base.paused_recheck_seconds)
    return str(result)


async def run_customer(
    deps: CustomerDeps, parent_id: str, job_id: str
) -> CustomerStatus | JobResult:
    """Run the listing for ``parent_id`` as job ``job_id``; return the parent's new status,
    :attr:`JobResult.SKIPPED` or :attr:`JobResult.PAUSED` (nothing done while paused)."""
    ledger = deps.base.ledger
    if await get_pause(ledger.redis, key=ledger.pause_key) is not None:
        return JobResult.PAUSED
    customers = deps.customers
    parent = await claim(customers, await customers.get(parent_id), job_id, resume_note=RESUME_NOTE)
    if parent is None:
        return JobResult.SKIPPED
    try:
        return await _list_then_finish(deps, parent)
    except StaleTransition:
        log.info("customer.lost_race")
        return JobResult.SKIPPED


async def _list_then_finish(
    deps: CustomerDeps, parent: CustomerRequest
) -> CustomerStatus | JobResult:
    customers = deps.customers
    try:
        parent = await list_and_submit(deps, parent)
    except asyncio.CancelledError:
        await run_detached(give_back(customers, parent, TransitionDetails(CANCELLED_NOTE)))
        raise
    except LimiterPaused:
        return await _hand_back(deps, parent, TransitionDetails(message=PAUSED_NOTE))
    except StripeError as exc:
        if is_auth_failure(exc, parent.stripe_account):
            details = _error_details(parent, exc)
            await trip_breaker(deps.base, details)
            return await _hand_back(deps, parent, details)
        return await _after_error(deps, parent, exc)
    total = len(await customers.children(parent.request_id))
    message = f"customer {parent.customer_id}: {total} account(s) listed, each has a request"
    listed = await customers.transition(
        parent, CustomerStatus.LISTED, TransitionDetails(message=message)
    )
    return listed.status


async def list_and_submit(deps: CustomerDeps, parent: CustomerRequest) -> CustomerRequest:
    """Page through the customer's accounts from the saved cursor, submitting each one once."""
    known = await deps.customers.children(parent.request_id)
    resumed = parent.attempts > 1 or parent.cursor is not None
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
            if account_id in known:
                continue
            earlier = await _earlier_child(deps, parent, account_id) if resumed else None
            page[account_id] = earlier or await _submit_child(deps, parent, account_id)
        cursor = accounts[-1] if accounts else cursor
        parent = await deps.customers.add_children(parent, page, cursor)
        known.update(page)
        if not accounts or not result.body.get("has_more"):
            return parent


async def _earlier_child(
    deps: CustomerDeps, parent: CustomerRequest, account_id: str
) -> str | None:
    """A request for ``account_id`` made by this parent before a crash, if there is one (it is
    recorded as the parent's child; never submitted again)."""
    ledger = deps.base.ledger
    for request_id in reversed(await ledger.requests_for_account(account_id)):
        if (await ledger.get(request_id)).parent_id == parent.request_id:
            await deps.base.ledger.redis.hset(  # type: ignore[misc]
                deps.customers.children_key(parent.request_id), account_id, request_id
            )
            return request_id
    return None


async def _submit_child(deps: CustomerDeps, parent: CustomerRequest, account_id: str) -> str:
    submission = await deps.base.ledger.submit(
        account_id,
        source=parent.source,
        reference=parent.reference,
        reason=parent.reason,
        stripe_account=parent.stripe_account,
        parent_id=parent.request_id,
        children_key=deps.customers.children_key(parent.request_id),
    )
    return submission.request_id


async def _after_error(
    deps: CustomerDeps, parent: CustomerRequest, error: StripeError
) -> CustomerStatus:
    retry = is_transient(error)
    details = _error_details(parent, error)
    message = details.message or ""
    refund = -1 if isinstance(error, StripeAPIError) and error.is_rate_limit else 0
    policy = deps.base.policy
    spent = policy.exhausted(parent.attempts + refund, time.time() - parent.created_at)
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
        return moved.status
    if spent is not None and retry:
        details = replace(details, message=f"{spent}; last error: {message}")
    failed = await deps.customers.transition(
        parent, CustomerStatus.FAILED, details, updates={"last_error": message}
    )
    return failed.status


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
) -> CustomerStatus | JobResult:
    """Paused (by hand or by the breaker): back to ``queued`` under a deferred job, attempt kept."""
    moved = await give_back(deps.customers, parent, details, delay=deps.base.paused_recheck_seconds)
    return JobResult.SKIPPED if moved is None else moved.status
