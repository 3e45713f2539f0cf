"""Where a Stripe call waits its turn: the contract the shared rate limiter fulfils.

:class:`worker.ratelimit.RateLimiter` implements it; the core in :mod:`worker.disconnect` only
sees this protocol, so it can be exercised with any budget.
"""

from __future__ import annotations

from contextlib import AbstractAsyncContextManager
from typing import Literal, Protocol

Endpoint = Literal["disconnect", "retrieve", "list"]
Priority = Literal["urgent", "bulk"]


class CallGate(Protocol):
    """``async with gate.slot("disconnect"):`` returns once the call may be made.

    Implementations hold whatever permit they grant (an in-flight lease) until the block exits,
    and slow every caller down when told Stripe rate-limited one.
    """

    def slot(
        self,
        endpoint: str,
        *,
        priority: Priority = "urgent",
        timeout: float | None = None,
        wait_if_paused: bool = True,
    ) -> AbstractAsyncContextManager[None]: ...

    async def report_rate_limited(self, endpoint: str, reason: str | None = None) -> float: ...
