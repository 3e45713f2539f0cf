"""The worker registry: which worker processes are alive, where, on which queue, doing how much.

Every worker process beats every :data:`HEARTBEAT_SECONDS` (a task started in the worker's
start-up): it writes its entry and pushes its expiry forward. Layout (``P`` is the key prefix):

- ``P worker:<host:pid>``  hash: ``host``, ``pid``, ``queue`` (urgent|bulk), ``jobs_running``,
  ``max_jobs``, ``started_at``, ``heartbeat_at`` (Redis' clock, unix seconds); it expires
  :data:`ENTRY_TTL_SECONDS` after the last beat, so a killed worker disappears by itself
- ``P workers``            sorted set: worker ids by last heartbeat (an index; ids whose hash has
  expired are dropped by :meth:`WorkerRegistry.alive`, and every beat drops the ids that have
  not beaten for :data:`ENTRY_TTL_SECONDS`, so killed workers never pile up in it)

A worker that stops cleanly removes its entry at once. Read by ``/metrics``
(``fcd_workers{queue}``, ``fcd_worker_heartbeat_timestamp_seconds{worker,queue}``), the
dashboard's workers page and the sweeps' "why is it waiting" (no bulk worker alive).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

from redis.asyncio import Redis

HEARTBEAT_SECONDS: Final = 5.0
ENTRY_TTL_SECONDS: Final = 30


@dataclass(frozen=True)
class WorkerInfo:
    """One worker process as last reported."""

    worker_id: str  # host:pid, as audit records name it
    host: str
    pid: int
    queue: str  # "urgent" or "bulk"
    jobs_running: int
    max_jobs: int
    started_at: float
    heartbeat_at: float


async def redis_now(redis: Redis) -> float:
    """Redis' clock, so heartbeats from many hosts compare on one clock."""
    seconds, micros = await redis.time()
    return float(seconds) + float(micros) / 1e6


class WorkerRegistry:
    """Writes this process's entry and reads everyone's."""

    def __init__(self, redis: Redis, prefix: str) -> None:
        self.redis = redis
        self.prefix = prefix

    @property
    def index_key(self) -> str:
        return f"{self.prefix}workers"

    def entry_key(self, worker_id: str) -> str:
        return f"{self.prefix}worker:{worker_id}"

    async def beat(
        self,
        worker_id: str,
        *,
        queue: str,
        jobs_running: int,
        max_jobs: int,
        started_at: float,
    ) -> float:
        """Write (or refresh) the entry; return the heartbeat time written (Redis' clock)."""
        now = await redis_now(self.redis)
        host, _, pid = worker_id.rpartition(":")
        fields = {
            "host": host,
            "pid": pid,
            "queue": queue,
            "jobs_running": jobs_running,
            "max_jobs": max_jobs,
            "started_at": started_at,
            "heartbeat_at": now,
        }
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.hset(self.entry_key(worker_id), mapping=fields)
            pipe.expire(self.entry_key(worker_id), ENTRY_TTL_SECONDS)
            pipe.zadd(self.index_key, {worker_id: now})
            pipe.zremrangebyscore(self.index_key, "-inf", now - ENTRY_TTL_SECONDS)
            await pipe.execute()
        return now

    async def remove(self, worker_id: str) -> None:
        """A clean stop: the worker leaves the registry at once."""
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.delete(self.entry_key(worker_id))
            pipe.zrem(self.index_key, worker_id)
            await pipe.execute()

    async def alive(self) -> list[WorkerInfo]:
        """Every worker whose entry has not expired, by queue then id; prunes the index."""
        ids = [_text(i) for i in await self.redis.zrange(self.index_key, 0, -1)]
        if not ids:
            return []
        async with self.redis.pipeline(transaction=False) as pipe:
            for worker_id in ids:
                pipe.hgetall(self.entry_key(worker_id))
            entries = await pipe.execute()
        found, gone = [], []
        for worker_id, raw in zip(ids, entries, strict=True):
            if not raw:
                gone.append(worker_id)
                continue
            found.append(_info(worker_id, {_text(k): _text(v) for k, v in raw.items()}))
        if gone:
            await self.redis.zrem(self.index_key, *gone)
        return sorted(found, key=lambda w: (w.queue, w.worker_id))


def _info(worker_id: str, raw: dict[str, str]) -> WorkerInfo:
    return WorkerInfo(
        worker_id=worker_id,
        host=raw.get("host", ""),
        pid=int(raw.get("pid") or 0),
        queue=raw.get("queue", "?"),
        jobs_running=int(raw.get("jobs_running") or 0),
        max_jobs=int(raw.get("max_jobs") or 0),
        started_at=float(raw.get("started_at") or 0.0),
        heartbeat_at=float(raw.get("heartbeat_at") or 0.0),
    )


def _text(value: object) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)
