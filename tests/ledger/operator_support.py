"""Helpers that put requests into the states operators deal with, through the real ledger."""

from __future__ import annotations

from ledger.audit import TransitionDetails
from ledger.models import DisconnectRequest, RequestSource, RequestStatus
from ledger.store import Ledger


async def submitted(ledger: Ledger, account_id: str) -> DisconnectRequest:
    """A fresh ``queued`` request for ``account_id``."""
    submission = await ledger.submit(account_id, source=RequestSource.OPERATOR, reference="t")
    return await ledger.get(submission.request_id)


async def in_progress(ledger: Ledger, account_id: str) -> DisconnectRequest:
    """A request a worker has claimed (attempt 1)."""
    request = await submitted(ledger, account_id)
    return await ledger.transition(request, RequestStatus.IN_PROGRESS, attempts_delta=1)


async def failed(
    ledger: Ledger,
    account_id: str,
    *,
    code: str = "api_key_expired",
    http_status: int = 401,
    attempts: int = 1,
) -> DisconnectRequest:
    """A request that failed after ``attempts`` attempts with Stripe error ``code``."""
    request = await in_progress(ledger, account_id)
    for _ in range(attempts - 1):
        request = await ledger.transition(request, RequestStatus.RETRY_SCHEDULED, enqueue_in=0.0)
        request = await ledger.transition(request, RequestStatus.IN_PROGRESS, attempts_delta=1)
    details = TransitionDetails(
        message=f"Stripe said {code}",
        stripe_request_id=f"req_{account_id}",
        http_status=http_status,
        stripe_error_code=code,
    )
    updates = {
        "last_error": f"Stripe said {code}",
        "last_error_code": code,
        "last_stripe_request_id": f"req_{account_id}",
    }
    return await ledger.transition(request, RequestStatus.FAILED, details, updates=updates)
