"""What a worker holds when its call is cancelled (a shutdown mid-call) is given up at once: the
account lock and the limiter lease. On Python 3.11.0-3.11.2 a Redis call awaited from a cancelled
task is itself cancelled, so these releases run detached (:mod:`ledger.detached`); the
process-level twin is ``test_processes.test_sigterm_mid_call_requeues_and_next_worker_finishes``.
"""

from __future__ import annotations

import asyncio
from contextlib import AbstractAsyncContextManager
from typing import Any

import pytest
from redis.asyncio import Redis

from tests.worker.ratelimit_support import (  # noqa: F401 - fixtures register by import
    rl_redis_fixture,
    rl_server_fixture,
)
from worker.ratelimit import RateBudget, RateLimiter, account_lock


async def _cancel_once_inside(enter: AbstractAsyncContextManager[Any]) -> None:
    """Run ``async with enter:`` around a wait that never ends, cancel it there, and wait."""
    inside = asyncio.Event()

    async def holder() -> None:
        async with enter:
            inside.set()
            await asyncio.Event().wait()

    task = asyncio.create_task(holder())
    await inside.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task


async def test_a_cancelled_holder_releases_the_account_lock(rl_redis: Redis) -> None:
    """Cancelled while holding an account's lock, a call releases it: the next worker gets the
    account at once instead of waiting out the lock's time to live."""
    lock = account_lock(rl_redis, "fca_1", ttl_seconds=120.0)
    await _cancel_once_inside(lock)
    assert await rl_redis.exists(lock.key) == 0
    async with account_lock(rl_redis, "fca_1"):
        pass


async def test_a_cancelled_call_gives_its_lease_back(rl_redis: Redis) -> None:
    """Cancelled inside ``limiter.slot``, a call leaves no in-flight lease behind, so the fleet's
    in-flight budget is not short by one until the lease expires."""
    budget = RateBudget(endpoint_rates={"disconnect": 50.0}, global_rate=100.0, max_in_flight=1)
    limiter = RateLimiter(rl_redis, budget)
    await _cancel_once_inside(limiter.slot("disconnect"))
    assert (await limiter.snapshot()).in_flight == 0
