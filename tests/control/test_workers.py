"""The worker registry stays bounded on a real Redis: killed workers leave its index."""

from __future__ import annotations

from redis.asyncio import Redis

from control.workers import ENTRY_TTL_SECONDS, WorkerRegistry, redis_now
from ledger.store import Ledger


async def test_a_beat_drops_workers_that_stopped_beating_from_the_index(
    ledger: Ledger, redis: Redis
) -> None:
    """A killed worker's id (last beat longer ago than the entry TTL) leaves the index at the
    next beat of any worker, even if nobody reads the registry; a recent one stays."""
    registry = WorkerRegistry(redis, ledger.prefix)
    now = await redis_now(redis)
    await redis.zadd(
        registry.index_key,
        {"killed:1": now - ENTRY_TTL_SECONDS - 60, "recent:2": now - ENTRY_TTL_SECONDS / 2},
    )
    await registry.beat("alive:3", queue="urgent", jobs_running=0, max_jobs=1, started_at=now)
    members = {m.decode() for m in await redis.zrange(registry.index_key, 0, -1)}
    assert members == {"recent:2", "alive:3"}
    assert 0 < await redis.ttl(registry.entry_key("alive:3")) <= ENTRY_TTL_SECONDS
