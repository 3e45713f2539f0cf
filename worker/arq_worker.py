"""arq's ``Worker``, surviving Redis being briefly away (a restart, a Sentinel fail-over).

arq 0.28 lets any Redis error in its poll loop end the process: a ``ConnectionError`` while
polling, or a ``NOREPLICAS``/``READONLY`` answer while it records a finished job (seen in a
Sentinel fail-over, when the old primary stops taking writes and the new one has no replica
yet). A supervisor would restart the process, but every job it was running is cut off on the
way. :class:`ResilientWorker` instead:

- logs ``worker.redis_unavailable`` and polls again after a short, growing pause, instead of
  ending, when one poll iteration fails on Redis;
- retries recording a finished job (``finish_job`` / ``finish_failed_job``) until Redis takes
  it, so a job that ran is not run again for want of its bookkeeping;
- gives a job slot back when Redis fails while a job is being started (arq would leak it).

Whatever a job wrote before Redis went away is the ledger's business: transitions are
compare-and-set, and the reconciler re-queues an attempt whose outcome was never recorded once
its lease runs out.
"""

from __future__ import annotations

import asyncio
from typing import Any

import structlog
from arq.constants import in_progress_key_prefix
from arq.utils import timestamp_ms
from arq.worker import Worker
from redis.exceptions import RedisError, ResponseError, WatchError

from ledger.connection import error_code

log = structlog.get_logger("fcd.worker")

#: Pauses between attempts while Redis is away (seconds); the last one repeats.
BACKOFF = (0.2, 0.5, 1.0, 2.0, 5.0)
#: How long a finished job's bookkeeping is retried before the error ends the process.
FINISH_PATIENCE_SECONDS = 300.0


class ResilientWorker(Worker):
    """An arq ``Worker`` that waits for Redis to come back instead of ending (see module)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._redis_failures = 0

    async def _poll_iteration(self) -> None:
        try:
            await super()._poll_iteration()
        except (RedisError, OSError) as exc:
            pause = BACKOFF[min(self._redis_failures, len(BACKOFF) - 1)]
            self._redis_failures += 1
            log.warning(
                "worker.redis_unavailable",
                error=type(exc).__name__,
                detail=error_code(exc),
                retry_in=pause,
                failures=self._redis_failures,
            )
            await asyncio.sleep(pause)
        else:
            if self._redis_failures:
                log.info("worker.redis_back", failures=self._redis_failures)
            self._redis_failures = 0

    async def finish_job(self, *args: Any, **kwargs: Any) -> None:
        await _until_redis_takes_it(
            lambda: super(ResilientWorker, self).finish_job(*args, **kwargs)
        )

    async def finish_failed_job(self, *args: Any, **kwargs: Any) -> None:
        await _until_redis_takes_it(
            lambda: super(ResilientWorker, self).finish_failed_job(*args, **kwargs)
        )

    async def start_jobs(self, job_ids: list[bytes]) -> None:
        """arq 0.28's ``start_jobs``, except that a Redis error while claiming a job gives its
        slot back before it propagates (arq kept the slot, so each such error cost one of
        ``max_jobs`` for the life of the process)."""
        for job_id_b in job_ids:
            await self.sem.acquire()
            if self.job_counter >= self.max_jobs:
                self.sem.release()
                return
            self.job_counter = self.job_counter + 1
            job_id = job_id_b.decode()
            in_progress_key = in_progress_key_prefix + job_id
            try:
                async with self.pool.pipeline(transaction=True) as pipe:
                    await pipe.watch(in_progress_key)
                    ongoing_exists = await pipe.exists(in_progress_key)
                    score = await pipe.zscore(self.queue_name, job_id)
                    if ongoing_exists or not score or score > timestamp_ms():
                        self._give_slot_back()  # running elsewhere, finished, or deferred
                        continue
                    pipe.multi()  # type: ignore[no-untyped-call]
                    pipe.psetex(in_progress_key, int(self.in_progress_timeout_s * 1000), b"1")
                    try:
                        await pipe.execute()
                    except (ResponseError, WatchError):  # started elsewhere meanwhile
                        self._give_slot_back()
                        continue
            except (RedisError, OSError):
                self._give_slot_back()
                raise
            task = self.loop.create_task(self.run_job(job_id, int(score)))
            task.add_done_callback(lambda _: self._release_sem_dec_counter_on_complete())
            self.tasks[job_id] = task
        return

    def _give_slot_back(self) -> None:
        self.job_counter = self.job_counter - 1
        self.sem.release()


async def _until_redis_takes_it(write: Any) -> None:
    """Retry ``write()`` while Redis refuses it, for up to :data:`FINISH_PATIENCE_SECONDS`
    (then the error propagates, as in arq: Redis is not coming back for this process)."""
    failures = 0
    deadline = asyncio.get_running_loop().time() + FINISH_PATIENCE_SECONDS
    while True:
        try:
            await write()
            return
        except (RedisError, OSError) as exc:
            if asyncio.get_running_loop().time() > deadline:
                raise
            pause = BACKOFF[min(failures, len(BACKOFF) - 1)]
            failures += 1
            log.warning(
                "worker.redis_unavailable",
                error=type(exc).__name__,
                detail=error_code(exc),
                retry_in=pause,
                failures=failures,
                during="finish_job",
            )
            await asyncio.sleep(pause)
