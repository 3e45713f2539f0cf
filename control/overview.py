"""The at-a-glance picture of the service: queue depths, in flight, retries, failures, limiter.

Read by ``fcd queue``, the dashboard and ``/metrics``. Everything comes from Redis in a few reads;
nothing is changed. Queues are named by kind, ``urgent`` (``FCD_QUEUE_NAME``) and ``bulk``
(``FCD_BULK_QUEUE_NAME``; absent when it is the same queue), besides their arq names.

"Oldest pending" per queue (:func:`oldest_pending_by_queue`) is the age of the non-terminal request
(``queued``, ``in_progress``, ``retry_scheduled``) of that queue that has gone longest without a
status change: for a request still waiting since submission, its age since submission. It is
exact: each status index is sorted by the time of the last change, so the first entry of each
queue in each index is that queue's oldest there; the scan reads ids in pages until it has seen
one of each queue (at most :data:`OLDEST_SCAN_LIMIT` per index, then the age of the last one
read is a lower bound). The rate limiter lives in the workers (``worker.ratelimit``), which producers may not
import, so workers *publish* its snapshot as JSON under ``P limiter:snapshot`` (see
:func:`publish_limiter_snapshot`) and readers show it with its age. The pause flag is the
ledger's own (:mod:`control.pause`).
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping
from dataclasses import asdict, dataclass, replace
from typing import Any

from redis.asyncio import Redis
from redis.asyncio.sentinel import SentinelConnectionPool

from control.pause import get_pause
from control.workers import WorkerInfo, WorkerRegistry
from ledger.models import RequestPriority, RequestSource, RequestStatus, priority_for
from ledger.settings import RedisLocation
from ledger.store import Ledger

FAILED_WINDOW_SECONDS = 3600.0
LIMITER_SNAPSHOT_TTL_SECONDS = 600
OLDEST_SCAN_LIMIT = 20_000
_SCAN_PAGE = 500
PENDING_STATUSES = (RequestStatus.QUEUED, RequestStatus.IN_PROGRESS, RequestStatus.RETRY_SCHEDULED)


def limiter_snapshot_key(prefix: str) -> str:
    return f"{prefix}limiter:snapshot"


@dataclass(frozen=True)
class QueueDepth:
    """One arq queue: jobs due now and jobs deferred to a later time (retries)."""

    name: str
    due: int
    deferred: int
    kind: str = RequestPriority.URGENT.value  # "urgent" or "bulk"
    oldest_pending_age_seconds: float = 0.0  # see the module docstring; 0 if none
    workers: int = 0  # worker processes alive on this queue

    @property
    def total(self) -> int:
        return self.due + self.deferred


@dataclass(frozen=True)
class QueueOverview:
    """The numbers an on-call engineer looks at first."""

    queues: list[QueueDepth]
    counts: dict[str, int]  # requests per status
    in_flight: int
    retry_scheduled: int
    oldest_pending_age_seconds: float | None  # oldest request waiting in ``queued``
    failed_last_hour: int
    paused: dict[str, Any] | None  # who paused, why, when; None if running
    limiter: dict[str, Any] | None  # the last snapshot a worker published, with its age
    redis: str = ""  # host:port/db of the Redis read (never a password)

    def as_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["queues"] = [{**asdict(q), "total": q.total} for q in self.queues]
        return data


def queue_kinds(ledger: Ledger) -> dict[str, str]:
    """arq queue name -> kind (``urgent``/``bulk``); one entry when both are the same queue."""
    kinds = {ledger.bulk_queue_name: RequestPriority.BULK.value}
    kinds[ledger.queue_name] = RequestPriority.URGENT.value
    return {name: kinds[name] for name in ledger.queue_names}


async def queue_depths(
    ledger: Ledger, now: float | None = None, *, alive: list[WorkerInfo] | None = None
) -> list[QueueDepth]:
    """Each queue's jobs (due / deferred), oldest pending request and live workers (``alive``:
    the registry's live workers, if the caller has read them already)."""
    now = time.time() if now is None else now
    oldest = await oldest_pending_by_queue(ledger, now)
    if alive is None:
        alive = await WorkerRegistry(ledger.redis, ledger.prefix).alive()
    depths = []
    for name, kind in queue_kinds(ledger).items():
        depth = await _depth(ledger.redis, name, now)
        workers = sum(w.queue == kind for w in alive)
        depths.append(
            replace(depth, kind=kind, oldest_pending_age_seconds=oldest[kind], workers=workers)
        )
    return depths


async def oldest_pending_by_queue(ledger: Ledger, now: float) -> dict[str, float]:
    """Queue kind -> seconds since the longest-unmoved non-terminal request of that queue last
    changed status (0 if the queue has none); see the module docstring."""
    kinds = set(queue_kinds(ledger).values())
    oldest: dict[str, float] = {}
    for status in PENDING_STATUSES:
        found = await _first_of_each_kind(ledger, status, kinds)
        for kind, score in found.items():
            oldest[kind] = min(oldest.get(kind, score), score)
    return {kind: max(now - oldest[kind], 0.0) if kind in oldest else 0.0 for kind in kinds}


async def _first_of_each_kind(
    ledger: Ledger, status: RequestStatus, kinds: set[str]
) -> dict[str, float]:
    """The lowest index score per queue kind among requests in ``status``."""
    key = ledger.status_key(status)
    found: dict[str, float] = {}
    last_score: float | None = None
    for start in range(0, OLDEST_SCAN_LIMIT, _SCAN_PAGE):
        page = await ledger.redis.zrange(key, start, start + _SCAN_PAGE - 1, withscores=True)
        if not page:
            return found
        async with ledger.redis.pipeline(transaction=False) as pipe:
            for member, _ in page:
                pipe.hmget(ledger.request_key(_text(member)), ["priority", "source"])
            fields = await pipe.execute()
        for (_, score), (priority, source) in zip(page, fields, strict=True):
            kind = _kind(priority, source, single=len(kinds) == 1)
            found.setdefault(kind, float(score))
            last_score = float(score)
        if kinds <= found.keys():
            return found
    for kind in kinds - found.keys():  # scan limit reached: a lower bound (see the docstring)
        if last_score is not None:
            found[kind] = last_score
    return found


def _kind(priority: Any, source: Any, *, single: bool) -> str:
    if single:
        return RequestPriority.URGENT.value
    if priority is not None:
        return _text(priority)
    if source is None:
        return RequestPriority.URGENT.value
    return priority_for(RequestSource(_text(source))).value


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


async def queue_overview(ledger: Ledger, *, pause_key: str | None = None) -> QueueOverview:
    """Read the overview."""
    now = time.time()
    redis = ledger.redis
    counts = await ledger.count_by_status()
    queues = await queue_depths(ledger, now)
    oldest = await redis.zrange(ledger.status_key(RequestStatus.QUEUED), 0, 0, withscores=True)
    failed_recent = await redis.zcount(
        ledger.status_key(RequestStatus.FAILED), now - FAILED_WINDOW_SECONDS, "+inf"
    )
    return QueueOverview(
        queues=queues,
        counts={status.value: count for status, count in counts.items()},
        in_flight=counts[RequestStatus.IN_PROGRESS],
        retry_scheduled=counts[RequestStatus.RETRY_SCHEDULED],
        oldest_pending_age_seconds=max(now - float(oldest[0][1]), 0.0) if oldest else None,
        failed_last_hour=int(failed_recent),
        paused=await _pause(redis, pause_key or ledger.pause_key),
        limiter=await read_limiter_snapshot(redis, ledger.prefix, now=now),
        redis=str(redis_location_of(redis)),
    )


def redis_location_of(redis: Redis) -> RedisLocation:
    """Where a client is connected (host, port, db from its pool; never the password)."""
    pool = redis.connection_pool
    kwargs = pool.connection_kwargs
    if isinstance(pool, SentinelConnectionPool):  # the Sentinels, and the master it is on now
        sentinels = ",".join(
            f"{s.connection_pool.connection_kwargs.get('host')}:"
            f"{s.connection_pool.connection_kwargs.get('port')}"
            for s in pool.sentinel_manager.sentinels
        )
        master = pool.service_name
        if pool.master_address is not None:
            master += f"@{pool.master_address[0]}:{pool.master_address[1]}"
        authenticated = bool(kwargs.get("password") or kwargs.get("username"))
        db = int(kwargs.get("db", 0))
        return RedisLocation("sentinel", sentinels, None, db, authenticated, master=master)
    if "path" in kwargs:
        return RedisLocation("unix", str(kwargs["path"]), None, int(kwargs.get("db", 0)), False)
    authenticated = bool(kwargs.get("password") or kwargs.get("username"))
    host, port, db = str(kwargs.get("host", "localhost")), kwargs.get("port"), kwargs.get("db", 0)
    return RedisLocation("redis", host, None if port is None else int(port), int(db), authenticated)


async def _depth(redis: Redis, name: str, now: float) -> QueueDepth:
    due = await redis.zcount(name, "-inf", int(now * 1000))
    total = await redis.zcard(name)
    return QueueDepth(name=name, due=int(due), deferred=int(total) - int(due))


async def _pause(redis: Redis, key: str) -> dict[str, Any] | None:
    state = await get_pause(redis, key=key)
    if state is None:
        return None
    return {**asdict(state), "at": state.at.isoformat()}


async def publish_limiter_snapshot(
    redis: Redis, prefix: str, snapshot: Mapping[str, Any], *, now: float | None = None
) -> None:
    """Store a worker's limiter snapshot (JSON-able values) for producers to read.

    It expires after :data:`LIMITER_SNAPSHOT_TTL_SECONDS`, so a fleet with no live worker shows
    no limiter line rather than an old one.
    """
    body = {**snapshot, "published_at": time.time() if now is None else now}
    await redis.set(
        limiter_snapshot_key(prefix),
        json.dumps(body, default=str, separators=(",", ":")),
        ex=LIMITER_SNAPSHOT_TTL_SECONDS,
    )


async def read_limiter_snapshot(
    redis: Redis, prefix: str, *, now: float | None = None
) -> dict[str, Any] | None:
    """The last published limiter snapshot plus ``age_seconds``, or ``None``."""
    raw = await redis.get(limiter_snapshot_key(prefix))
    if raw is None:
        return None
    data: dict[str, Any] = json.loads(raw)
    published = float(data.get("published_at", 0.0))
    data["age_seconds"] = max((time.time() if now is None else now) - published, 0.0)
    return data
