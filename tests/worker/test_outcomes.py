"""The pure decision table that maps Stripe errors to the next step, and the retry policy."""

from __future__ import annotations

import random

import pytest

from ledger.models import RequestStatus
from worker.outcomes import Action, Decision, decide, is_account_forbidden, is_auth_failure
from worker.retry import RetryPolicy
from worker.stripe_client import StripeAPIError, StripeMeta, StripeTimeout, StripeTransportError


def api_error(
    status: int,
    code: str | None = None,
    should_retry: bool | None = None,
    reason: str | None = None,
) -> StripeAPIError:
    meta = StripeMeta(http_status=status, should_retry=should_retry, rate_limited_reason=reason)
    return StripeAPIError("boom", meta, type_="api_error", code=code)


def api_error_replayed(status: int, should_retry: bool | None = None) -> StripeAPIError:
    meta = StripeMeta(http_status=status, should_retry=should_retry, idempotent_replayed=True)
    return StripeAPIError("boom", meta, type_="api_error", code=None)


CHECK_THEN_RETRY_FRESH = Decision(
    Action.CHECK_ACCOUNT,
    fresh_idempotency_key=True,
    otherwise=Action.RETRY,
    call_may_have_acted=True,
)


@pytest.mark.parametrize(
    ("error", "expected"),
    [
        (api_error(404, "resource_missing"), Decision(Action.FINISH, RequestStatus.NOT_FOUND)),
        (api_error(401), Decision(Action.FINISH, RequestStatus.FAILED)),
        (api_error(403), Decision(Action.FINISH, RequestStatus.FAILED)),
        (api_error(402), Decision(Action.FINISH, RequestStatus.FAILED)),
        (api_error(400), Decision(Action.CHECK_ACCOUNT, otherwise=Action.FINISH)),
        (api_error(409), Decision(Action.RETRY)),
        (api_error(429, "rate_limit", reason="endpoint-rate"), Decision(Action.RETRY)),
        (api_error(429, "lock_timeout", should_retry=True), Decision(Action.RETRY)),
        (api_error(424), CHECK_THEN_RETRY_FRESH),
        (api_error(500), CHECK_THEN_RETRY_FRESH),
        (api_error(502), CHECK_THEN_RETRY_FRESH),
        (api_error(503), CHECK_THEN_RETRY_FRESH),
        (api_error(504), CHECK_THEN_RETRY_FRESH),
        (StripeTimeout("t"), Decision(Action.RETRY)),
        (StripeTransportError("reset"), Decision(Action.RETRY)),
    ],
)
def test_decision_by_status(error: StripeAPIError, expected: Decision) -> None:
    """Each status class maps to the documented decision; every 5xx and 424 checks the account
    and then retries with a fresh key."""
    assert decide(error) == expected


def test_should_retry_false_never_ends_a_5xx() -> None:
    """Point 1: Stripe sends Should-Retry: false with most 500s (a same-key retry would only be
    replayed); the request still retries, with a fresh key after the account check."""
    for status in (500, 503):
        assert decide(api_error(status, should_retry=False)) == CHECK_THEN_RETRY_FRESH


def test_should_retry_header_overrides_the_status_of_a_4xx() -> None:
    """Should-Retry: true makes a 400 retryable; false stops a 409."""
    assert decide(api_error(400, should_retry=True)) == Decision(Action.RETRY)
    assert decide(api_error(409, should_retry=False)) == Decision(
        Action.FINISH, RequestStatus.FAILED
    )


def test_a_replayed_error_rotates_the_key_after_a_check() -> None:
    """Point 3: an error replayed from Stripe's idempotency layer would come back for every
    retry with that key: check the account, then go on with a fresh key (retrying what is
    retryable by status, failing what is not)."""
    assert decide(api_error_replayed(400, should_retry=True)) == Decision(
        Action.CHECK_ACCOUNT, fresh_idempotency_key=True, otherwise=Action.RETRY
    )
    assert decide(api_error_replayed(402)) == Decision(
        Action.CHECK_ACCOUNT, fresh_idempotency_key=True, otherwise=Action.FINISH
    )
    assert decide(api_error_replayed(500)) == CHECK_THEN_RETRY_FRESH


def test_auth_failures_are_recognised() -> None:
    """401 always, and 403 only without Stripe-Account, stop all work; a 403 for a connected
    account concerns that account alone (point 2); 400 and transport errors are neither."""
    assert is_auth_failure(api_error(401)) and is_auth_failure(api_error(403))
    assert is_auth_failure(api_error(401), "acct_1")
    assert not is_auth_failure(api_error(403), "acct_1")
    assert is_account_forbidden(api_error(403), "acct_1")
    assert not is_account_forbidden(api_error(403), None)
    assert not is_auth_failure(api_error(400))
    assert not is_auth_failure(StripeTimeout("t"))


def test_rate_limit_flag_needs_the_limiter_header() -> None:
    """Only a 429 with Stripe-Rate-Limited-Reason is a rate limit (lock_timeout is not)."""
    assert api_error(429, "rate_limit", reason="global-rate").is_rate_limit
    assert not api_error(429, "lock_timeout").is_rate_limit


POLICY = RetryPolicy(base_seconds=1.0, cap_seconds=20.0, max_attempts=5, max_age_seconds=3600)


def test_backoff_is_full_jitter_within_exponential_cap() -> None:
    """Attempt n waits uniformly in [0, min(cap, base*2^(n-1))], and really varies."""
    rng = random.Random(7)
    for attempt, ceiling in [(1, 1.0), (2, 2.0), (3, 4.0), (5, 16.0), (9, 20.0)]:
        delays = [POLICY.backoff(attempt, rng) for _ in range(500)]
        assert all(0.0 <= d <= ceiling for d in delays)
        assert max(delays) > ceiling * 0.9 and min(delays) < ceiling * 0.1


def test_budget_by_count_and_age() -> None:
    """The budget is spent by attempts or by age, whichever comes first, with a reason."""
    assert POLICY.exhausted(4, 10.0) is None
    assert "attempt budget" in (POLICY.exhausted(5, 10.0) or "")
    assert "age budget" in (POLICY.exhausted(1, 3600.0) or "")
