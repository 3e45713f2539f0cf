"""Why a sweep waits, inferred from a real Redis: no bulk worker, urgent work first, the queue
depth bound, a pause; nothing when it is just working."""

from __future__ import annotations

from redis.asyncio import Redis

from control.pause import pause
from control.workers import WorkerRegistry
from ledger.models import RequestSource
from ledger.store import Ledger
from producer.sweep_waits import wait_reason
from retention.runs import SweepRun, SweepStatus


def run_in(status: SweepStatus, source: str = "stripe") -> SweepRun:
    return SweepRun(
        run_id="sw_x", policy="p", trigger="cli", status=status, source=source, started_at=1.0
    )


async def test_requested_run_says_whether_a_bulk_worker_is_alive(
    bulk_ledger: Ledger, redis: Redis
) -> None:
    """A requested run waits for a bulk worker: none alive, or how many and how busy."""
    requested = run_in(SweepStatus.REQUESTED)
    none = await wait_reason(bulk_ledger, requested, max_queue_depth=10)
    assert none is not None and "waiting for a bulk worker (none alive" in none
    registry = WorkerRegistry(redis, bulk_ledger.prefix)
    await registry.beat("h:1", queue="urgent", jobs_running=0, max_jobs=5, started_at=1.0)
    still_none = await wait_reason(bulk_ledger, requested, max_queue_depth=10)
    assert still_none is not None and "none alive" in still_none
    await registry.beat("h:2", queue="bulk", jobs_running=3, max_jobs=5, started_at=1.0)
    busy = await wait_reason(bulk_ledger, requested, max_queue_depth=10)
    assert (
        busy == "waiting for a bulk worker (1 alive, 3 jobs running, 0 jobs due in the bulk queue)"
    )


async def test_listing_waits_behind_urgent_work_and_submitting_behind_depth(
    bulk_ledger: Ledger,
) -> None:
    """Listing from Stripe waits behind urgent requests due; submitting waits while more than
    FCD_BULK_QUEUE_MAX_DEPTH requests are queued; a pause explains everything; otherwise None."""
    listing, submitting = run_in(SweepStatus.LISTING), run_in(SweepStatus.SUBMITTING)
    assert await wait_reason(bulk_ledger, listing, max_queue_depth=10) is None
    for n in range(3):
        await bulk_ledger.submit(f"fca_u{n}", source=RequestSource.OPERATOR, reference="t")
    assert await wait_reason(bulk_ledger, listing, max_queue_depth=10) == (
        "waiting behind 3 urgent requests (they go first at the rate limiter)"
    )
    file_listing = run_in(SweepStatus.LISTING, source="file:/x.csv")
    assert await wait_reason(bulk_ledger, file_listing, max_queue_depth=10) is None
    assert await wait_reason(bulk_ledger, submitting, max_queue_depth=10) is None
    deep = await wait_reason(bulk_ledger, submitting, max_queue_depth=2)
    assert deep is not None and deep.startswith(
        "queue over FCD_BULK_QUEUE_MAX_DEPTH (3 queued > 2)"
    )
    await pause(bulk_ledger.redis, "dave", "incident", "cli", key=bulk_ledger.pause_key)
    paused = await wait_reason(bulk_ledger, submitting, max_queue_depth=2)
    assert paused == "service paused by dave (cli): waits for `fcd resume`"
    assert await wait_reason(bulk_ledger, run_in(SweepStatus.FINISHED), max_queue_depth=2) is None
