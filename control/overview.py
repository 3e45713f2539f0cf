"""The at-a-glance picture of the service: queue depths, in flight, retries, failures, limiter.

Read by ``fcd queue`` and the dashboard. Everything comes from Redis in a few reads; nothing is
changed. The rate limiter lives in the workers (``worker.ratelimit``), which producers may not
import, so workers *publish* its snapshot as JSON under ``P limiter:snapshot`` (see
:func:`publish_limiter_snapshot`) and readers show it with its age. The pause flag is the
ledger's own (:mod:`control.pause`).
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

from redis.asyncio import Redis

from control.pause import get_pause
from ledger.models import RequestStatus
from ledger.store import Ledger

FAILED_WINDOW_SECONDS = 3600.0
LIMITER_SNAPSHOT_TTL_SECONDS = 600


def limiter_snapshot_key(prefix: str) -> str:
    return f"{prefix}limiter:snapshot"


@dataclass(frozen=True)
class QueueDepth:
    """One arq queue: jobs due now and jobs deferred to a later time (retries)."""

    name: str
    due: int
    deferred: int

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

    def as_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["queues"] = [{**asdict(q), "total": q.total} for q in self.queues]
        return data


async def queue_overview(
    ledger: Ledger, *, extra_queues: Sequence[str] = (), pause_key: str | None = None
) -> QueueOverview:
    """Read the overview; ``extra_queues`` are arq queues besides the ledger's own."""
    now = time.time()
    redis = ledger.redis
    counts = await ledger.count_by_status()
    names = dict.fromkeys((*ledger.queue_names, *extra_queues))
    queues = [await _depth(redis, name, now) for name in names]
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
    )


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
