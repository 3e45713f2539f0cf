"""The reconciler against a real Redis: lost arq jobs come back, live ones are left alone."""

from __future__ import annotations

import asyncio
import time

from redis.asyncio import Redis

from ledger.audit import STATUS_CHANGED, AuditTrail, TransitionDetails
from ledger.bulk import BulkItem, submit_many
from ledger.customer_models import CustomerRequest, CustomerStatus, new_customer_request_id
from ledger.customers import CustomerLedger
from ledger.jobs import (
    ARQ_IN_PROGRESS_KEY_PREFIX,
    ARQ_JOB_KEY_PREFIX,
    batch_heartbeat_key,
    is_batch_job_id,
)
from ledger.models import RequestSource, RequestStatus
from ledger.operator import cancel
from ledger.reconcile import REENQUEUED, _requeue_stuck, reconcile, reenqueue
from ledger.store import Ledger
from tests.ledger.operator_support import in_progress, submitted

LEASE = 900.0


async def test_deleted_arq_job_is_reenqueued_once_with_audit(ledger: Ledger, redis: Redis) -> None:
    """A queued request whose arq job was deleted gets a fresh job and a reenqueued record."""
    lost = await submitted(ledger, "fca_lost")
    kept = await submitted(ledger, "fca_kept")
    await redis.delete(ARQ_JOB_KEY_PREFIX + str(lost.job_id))
    report = await reconcile(ledger, lease_seconds=LEASE)
    assert report.scanned == 2
    assert [r.request_id for r in report.repairs] == [lost.request_id]
    repaired = await ledger.get(lost.request_id)
    assert repaired.status == RequestStatus.QUEUED
    assert repaired.job_id == report.repairs[0].new_job_id != lost.job_id
    assert await redis.exists(ARQ_JOB_KEY_PREFIX + str(repaired.job_id))
    assert await redis.zscore(ledger.queue_name, str(repaired.job_id)) is not None
    last = (await ledger.history(lost.request_id))[-1]
    assert (last["event"], last["from"], last["to"]) == (REENQUEUED, "queued", "queued")
    assert last["job_id"] == repaired.job_id and "gone" in last["message"]
    assert await ledger.get(kept.request_id) == kept
    again = await reconcile(ledger, lease_seconds=LEASE)
    assert again.repairs == []


async def test_job_missing_from_queue_and_not_held_is_orphaned(
    ledger: Ledger, redis: Redis
) -> None:
    """A job record nobody will pick up (not queued, not in progress) counts as lost."""
    request = await submitted(ledger, "fca_orphan")
    await redis.zrem(ledger.queue_name, str(request.job_id))
    report = await reconcile(ledger, lease_seconds=LEASE)
    assert [r.request_id for r in report.repairs] == [request.request_id]
    assert "neither queued nor held" in report.repairs[0].problem


async def test_retry_scheduled_without_job_is_reenqueued(ledger: Ledger, redis: Redis) -> None:
    """A retry whose deferred job vanished is re-enqueued without changing status."""
    request = await in_progress(ledger, "fca_retry")
    request = await ledger.transition(request, RequestStatus.RETRY_SCHEDULED, enqueue_in=30.0)
    await redis.delete(ARQ_JOB_KEY_PREFIX + str(request.job_id))
    report = await reconcile(ledger, lease_seconds=LEASE)
    assert len(report.repairs) == 1
    assert (await ledger.get(request.request_id)).status == RequestStatus.RETRY_SCHEDULED


async def test_stuck_in_progress_past_lease_is_requeued(ledger: Ledger, redis: Redis) -> None:
    """in_progress past the lease goes back to queued with a new job, even when arq still holds a
    stale in-progress key for it (a killed worker's key outlives the attempt by up to a day);
    a request inside its lease is left alone."""
    stuck = await in_progress(ledger, "fca_stuck")
    fresh = await in_progress(ledger, "fca_fresh")
    await redis.hset(ledger.request_key(stuck.request_id), "updated_at", str(time.time() - 2000))  # type: ignore[misc]
    held = await in_progress(ledger, "fca_held")
    await redis.hset(ledger.request_key(held.request_id), "updated_at", str(time.time() - 2000))  # type: ignore[misc]
    await redis.set(ARQ_IN_PROGRESS_KEY_PREFIX + str(held.job_id), b"1", ex=60)
    report = await reconcile(ledger, lease_seconds=LEASE)
    assert sorted(r.request_id for r in report.repairs) == sorted(
        [stuck.request_id, held.request_id]
    )
    assert "stale" in next(r.problem for r in report.repairs if r.request_id == held.request_id)
    moved = await ledger.get(stuck.request_id)
    assert moved.status == RequestStatus.QUEUED and moved.attempts == 1
    assert moved.job_id != stuck.job_id
    last = (await ledger.history(stuck.request_id))[-1]
    assert (last["event"], last["from"], last["to"]) == (STATUS_CHANGED, "in_progress", "queued")
    assert (await ledger.get(fresh.request_id)).status == RequestStatus.IN_PROGRESS
    assert (await ledger.get(held.request_id)).status == RequestStatus.QUEUED


async def test_dry_run_reports_and_changes_nothing(ledger: Ledger, redis: Redis) -> None:
    """A dry run lists the repair it would make and leaves the request untouched."""
    request = await submitted(ledger, "fca_dry")
    await redis.delete(ARQ_JOB_KEY_PREFIX + str(request.job_id))
    report = await reconcile(ledger, lease_seconds=LEASE, dry_run=True)
    assert len(report.repairs) == 1 and report.repairs[0].new_job_id is None
    assert await ledger.get(request.request_id) == request


async def test_concurrent_passes_never_repair_twice(ledger: Ledger, redis: Redis) -> None:
    """Two passes at once: the lock lets one work; each lost job is re-enqueued exactly once."""
    requests = [await submitted(ledger, f"fca_many{i}") for i in range(20)]
    for request in requests:
        await redis.delete(ARQ_JOB_KEY_PREFIX + str(request.job_id))
    first, second = await asyncio.gather(
        reconcile(ledger, lease_seconds=LEASE), reconcile(ledger, lease_seconds=LEASE)
    )
    assert sorted([first.lock_busy, second.lock_busy]) == [False, True]
    assert len(first.repairs) + len(second.repairs) == 20
    for request in requests:
        events = [h["event"] for h in await ledger.history(request.request_id)]
        assert events.count(REENQUEUED) == 1


async def test_reenqueue_is_a_compare_and_set(ledger: Ledger, redis: Redis) -> None:
    """A re-enqueue from a stale snapshot (job moved on) or of a live job does nothing."""
    request = await submitted(ledger, "fca_cas")
    assert await reenqueue(ledger, request, only_if_orphaned=True) is None
    new_job = await reenqueue(ledger, request)
    assert new_job is not None
    assert await reenqueue(ledger, request) is None
    assert (await ledger.get(request.request_id)).job_id == new_job


async def test_batch_job_covers_its_requests_until_it_is_gone(ledger: Ledger, redis: Redis) -> None:
    """Requests recorded under a live batch job are left alone; once the batch job is deleted,
    each still waiting request gets a job of its own (one already moved on is not touched)."""
    await submit_many(ledger, [BulkItem(f"fca_batch{n}", "r") for n in range(3)])
    batched = [await ledger.resolve(f"fca_batch{n}") for n in range(3)]
    (batch_id,) = {r.job_id for r in batched}
    assert is_batch_job_id(batch_id)
    assert (await reconcile(ledger, lease_seconds=LEASE)).repairs == []
    moved = await ledger.transition(batched[0], RequestStatus.CANCELLED)
    await redis.delete(ARQ_JOB_KEY_PREFIX + str(batch_id))
    report = await reconcile(ledger, lease_seconds=LEASE)
    assert sorted(r.request_id for r in report.repairs) == sorted(r.request_id for r in batched[1:])
    for request in batched[1:]:
        repaired = await ledger.get(request.request_id)
        assert repaired.job_id == f"{request.request_id}.1"
        assert await redis.zscore(ledger.queue_name, str(repaired.job_id)) is not None
        events = [h["event"] for h in await ledger.history(request.request_id)]
        assert events == [STATUS_CHANGED, REENQUEUED]
    assert (await ledger.get(moved.request_id)).status == RequestStatus.CANCELLED


async def test_batch_held_by_a_dead_worker_is_orphaned_once_its_heartbeat_stops(
    ledger: Ledger, redis: Redis
) -> None:
    """arq keeps a killed bulk worker's batch in the queue and its in-progress key for a day;
    the batch's heartbeat decides: while it beats the requests are left alone, once it is gone
    each gets a job of its own (the job stays in the queue's sorted set, as arq leaves it)."""
    await submit_many(ledger, [BulkItem(f"fca_dead{n}", "r") for n in range(2)])
    waiting = [await ledger.resolve(f"fca_dead{n}") for n in range(2)]
    batch_id = str(waiting[0].job_id)
    assert await redis.zscore(ledger.queue_name, batch_id) is not None
    assert (await reconcile(ledger, lease_seconds=LEASE)).repairs == []  # queued, not started
    await redis.set(ARQ_IN_PROGRESS_KEY_PREFIX + batch_id, b"1", ex=86_400)  # a worker took it
    await redis.set(batch_heartbeat_key(ledger.prefix, batch_id), b"1", ex=60)
    assert (await reconcile(ledger, lease_seconds=LEASE)).repairs == []
    await redis.delete(batch_heartbeat_key(ledger.prefix, batch_id))  # ...which then died
    report = await reconcile(ledger, lease_seconds=LEASE)
    assert sorted(r.request_id for r in report.repairs) == sorted(r.request_id for r in waiting)
    for request in waiting:
        assert (await ledger.get(request.request_id)).job_id == f"{request.request_id}.1"


async def test_cancelling_one_request_keeps_its_batch_job(ledger: Ledger, redis: Redis) -> None:
    """An operator cancel withdraws a request's own job, never the batch its neighbours share."""
    await submit_many(ledger, [BulkItem(f"fca_keep{n}", "r") for n in range(2)])
    first = await ledger.resolve("fca_keep0")
    outcome = await cancel(ledger, first.request_id, operator="alice", reason="test")
    assert outcome.ok
    assert await redis.exists(ARQ_JOB_KEY_PREFIX + str(first.job_id))
    assert await redis.zscore(ledger.queue_name, str(first.job_id)) is not None


async def test_the_reconciler_never_hands_back_an_attempt_claimed_again_under_its_job(
    ledger: Ledger,
) -> None:
    """Issue 16.4 (ABA): the reconciler reads a request in_progress past its lease; before its
    compare-and-set, arq re-runs the same job and the attempt resumes (in_progress -> queued ->
    in_progress, same job id). The reconciler's repair with its snapshot must change nothing,
    and the live attempt's outcome must land."""
    claimed = await in_progress(ledger, "fca_aba")
    await ledger.redis.hset(  # type: ignore[misc]
        ledger.request_key(claimed.request_id), "updated_at", str(time.time() - 10 * LEASE)
    )
    snapshot = await ledger.get(claimed.request_id)  # what the reconciler's pass read
    resumed = await ledger.transition(
        snapshot, RequestStatus.QUEUED, TransitionDetails(message="resuming")
    )
    live = await ledger.transition(resumed, RequestStatus.IN_PROGRESS, attempts_delta=1)
    assert live.job_id == snapshot.job_id
    details = TransitionDetails(message="reconciler: lease expired")
    assert await _requeue_stuck(ledger, snapshot, details) is None
    assert (await ledger.get(claimed.request_id)).status == RequestStatus.IN_PROGRESS
    done = await ledger.transition(live, RequestStatus.DISCONNECTED)
    assert done.status == RequestStatus.DISCONNECTED


async def test_waiting_request_whose_job_a_lost_worker_took_is_reenqueued(
    ledger: Ledger, redis: Redis
) -> None:
    """Found by the chaos harness: a worker took a waiting request's job (arq's in-progress key)
    and was killed before claiming it. arq holds the job for its longest function timeout (a
    day on bulk workers), so the request waited that long. A job held although it was due more
    than the lease ago is a lost worker's: re-enqueued. One taken just now is left alone."""
    lost = await submitted(ledger, "fca_takenLost")
    live = await submitted(ledger, "fca_takenLive")
    for request in (lost, live):
        await redis.set(ARQ_IN_PROGRESS_KEY_PREFIX + str(request.job_id), b"1", ex=86_400)
    await redis.zadd(ledger.queue_name, {str(lost.job_id): (time.time() - 2 * LEASE) * 1000})
    report = await reconcile(ledger, lease_seconds=LEASE)
    assert [r.request_id for r in report.repairs] == [lost.request_id]
    assert "never claimed" in report.repairs[0].problem
    repaired = await ledger.get(lost.request_id)
    assert repaired.status == RequestStatus.QUEUED and repaired.job_id != lost.job_id
    assert await ledger.get(live.request_id) == live


async def test_a_customer_parent_stuck_in_listing_after_a_crash_is_requeued(
    ledger: Ledger, redis: Redis
) -> None:
    """Issue 12: a worker killed mid-listing leaves its ``cr_…`` parent in ``listing``. Past the
    lease the reconciler moves it back to ``queued`` with a fresh job (and an audit record), so
    the listing resumes; a parent inside its lease is left alone."""
    customers = CustomerLedger(ledger, AuditTrail())
    ids = {}
    for name in ("stuck", "fresh"):
        now = time.time()
        parent = CustomerRequest(
            request_id=new_customer_request_id(), customer_id=f"cus_{name}",
            status=CustomerStatus.QUEUED, source=RequestSource.DELETION_EVENT,
            reference=f"crm:{name}", reason="gone", created_at=now, updated_at=now,
        )  # fmt: skip
        await customers.create(
            parent,
            event_key=f"{ledger.prefix}intake:crm:{name}",
            digest="d",
            result={"request_ids": [parent.request_id]},
        )
        await customers.transition(
            await customers.get(parent.request_id), CustomerStatus.LISTING, attempts_delta=1
        )
        ids[name] = parent.request_id
    stuck_before = await customers.get(ids["stuck"])
    await redis.hset(customers.key(ids["stuck"]), "updated_at", str(time.time() - 2000))  # type: ignore[misc]
    report = await reconcile(ledger, lease_seconds=LEASE)
    assert [r.request_id for r in report.repairs] == [ids["stuck"]]
    moved = await customers.get(ids["stuck"])
    assert moved.status == CustomerStatus.QUEUED and moved.job_id != stuck_before.job_id
    assert await redis.exists(ARQ_JOB_KEY_PREFIX + str(moved.job_id))
    last = (await customers.history(ids["stuck"]))[-1]
    assert (last["from"], last["to"]) == ("listing", "queued")
    assert (await customers.get(ids["fresh"])).status == CustomerStatus.LISTING
