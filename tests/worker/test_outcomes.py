"""The pure decision table that maps Stripe errors to the next step, and the retry policy."""

from __future__ import annotations

import random

import pytest

from ledger.models import RequestStatus
from worker.outcomes import Action, Decision, decide, is_auth_failure
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
        (api_error(429, "lock_timeout"), Decision(Action.RETRY)),
        (api_error(502), Decision(Action.RETRY)),
        (api_error(503), Decision(Action.RETRY)),
        (api_error(504), Decision(Action.RETRY)),
        (
            api_error(500),
            Decision(Action.CHECK_ACCOUNT, fresh_idempotency_key=True, otherwise=Action.RETRY),
        ),
        (StripeTimeout("t"), Decision(Action.RETRY)),
        (StripeTransportError("reset"), Decision(Action.RETRY)),
    ],
)
def test_decision_by_status(error: StripeAPIError, expected: Decision) -> None:
    """Each status class maps to the documented decision."""
    assert decide(error) == expected


def test_should_retry_header_overrides_status() -> None:
    """Stripe-Should-Retry: false stops a 503 retry; true makes a 400 retryable."""
    assert decide(api_error(503, should_retry=False)) == Decision(
        Action.FINISH, RequestStatus.FAILED
    )
    assert decide(api_error(400, should_retry=True)) == Decision(Action.RETRY)
    assert decide(api_error(500, should_retry=False)).otherwise == Action.FINISH


def test_auth_failures_are_recognised() -> None:
    """401 and 403 are auth failures; 400 and transport errors are not."""
    assert is_auth_failure(api_error(401)) and is_auth_failure(api_error(403))
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
