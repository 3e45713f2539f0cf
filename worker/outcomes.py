"""Pure decisions: what a Stripe answer means for a disconnect request.

No I/O here, so every rule is unit-tested directly. The rules follow Stripe's low-level error
handling guide and stripe-python's ``_http_client._should_retry``:

==========================================  ===================================================
answer                                      decision
==========================================  ===================================================
2xx                                         ``disconnected``
404 ``resource_missing``                    ``not_found`` (never retried)
401                                         circuit breaker: pause all work, request stays
                                            ``queued`` (attempt not spent)
403 without ``Stripe-Account``              circuit breaker, as 401 (the key lacks permission)
403 with ``Stripe-Account``                 ``failed`` for this request only (platform access to
                                            that connected account revoked, or never granted)
500, 502, 503, 504, other 5xx, 424          retrieve the account: disconnected -> done, else
                                            retry with a fresh Idempotency-Key (Stripe may have
                                            stored the error under the old key and would replay
                                            it for 24 h), whatever ``Stripe-Should-Retry`` says
an error with ``Idempotent-Replayed: true``  retrieve the account: disconnected -> done, else
                                            decide by the status below, with a fresh key
400 ``account_already_disconnected``        ``already_disconnected`` (the answer says so)
400 ``financial_connections_account_        ``failed`` (the account is inactive, not
inactive``                                  disconnected: the answer says so)
other 400                                   retrieve the account: disconnected ->
                                            ``already_disconnected``, else ``failed``
409, 429                                    retry with backoff, same key (409: the key is in
                                            use; 429: a limiter or ``lock_timeout``, never
                                            stored by Stripe)
timeout, connection error                   retry with backoff (same key: a replay is safe)
other 4xx                                   ``failed``
==========================================  ===================================================

``Stripe-Should-Retry``, when present, overrides the status-based choice for 4xx answers (``true``
on a ``lock_timeout``, say). On 5xx it only says whether a retry *with the same key* could have an
effect ("we expect the stripe-should-retry header to be false in most cases when a 500 is
returned, since our idempotency framework would typically replay it anyway", stripe-python):
the retry here always uses a fresh key after the account was checked, so a 500 never ends a
request by itself; the attempt budget does.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from ledger.models import RequestStatus
from worker.stripe_client import StripeAPIError, StripeError

RETRYABLE_STATUSES = frozenset({409, 429})
#: 400 codes that say by themselves what the account is, so no retrieve is needed. Stripe
#: documents neither answer (the emulator's ``already_disconnected_mode="400"`` and
#: ``inactive_disconnect_mode="400"``); any other 400 is checked with a retrieve.
ALREADY_DISCONNECTED_CODES = frozenset({"account_already_disconnected"})
NOT_DISCONNECTABLE_CODES = frozenset({"financial_connections_account_inactive"})


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
    #: For CHECK_ACCOUNT: the failed call may have disconnected the account itself (5xx, 424),
    #: so an account found disconnected counts as ``disconnected``, not ``already_disconnected``.
    call_may_have_acted: bool = False


def decide(error: StripeError) -> Decision:
    """Map a failed disconnect call to the next step (see the module docstring's table)."""
    if not isinstance(error, StripeAPIError):
        return Decision(Action.RETRY)
    status = error.http_status or 0
    if status == 404 and error.code == "resource_missing":
        return Decision(Action.FINISH, RequestStatus.NOT_FOUND)
    if status >= 500 or status == 424:
        return Decision(
            Action.CHECK_ACCOUNT,
            fresh_idempotency_key=True,
            otherwise=Action.RETRY,
            call_may_have_acted=True,
        )
    by_status = _decide_4xx(error, status)
    if error.meta.idempotent_replayed:
        otherwise = Action.RETRY if by_status.action == Action.RETRY else Action.FINISH
        return Decision(Action.CHECK_ACCOUNT, fresh_idempotency_key=True, otherwise=otherwise)
    return by_status


def _decide_4xx(error: StripeAPIError, status: int) -> Decision:
    retry_by_status = status in RETRYABLE_STATUSES
    retry = retry_by_status if error.should_retry is None else error.should_retry
    if retry:
        return Decision(Action.RETRY)
    if status == 400 and error.code in ALREADY_DISCONNECTED_CODES:
        return Decision(Action.FINISH, RequestStatus.ALREADY_DISCONNECTED)
    if status == 400 and error.code in NOT_DISCONNECTABLE_CODES:
        return Decision(Action.FINISH, RequestStatus.FAILED)
    if status == 400:
        return Decision(Action.CHECK_ACCOUNT, otherwise=Action.FINISH)
    return Decision(Action.FINISH, RequestStatus.FAILED)


def is_transient(error: StripeError) -> bool:
    """Whether another try could succeed (for callers that cannot check an account first)."""
    decision = decide(error)
    return decision.action == Action.RETRY or (
        decision.action == Action.CHECK_ACCOUNT and decision.otherwise == Action.RETRY
    )


def is_auth_failure(error: StripeError, stripe_account: str | None = None) -> bool:
    """Whether no request at all can succeed until someone fixes the key: 401 always; 403 only
    when the call was the platform's own (no ``Stripe-Account``). A 403 for a connected account
    concerns that account alone (its platform access was revoked, or it never was connected)."""
    if not isinstance(error, StripeAPIError):
        return False
    if error.http_status == 401:
        return True
    return error.http_status == 403 and not stripe_account


def is_account_forbidden(error: StripeError, stripe_account: str | None) -> bool:
    """A 403 for a call made on behalf of a connected account (see :func:`is_auth_failure`)."""
    return isinstance(error, StripeAPIError) and error.http_status == 403 and bool(stripe_account)
