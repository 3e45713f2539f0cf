"""Counters and histograms every process adds to, kept in Redis so ``/metrics`` shows the fleet.

Gauges (requests per status, queue depth, pause, workers) are derived from Redis when scraped
(:mod:`control.exposition`); counters are Redis hashes under the key prefix
(``P metrics:<family>``, field = label values joined by ``|``). Processes add to an in-memory
:class:`CounterBuffer` and flush it every second or so, so counting costs no round trip on the
request path; a crash loses at most one interval's counts. Workers count each Stripe call in
their buffer too (``worker.calls``; :func:`record_stripe_call` writes one at once, for callers
without a buffer).

Families: ``intake`` (service|outcome), ``http`` (status code), ``stripe`` (endpoint|outcome),
``webhooks`` (event type|result), ``streams`` (stream name: entries a stream's ``MAXLEN`` trimmed,
written by :mod:`events.inbox`'s scripts). The worker's rate limiter keeps its own ``<prefix>rl:stats`` hash
(``grants``, ``waits``, ``wait_us``, ``rate_limited``); :func:`limiter_stats_key` names it here so
the producer can read it without importing the worker.

Histograms (:data:`HISTOGRAMS`) are hashes too, one field per label set and bucket, holding that
bucket's own count (not cumulative): ``<labels>|le:<bound>`` (``+Inf`` for the overflow bucket)
and ``<labels>|sum_us`` (the observed total in microseconds, so ``HINCRBY`` stays integral). The
exposition adds the buckets up into Prometheus' cumulative ``_bucket``/``_sum``/``_count``:
``stripe_latency`` (endpoint|outcome: one Stripe call, seconds) and ``completion``
(status|source: submit to terminal status, seconds).
"""

from __future__ import annotations

import bisect
from collections import Counter
from collections.abc import Sequence
from typing import Final

from redis.asyncio import Redis

from ledger.models import DisconnectRequest


def limiter_stats_key(prefix: str) -> str:
    """The limiter's counters; workers build their limiter under ``<prefix>rl:``."""
    return f"{prefix}rl:stats"


FAMILIES: Final = ("intake", "http", "stripe", "webhooks", "streams")
#: Bucket upper bounds, seconds. Stripe calls take 0.1-1 s normally; the timeout is 30 s.
STRIPE_LATENCY_BUCKETS: Final = (0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
#: Submit to terminal: seconds for a user deletion, hours for a sweep's backlog, a week at most.
COMPLETION_BUCKETS: Final = (1.0, 5.0, 30.0, 60.0, 300.0, 900.0, 3600.0, 14400.0, 86400.0, 604800.0)
HISTOGRAMS: Final[dict[str, tuple[float, ...]]] = {
    "stripe_latency": STRIPE_LATENCY_BUCKETS,
    "completion": COMPLETION_BUCKETS,
}


def counter_key(prefix: str, family: str) -> str:
    return f"{prefix}metrics:{family}"


def bucket_label(bound: float) -> str:
    """A bucket bound as Prometheus prints it (``0.05``, ``1``, ``+Inf``)."""
    return "+Inf" if bound == float("inf") else f"{bound:g}"


def histogram_fields(buckets: Sequence[float], value: float, *labels: str) -> list[tuple[str, int]]:
    """The hash fields one observation of ``value`` adds to (its bucket, and the sum)."""
    joined = "|".join(labels)
    index = bisect.bisect_left(buckets, value)
    bound = buckets[index] if index < len(buckets) else float("inf")
    return [(f"{joined}|le:{bucket_label(bound)}", 1), (f"{joined}|sum_us", round(value * 1e6))]


class CounterBuffer:
    """In-memory counts, flushed to Redis with one pipelined ``HINCRBY`` per field."""

    def __init__(self, redis: Redis, prefix: str) -> None:
        self.redis = redis
        self.prefix = prefix
        self._pending: Counter[tuple[str, str]] = Counter()

    def add(self, family: str, *labels: str, amount: int = 1) -> None:
        self._pending[(family, "|".join(labels))] += amount

    def observe(self, family: str, value: float, *labels: str) -> None:
        """One observation for the histogram ``family`` (a key of :data:`HISTOGRAMS`)."""
        for field, amount in histogram_fields(HISTOGRAMS[family], value, *labels):
            self._pending[(family, field)] += amount

    def observe_completion(self, request: DisconnectRequest) -> None:
        """A request reached a terminal status: time from submission, by status and source.

        Set as the ledger's ``on_terminal`` hook by every process that moves requests.
        """
        seconds = max(request.updated_at - request.created_at, 0.0)
        self.observe("completion", seconds, request.status.value, request.source.value)

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


async def record_stripe_call(
    redis: Redis, prefix: str, endpoint: str, outcome: str, seconds: float
) -> None:
    """Count one Stripe call and its duration (``fcd_stripe_calls_total`` and
    ``fcd_stripe_call_duration_seconds``) in one pipelined round trip."""
    async with redis.pipeline(transaction=False) as pipe:
        pipe.hincrby(counter_key(prefix, "stripe"), f"{endpoint}|{outcome}", 1)
        latency = counter_key(prefix, "stripe_latency")
        for field, amount in histogram_fields(STRIPE_LATENCY_BUCKETS, seconds, endpoint, outcome):
            pipe.hincrby(latency, field, amount)
        await pipe.execute()


async def read_counters(redis: Redis, prefix: str) -> dict[str, dict[str, int]]:
    """Every family's counts (histograms included): family -> field -> value."""
    names = [*FAMILIES, *HISTOGRAMS]
    async with redis.pipeline(transaction=False) as pipe:
        for family in names:
            pipe.hgetall(counter_key(prefix, family))
        pipe.hgetall(limiter_stats_key(prefix))
        raw = await pipe.execute()
    return {
        name: {_text(k): int(float(_text(v))) for k, v in values.items()}
        for name, values in zip([*names, "limiter"], raw, strict=True)
    }


def _text(value: object) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)
