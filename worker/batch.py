"""The core of a batch job (a bulk submission's chunk): the disconnect core for each request.

Contract of :func:`run_batch`:

- Each request id goes through :func:`worker.disconnect.run_disconnect` with the batch's job id,
  so a request acts only if its job is still this batch: one retried, re-queued, re-enqueued by
  the reconciler or promoted to the urgent queue has a job of its own and is skipped here.
- At most ``slots`` attempts run at once in the whole process (one semaphore shared by every
  batch job of the worker); the shared rate limiter paces the Stripe calls themselves.
- Each attempt is bounded by ``attempt_timeout`` from the moment it starts, like a single job
  under arq's job timeout: a timed-out attempt is given back (re-queued under a fresh job, the
  attempt not spent) by the single-request core, and the batch goes on.
- Cancelled (worker shutdown), every attempt in flight is given back the same way before the
  batch returns; requests the batch had not started keep the batch's job id and are run when arq runs the batch again. If
  the job is lost instead, the reconciler gives each of them a job of its own.
- While it runs it refreshes a heartbeat key (:func:`ledger.jobs.batch_heartbeat_key`): if the
  worker dies, the reconciler sees the heartbeat expire and gives the waiting requests jobs of
  their own, instead of trusting arq's in-progress key (kept a day on bulk workers).
- One request's unexpected error is logged and does not stop the others (the reconciler repairs
  that request once the batch job is gone).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass

import structlog
from redis.exceptions import RedisError

from ledger.jobs import BATCH_HEARTBEAT_SECONDS, BATCH_HEARTBEAT_TTL_SECONDS, batch_heartbeat_key
from worker.claims import JobResult
from worker.disconnect import DisconnectDeps, run_disconnect

log = structlog.get_logger("fcd.worker")

PAUSED = JobResult.PAUSED


@dataclass(frozen=True)
class BatchDeps:
    """What a batch job needs: the disconnect deps and the process's shared attempt slots."""

    base: DisconnectDeps
    slots: asyncio.Semaphore
    attempt_timeout: float


async def run_batch(deps: BatchDeps, request_ids: Sequence[str], job_id: str) -> Counter[str]:
    """Run every request of batch job ``job_id``; count the results (each a status value or a
    :class:`JobResult`: skipped, paused, timed_out, error)."""
    # A TaskGroup, not gather: cancelled, it waits until every attempt has been given back.
    heartbeat = asyncio.create_task(_beat(deps, job_id))
    try:
        async with asyncio.TaskGroup() as group:
            runs = [group.create_task(_one(deps, rid, job_id)) for rid in request_ids]
    finally:
        heartbeat.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await heartbeat
    return Counter(str(run.result()) for run in runs)


async def _beat(deps: BatchDeps, job_id: str) -> None:
    """Keep the batch's heartbeat alive while it runs (the reconciler's sign of life)."""
    key = batch_heartbeat_key(deps.base.ledger.prefix, job_id)
    ttl_ms = int(BATCH_HEARTBEAT_TTL_SECONDS * 1000)
    while True:
        with contextlib.suppress(RedisError, OSError):
            await deps.base.ledger.redis.set(key, b"1", px=ttl_ms)
        await asyncio.sleep(BATCH_HEARTBEAT_SECONDS)


async def _one(deps: BatchDeps, request_id: str, job_id: str) -> str:
    """One request's attempt, bounded by the attempt timeout; never raises but cancellation."""
    async with deps.slots:
        with structlog.contextvars.bound_contextvars(request_id=request_id):
            try:
                async with asyncio.timeout(deps.attempt_timeout):
                    return str(await run_disconnect(deps.base, request_id, job_id))
            except TimeoutError:
                log.warning("job.attempt_timed_out", timeout_seconds=deps.attempt_timeout)
                return JobResult.TIMED_OUT
            except Exception:
                log.exception("job.batch_request_failed")
                return JobResult.ERROR
