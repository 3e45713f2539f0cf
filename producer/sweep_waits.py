"""Why a sweep run is not moving: the one sentence ``fcd sweep``, ``fcd sweeps`` and the
dashboard show beside a run that waits, instead of an ETA with no reason.

Read-only and inferred from Redis as it is now (nobody else writes it down):

- paused (``fcd pause`` or the breaker): nothing is listed or run until a resume;
- ``requested``: a bulk worker has not picked the run up: none alive (the worker registry), or
  the ones alive are busy with the jobs ahead of it in the bulk queue;
- ``listing`` (Stripe): the list calls wait at the rate limiter behind urgent work, which always
  goes first: "waiting behind N urgent requests" (jobs due in the urgent queue);
- ``submitting``: submission pauses while more than ``FCD_BULK_QUEUE_MAX_DEPTH`` requests are
  ``queued`` until the workers drain them.

``None`` when none of these holds (the run is simply working).
"""

from __future__ import annotations

import time

from control.pause import get_pause
from control.workers import WorkerRegistry
from ledger.models import RequestStatus
from ledger.store import Ledger
from retention.runs import TERMINAL_SWEEP, SweepRun, SweepStatus


async def wait_reason(ledger: Ledger, run: SweepRun, *, max_queue_depth: int) -> str | None:
    """The reason ``run`` waits, or ``None``; see the module docstring."""
    if run.status in TERMINAL_SWEEP:
        return None
    pause = await get_pause(ledger.redis, key=ledger.pause_key)
    if pause is not None:
        return f"service paused by {pause.operator} ({pause.source}): waits for `fcd resume`"
    if run.status == SweepStatus.REQUESTED:
        return await _worker_reason(ledger)
    if run.status == SweepStatus.LISTING and run.source == "stripe":
        urgent = await _due_jobs(ledger, ledger.queue_name)
        if urgent:
            return f"waiting behind {urgent:,} urgent requests (they go first at the rate limiter)"
    if run.status == SweepStatus.SUBMITTING:
        queued = int(await ledger.redis.zcard(ledger.status_key(RequestStatus.QUEUED)))
        if queued > max_queue_depth:
            return (
                f"queue over FCD_BULK_QUEUE_MAX_DEPTH ({queued:,} queued > {max_queue_depth:,}); "
                "submission resumes as workers drain it"
            )
    return None


async def _worker_reason(ledger: Ledger) -> str:
    bulk = [
        w for w in await WorkerRegistry(ledger.redis, ledger.prefix).alive() if w.queue == "bulk"
    ]
    if not bulk:
        return "waiting for a bulk worker (none alive: start `python -m worker --queue bulk`)"
    running = sum(w.jobs_running for w in bulk)
    ahead = await _due_jobs(ledger, ledger.bulk_queue_name)
    return (
        f"waiting for a bulk worker ({len(bulk)} alive, {running} jobs running, "
        f"{ahead:,} jobs due in the bulk queue)"
    )


async def _due_jobs(ledger: Ledger, queue: str) -> int:
    return int(await ledger.redis.zcount(queue, "-inf", int(time.time() * 1000)))
