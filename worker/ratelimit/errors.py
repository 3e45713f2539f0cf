"""The limiter's exceptions.

::

    LimiterError                  base of everything raised on purpose here
    ├── UnknownEndpoint           (also ValueError) the budget names no such endpoint
    ├── LimiterTimeout            (also TimeoutError) acquire's deadline passed, nothing granted
    ├── LimiterPaused             the kill switch is set and the caller asked not to wait
    └── AccountBusy               another holder has the account's lock

Redis being unreachable is deliberately *not* an exception of ``acquire``: it waits and retries
(fail closed). The account lock and the pause functions let Redis errors propagate, because their
callers (a job, the CLI) have their own retry policy.
"""

from __future__ import annotations


class LimiterError(Exception):
    """Base class of the limiter's own errors."""


class UnknownEndpoint(LimiterError, ValueError):
    """``acquire`` or ``report_rate_limited`` named an endpoint the budget does not define."""

    def __init__(self, endpoint: str, known: tuple[str, ...]) -> None:
        super().__init__(f"unknown endpoint {endpoint!r}; the budget defines {list(known)}")
        self.endpoint = endpoint
        self.known = known


class LimiterTimeout(LimiterError, TimeoutError):
    """No permit was granted before the caller's deadline; no lease is held."""

    def __init__(self, endpoint: str, timeout: float | None) -> None:
        super().__init__(f"no {endpoint!r} permit within {timeout}s")
        self.endpoint = endpoint
        self.timeout = timeout


class LimiterPaused(LimiterError):
    """The service is paused and ``acquire(wait_if_paused=False)`` was asked not to wait."""

    def __init__(self, endpoint: str) -> None:
        super().__init__(f"no {endpoint!r} permit: the service is paused")
        self.endpoint = endpoint


class AccountBusy(LimiterError):
    """Another worker holds the lock of this account: do not call Stripe for it now."""

    def __init__(self, account_id: str, retry_after: float = 0.0) -> None:
        super().__init__(f"account {account_id} is locked by another worker")
        self.account_id = account_id
        #: Seconds until the other holder's lock expires (it may release it sooner).
        self.retry_after = retry_after
