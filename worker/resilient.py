"""arq's ``Worker``, made to outlive a Redis outage (a restart, an AOF replay, a fail-over).

arq's poll loop lets a Redis error escape ``Worker.main``, so on a plain Redis restart every
worker process of the fleet exits at once (the chaos harness saw all six go on one ``kill -9``:
``BusyLoadingError`` while the AOF replayed, ``ConnectionError`` while the port was closed;
behind Sentinel, ``NOREPLICAS`` while the primary's replica was away, with
``min-replicas-to-write 1``, and ``READONLY`` from a demoted primary).
:class:`ResilientWorker` catches a Redis connection error (or timeout, or one of the answers
:data:`OUTAGE_REPLIES` that say "not writable now") of one poll, logs
``worker.redis_unavailable`` once per outage (and ``worker.redis_available`` when a poll works
again), waits :data:`REDIS_RETRY_SECONDS` and polls again. Nothing else changes: jobs in flight
meet the same outage in their own Redis calls and end as they would (their requests are brought
back by the reconciler), and the worker fails closed meanwhile (no limiter permit, no claim).
"""

from __future__ import annotations

import asyncio

import structlog
from arq.worker import Worker
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import ResponseError
from redis.exceptions import TimeoutError as RedisTimeoutError

log = structlog.get_logger("fcd.worker")

#: Pause between polls while Redis cannot be reached.
REDIS_RETRY_SECONDS = 0.5
#: Error replies of a Redis that is there but cannot take writes for now.
OUTAGE_REPLIES = ("NOREPLICAS", "READONLY", "MASTERDOWN", "LOADING", "TRYAGAIN")


def is_outage(exc: BaseException) -> bool:
    """Whether ``exc`` says Redis is unreachable or not writable for now (not a bug of ours)."""
    if isinstance(exc, RedisConnectionError | RedisTimeoutError | OSError):
        return True
    if not isinstance(exc, ResponseError):
        return False
    text = str(exc)  # a pipeline's error wraps the reply: "Command # 1 (…) caused error: …"
    return text.startswith(OUTAGE_REPLIES) or any(f"'{r} " in text for r in OUTAGE_REPLIES)


class ResilientWorker(Worker):
    """An arq ``Worker`` whose poll loop waits out a Redis outage instead of exiting."""

    _redis_down = False

    async def _poll_iteration(self) -> None:
        try:
            await super()._poll_iteration()
        except (RedisConnectionError, RedisTimeoutError, OSError, ResponseError) as exc:
            if not is_outage(exc):
                raise
            if not self._redis_down:
                self._redis_down = True
                log.warning("worker.redis_unavailable", error=type(exc).__name__)
            await asyncio.sleep(REDIS_RETRY_SECONDS)
            return
        if self._redis_down:
            self._redis_down = False
            log.info("worker.redis_available")
