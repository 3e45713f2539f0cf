"""Batch jobs: the core against real Redis and the emulator, and a real bulk worker process."""

from __future__ import annotations

import asyncio
import time

import pytest
from redis.asyncio import Redis

from control.pause import pause
from devenv.processes import ProcessGroup, worker_env
from ledger.audit import AuditTrail
from ledger.bulk import BulkItem, submit_many
from ledger.jobs import ARQ_JOB_KEY_PREFIX, is_batch_job_id
from ledger.models import DisconnectRequest, RequestStatus
from ledger.store import Ledger
from tests.emulator_admin import EmulatorAdmin
from tests.worker.conftest import MakeDeps
from worker.batch import BatchDeps, run_batch

pytestmark = pytest.mark.integration


async def batch_of(ledger: Ledger, accounts: list[str]) -> tuple[str, list[DisconnectRequest]]:
    """Submit ``accounts`` as one bulk batch; return the batch job id and the requests."""
    await submit_many(ledger, [BulkItem(a, "retention test") for a in accounts])
    requests = [await ledger.resolve(a) for a in accounts]
    (job_id,) = {r.job_id for r in requests}
    assert is_batch_job_id(job_id)
    return str(job_id), requests


def deps_for(make_deps: MakeDeps, slots: int = 2, timeout: float = 30.0) -> BatchDeps:
    return BatchDeps(make_deps(), asyncio.Semaphore(slots), timeout)


async def test_batch_runs_each_request_and_skips_moved_ones(
    make_deps: MakeDeps, ledger: Ledger, admin: EmulatorAdmin
) -> None:
    """Every request still under the batch's job is disconnected; one whose job changed (it was
    cancelled here) is skipped, untouched."""
    accounts = await admin.create_accounts(5)
    job_id, requests = await batch_of(ledger, accounts)
    await ledger.transition(requests[0], RequestStatus.CANCELLED)
    results = await run_batch(deps_for(make_deps), [r.request_id for r in requests], job_id)
    assert results == {"disconnected": 4, "skipped": 1}
    for account in accounts[1:]:
        assert (await admin.account(account))["status"] == "disconnected"
    assert (await admin.account(accounts[0]))["status"] == "active"
    done = await ledger.get(requests[1].request_id)
    history = await ledger.history(done.request_id)
    assert [h["to"] for h in history] == ["queued", "in_progress", "disconnected"]
    assert {h["job_id"] for h in history} == {job_id}


async def test_cancelled_batch_gives_back_attempts_in_flight(
    make_deps: MakeDeps, ledger: Ledger, admin: EmulatorAdmin
) -> None:
    """Cancelled mid-call (worker shutdown), the attempts in flight are re-queued under jobs of
    their own, attempt not spent; requests not yet started keep the batch's job id."""
    accounts = await admin.create_accounts(3)
    for account in accounts:
        await admin.script(account, {"hang_seconds": 2.0})
    job_id, requests = await batch_of(ledger, accounts)
    ids = [r.request_id for r in requests]
    task = asyncio.create_task(run_batch(deps_for(make_deps, slots=2), ids, job_id))
    await asyncio.sleep(0.5)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    after = [await ledger.get(rid) for rid in ids]
    assert [r.status for r in after] == [RequestStatus.QUEUED] * 3
    assert [r.attempts for r in after] == [0, 0, 0]
    assert [r.job_id for r in after] == [f"{ids[0]}.1", f"{ids[1]}.1", job_id]
    for request in after[:2]:
        assert await ledger.redis.zscore(ledger.bulk_queue_name, str(request.job_id)) is not None


async def test_timed_out_attempt_is_given_back_and_the_batch_goes_on(
    make_deps: MakeDeps, ledger: Ledger, admin: EmulatorAdmin
) -> None:
    """An attempt over the job timeout is re-queued on its own job; the others finish."""
    accounts = await admin.create_accounts(2)
    await admin.script(accounts[0], {"hang_seconds": 1.0})
    job_id, requests = await batch_of(ledger, accounts)
    ids = [r.request_id for r in requests]
    results = await run_batch(deps_for(make_deps, timeout=0.5), ids, job_id)
    assert results == {"timed_out": 1, "disconnected": 1}
    slow = await ledger.get(ids[0])
    assert (slow.status, slow.attempts, slow.job_id) == (RequestStatus.QUEUED, 0, f"{ids[0]}.1")


async def test_paused_batch_touches_nothing(make_deps: MakeDeps, ledger: Ledger) -> None:
    """While paused every request reports ``paused`` (the adapter defers the whole batch)."""
    job_id, requests = await batch_of(ledger, ["fca_pause1", "fca_pause2"])
    await pause(ledger.redis, "alice", "test", "operator", key=ledger.pause_key)
    results = await run_batch(deps_for(make_deps), [r.request_id for r in requests], job_id)
    assert results == {"paused": 2}
    assert [await ledger.get(r.request_id) for r in requests] == requests


@pytest.mark.process
async def test_bulk_worker_process_runs_batch_jobs_end_to_end(
    group: ProcessGroup, redis: Redis, namespace: str, process_admin: EmulatorAdmin, redis_url: str
) -> None:
    """A real ``python -m worker --queue bulk --burst`` drains three batch jobs of a sweep
    submission: every account disconnected, every job gone, histories complete."""
    ledger = Ledger(
        redis,
        queue_name=f"{namespace}urgent",
        bulk_queue_name=f"{namespace}bulk",
        audit=AuditTrail(),
        prefix=f"{namespace}fcd:",
    )
    accounts = await process_admin.create_accounts(25)
    await submit_many(ledger, [BulkItem(a, "retention") for a in accounts], batch_size=10)
    batches = await redis.zrange(ledger.bulk_queue_name, 0, -1)
    assert len(batches) == 3 and all(is_batch_job_id(b.decode()) for b in batches)
    env = worker_env(
        redis_url, process_admin.base, key_prefix=ledger.prefix, queue_name=ledger.queue_name,
        bulk_queue_name=ledger.bulk_queue_name, reconcile_interval_seconds="0",
        log_level="WARNING",
    )  # fmt: skip
    group.start("bulk", ["-m", "worker", "--queue", "bulk", "--burst"], env)
    deadline = time.monotonic() + 60
    while group.processes["bulk"].poll() is None:
        assert time.monotonic() < deadline, group.log_text("bulk")
        await asyncio.sleep(0.2)
    for account in accounts:
        request = await ledger.resolve(account)
        assert request.status == RequestStatus.DISCONNECTED, group.log_text("bulk")
        assert [h["to"] for h in await ledger.history(request.request_id)] == [
            "queued",
            "in_progress",
            "disconnected",
        ]
    assert await redis.zcard(ledger.bulk_queue_name) == 0
    for batch in batches:
        assert not await redis.exists(ARQ_JOB_KEY_PREFIX + batch.decode())
    assert len(await ledger.requests_for_account(accounts[0])) == 1
    assert (await process_admin.account(accounts[-1]))["status"] == "disconnected"
