"""Where a Stripe call waits its turn: the contract the rate limiter fulfils."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import Literal, Protocol

Endpoint = Literal["disconnect", "retrieve", "list"]


class CallGate(Protocol):
    """``async with gate.slot("disconnect"):`` returns once the call may be made.

    Implementations hold whatever permit they grant (an in-flight lease) until the block exits.
    """

    def slot(self, endpoint: Endpoint) -> AbstractAsyncContextManager[None]: ...


class ProcessGate:
    """A per-process concurrency cap; the shared Redis limiter replaces it where configured."""

    def __init__(self, max_in_flight: int) -> None:
        self._semaphore = asyncio.Semaphore(max_in_flight)

    @asynccontextmanager
    async def slot(self, endpoint: Endpoint) -> AsyncIterator[None]:
        async with self._semaphore:
            yield
