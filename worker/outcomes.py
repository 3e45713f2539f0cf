"""Pure decisions: what a Stripe answer means for a disconnect request.

No I/O here, so every rule is unit-tested directly. The rules (Stripe's ``Stripe-Should-Retry``
header, when present, overrides the status-based choice between retrying and failing):

==========================================  ===================================================
answer                                      decision
==========================================  ===================================================
2xx                                         ``disconnected``
404 ``resource_missing``                    ``not_found`` (never retried)
400 (e.g. already disconnected)             retrieve the account: disconnected ->
                                            ``already_disconnected``, else ``failed``
401, 403                                    circuit breaker: pause all work, request stays
                                            ``queued`` (attempt not spent)
500                                         retrieve the account: disconnected -> done, else
                                            retry with a fresh Idempotency-Key (Stripe stored
                                            the 500 under the old one and would replay it)
409, 424, 429, 502, 503, 504, other 5xx     retry with backoff
timeout, connection error                   retry with backoff (same key: a replay is safe)
other 4xx                                   ``failed``
==========================================  ===================================================
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from ledger.models import RequestStatus
from worker.stripe_client import StripeAPIError, StripeError

RETRYABLE_STATUSES = frozenset({409, 424, 429})


class Action(StrEnum):
    FINISH = "finish"  # move to ``Decision.status`` (terminal)
    RETRY = "retry"  # schedule another attempt, budget permitting
    CHECK_ACCOUNT = "check_account"  # retrieve the account, then decide


@dataclass(frozen=True)
class Decision:
    action: Action
    status: RequestStatus | None = None
    fresh_idempotency_key: bool = False
    #: For CHECK_ACCOUNT: what to do if the account is *not* disconnected.
    otherwise: Action | None = None


def decide(error: StripeError) -> Decision:
    """Map a failed disconnect call to the next step (see the module docstring's table)."""
    if not isinstance(error, StripeAPIError):
        return Decision(Action.RETRY)
    status = error.http_status or 0
    if status == 404 and error.code == "resource_missing":
        return Decision(Action.FINISH, RequestStatus.NOT_FOUND)
    if status == 500:
        otherwise = Action.FINISH if error.should_retry is False else Action.RETRY
        return Decision(Action.CHECK_ACCOUNT, fresh_idempotency_key=True, otherwise=otherwise)
    retry_by_status = status >= 500 or status in RETRYABLE_STATUSES
    retry = retry_by_status if error.should_retry is None else error.should_retry
    if retry:
        return Decision(Action.RETRY)
    if status == 400:
        return Decision(Action.CHECK_ACCOUNT, otherwise=Action.FINISH)
    return Decision(Action.FINISH, RequestStatus.FAILED)


def is_auth_failure(error: StripeError) -> bool:
    """401/403: the key is wrong or lacks permission; no request can succeed until fixed."""
    return isinstance(error, StripeAPIError) and error.http_status in (401, 403)


def is_transient(error: StripeError) -> bool:
    """Whether another attempt may succeed: for calls that never check the account themselves
    (listings), a "check the account, then retry" decision is a retry."""
    decision = decide(error)
    return decision.action == Action.RETRY or (
        decision.action == Action.CHECK_ACCOUNT and decision.otherwise == Action.RETRY
    )
