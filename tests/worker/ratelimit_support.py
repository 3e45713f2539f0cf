"""Fixtures for the limiter tests: a private Redis for the session, a flushed client per test.

Imported by the ``test_ratelimit*`` modules (they register the fixtures by importing them), so the
shared conftest files stay untouched. Never touches the system Redis.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import pytest
from redis.asyncio import Redis

from devenv.redis_server import PrivateRedis, start_redis

TAT_KEY = "fcd:rl:tat:global"


@pytest.fixture(scope="session", name="rl_server")
def rl_server_fixture() -> Iterator[PrivateRedis]:
    """A throw-away redis-server shared by the limiter tests."""
    server = start_redis()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(name="rl_redis")
async def rl_redis_fixture(rl_server: PrivateRedis) -> AsyncIterator[Redis]:
    """A client of the private Redis, flushed before each test and closed after it."""
    client = Redis.from_url(rl_server.url)
    await client.flushdb()
    try:
        yield client
    finally:
        await client.aclose()


async def book_global_budget_until(redis: Redis, seconds_ahead: float) -> None:
    """White-box: mark the global budget as used up for the next ``seconds_ahead`` seconds."""
    now_s, now_us = await redis.time()
    await redis.set(TAT_KEY, now_s * 1_000_000 + now_us + round(seconds_ahead * 1_000_000))
