"""Counters every process adds to, kept in Redis so that ``/metrics`` shows the whole fleet.

Gauges (requests per status, queue depth) are derived from the ledger's indexes when scraped;
counters are Redis hashes under the key prefix (``P metrics:<family>``, field = label values joined
by ``|``). Processes add to an in-memory :class:`CounterBuffer` and flush it every second or so,
so counting costs no round trip on the request path; a crash loses at most one interval's counts.

Families: ``intake`` (service|outcome), ``http`` (status code), ``stripe`` (endpoint|outcome),
``webhooks`` (event type|result). The worker's rate limiter keeps its own ``<prefix>rl:stats`` hash
(``grants``, ``waits``, ``wait_us``, ``rate_limited``); :func:`limiter_stats_key` names it here so
the producer can read it without importing the worker.
"""

from __future__ import annotations

from collections import Counter
from typing import Final

from redis.asyncio import Redis


def limiter_stats_key(prefix: str) -> str:
    """The limiter's counters; workers build their limiter under ``<prefix>rl:``."""
    return f"{prefix}rl:stats"


FAMILIES: Final = ("intake", "http", "stripe", "webhooks")


def counter_key(prefix: str, family: str) -> str:
    return f"{prefix}metrics:{family}"


class CounterBuffer:
    """In-memory counts, flushed to Redis with one pipelined ``HINCRBY`` per field."""

    def __init__(self, redis: Redis, prefix: str) -> None:
        self.redis = redis
        self.prefix = prefix
        self._pending: Counter[tuple[str, str]] = Counter()

    def add(self, family: str, *labels: str, amount: int = 1) -> None:
        self._pending[(family, "|".join(labels))] += amount

    async def flush(self) -> None:
        """Write what was counted since the last flush; kept for the next flush if Redis fails."""
        if not self._pending:
            return
        pending, self._pending = self._pending, Counter()
        try:
            async with self.redis.pipeline(transaction=False) as pipe:
                for (family, field), amount in pending.items():
                    pipe.hincrby(counter_key(self.prefix, family), field, amount)
                await pipe.execute()
        except BaseException:
            self._pending.update(pending)
            raise


async def read_counters(redis: Redis, prefix: str) -> dict[str, dict[str, int]]:
    """Every family's counts: family -> field -> value."""
    async with redis.pipeline(transaction=False) as pipe:
        for family in FAMILIES:
            pipe.hgetall(counter_key(prefix, family))
        pipe.hgetall(limiter_stats_key(prefix))
        raw = await pipe.execute()
    names = [*FAMILIES, "limiter"]
    return {
        name: {_text(k): int(float(_text(v))) for k, v in values.items()}
        for name, values in zip(names, raw, strict=True)
    }


def _text(value: object) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)
