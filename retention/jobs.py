"""The sweep job contract: ``fcd sweep`` asks a bulk worker to run a Stripe-sourced sweep.

The CLI holds no Stripe key and may not import the worker, so for a policy whose source is
Stripe it records the run (status ``requested``) and enqueues this JSON job on the bulk queue; a
bulk worker lists through the shared rate limiter and runs the same :func:`run_sweep`, and the
CLI follows the run record. Queued jobs outlive deploys: add fields only with defaults, never
rename :data:`SWEEP_JOB` without an alias.
"""

from __future__ import annotations

import time

from pydantic import BaseModel, ConfigDict
from redis.asyncio import Redis

from ledger.jobs import ARQ_JOB_KEY_PREFIX, serialize

SWEEP_JOB = "retention_sweep"


class SweepJob(BaseModel):
    """Payload of a :data:`SWEEP_JOB` job."""

    model_config = ConfigDict(frozen=True, extra="ignore")

    v: int = 1
    run_id: str


async def enqueue_sweep_job(
    redis: Redis, queue_name: str, run_id: str, expires_seconds: int = 86_400
) -> str:
    """Write the arq job for ``run_id`` exactly as arq's ``enqueue_job`` would; return its id.

    The job id is the run id, so asking twice for one run can never enqueue it twice.
    """
    now_ms = int(time.time() * 1000)
    payload = SweepJob(run_id=run_id).model_dump()
    record = serialize({"t": None, "f": SWEEP_JOB, "a": [payload], "k": {}, "et": now_ms})
    async with redis.pipeline(transaction=True) as pipe:
        pipe.set(ARQ_JOB_KEY_PREFIX + run_id, record, px=expires_seconds * 1000, nx=True)
        pipe.zadd(queue_name, {run_id: now_ms}, nx=True)
        await pipe.execute()
    return run_id
