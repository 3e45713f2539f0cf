"""Operating sweeps against a real Redis: cancel (also mid-submission), terminal records that
cannot be overwritten, dry runs that never hold the lock an apply needs."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
from redis.asyncio import Redis

from ledger.models import RequestSource, RequestStatus
from ledger.store import Ledger
from retention.runs import CannotCancel, SweepRun, SweepRuns, SweepStatus, new_sweep_id
from retention.sources import Account
from retention.sweep import SweepOptions, run_guarded
from tests.retention.test_sweep import NOW, policy, start


async def pages_of(accounts: list[Account]) -> AsyncIterator[list[Account]]:
    yield accounts


def inactive(count: int) -> list[Account]:
    return [{"id": f"fca_i{n}", "status": "inactive"} for n in range(count)]


async def test_cancel_stops_a_sweep_waiting_to_submit_and_sticks(
    bulk_ledger: Ledger, redis: Redis
) -> None:
    """A sweep held back by FCD_BULK_QUEUE_MAX_DEPTH is cancelled: it stops within a poll, its
    record says cancelled with the operator and reason (audited), and its own finish cannot
    overwrite that; a second cancel is refused."""
    runs = SweepRuns(redis, bulk_ledger.prefix, bulk_ledger.audit)
    chosen = policy(max_disconnects=1000)
    for n in range(3):  # already over the depth bound below: submission waits at once
        await bulk_ledger.submit(f"fca_w{n}", source=RequestSource.OPERATOR, reference="t")
    run = await start(runs, chosen, apply=True)
    options = SweepOptions(apply=True, max_queue_depth=1, chunk_size=10)
    task = asyncio.create_task(
        run_guarded(bulk_ledger, runs, run, chosen, pages_of(inactive(25)), options,
                    lock_seconds=60)
    )  # fmt: skip
    while (await runs.get(run.run_id)).status != SweepStatus.SUBMITTING:  # noqa: ASYNC110
        await asyncio.sleep(0.02)
    cancelled = await runs.cancel(run.run_id, operator="erin", reason="wrong policy")
    assert cancelled.status == SweepStatus.CANCELLED
    done = await asyncio.wait_for(task, 30)
    assert done.status == SweepStatus.CANCELLED and done.submitted == 0
    assert done.message == "cancelled by erin: wrong policy"
    assert await redis.zcard(bulk_ledger.status_key(RequestStatus.QUEUED)) == 3  # none added
    history = await runs.history(run.run_id)
    assert history[-1]["event"] == "sweep.cancelled" and history[-1]["operator"] == "erin"
    await runs.finish(run, SweepStatus.FINISHED, "late finish")
    assert (await runs.get(run.run_id)).status == SweepStatus.CANCELLED
    with pytest.raises(CannotCancel, match="already cancelled"):
        await runs.cancel(run.run_id, operator="erin", reason="again")
    with pytest.raises(CannotCancel, match="no sweep run"):
        await runs.cancel("sw_missing", operator="erin", reason="r")
    with pytest.raises(ValueError, match="reason"):
        await runs.cancel(run.run_id, operator="erin", reason=" ")


async def test_a_dry_run_never_holds_the_lock_an_apply_needs(
    bulk_ledger: Ledger, redis: Redis
) -> None:
    """While an apply holds the policy's lock a dry run of the same policy still runs; and a
    dry run in progress leaves the lock free for an apply."""
    runs = SweepRuns(redis, bulk_ledger.prefix, bulk_ledger.audit)
    chosen = policy()
    token = await runs.lock(chosen.name, 60)
    assert token is not None
    dry = await start(runs, chosen, apply=False)
    done = await run_guarded(
        bulk_ledger, runs, dry, chosen, pages_of(inactive(4)), SweepOptions(), lock_seconds=60
    )
    assert done.status == SweepStatus.FINISHED and done.selected == 4
    blocked = await start(runs, chosen, apply=True)
    skipped = await run_guarded(
        bulk_ledger, runs, blocked, chosen, pages_of(inactive(4)), SweepOptions(apply=True),
        lock_seconds=60,
    )  # fmt: skip
    assert skipped.status == SweepStatus.FAILED and "already running" in skipped.message
    await runs.unlock(chosen.name, token)
    assert await redis.get(f"{bulk_ledger.prefix}sweep:lock:{chosen.name}") is None


async def test_requested_run_is_cancelled_before_a_worker_takes_it(
    bulk_ledger: Ledger, redis: Redis
) -> None:
    """A run still ``requested`` is cancelled at once; its record is terminal."""
    runs = SweepRuns(redis, bulk_ledger.prefix, bulk_ledger.audit)
    run = await runs.create(
        SweepRun(
            run_id=new_sweep_id(), policy="p", trigger="cli", status=SweepStatus.REQUESTED,
            started_at=NOW,
        )
    )  # fmt: skip
    done = await runs.cancel(run.run_id, operator="erin", reason="not today")
    assert (done.status, done.finished_at is not None) == (SweepStatus.CANCELLED, True)
