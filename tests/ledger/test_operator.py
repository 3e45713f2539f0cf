"""Operator actions against a real Redis: list failures, re-queue, cancel, with audit records."""

from __future__ import annotations

import pytest
from redis.asyncio import Redis

from ledger.audit import STATUS_CHANGED
from ledger.jobs import ARQ_IN_PROGRESS_KEY_PREFIX, ARQ_JOB_KEY_PREFIX, ARQ_RESULT_KEY_PREFIX
from ledger.models import RequestSource, RequestStatus
from ledger.operator import ActionResult, MissingReason, cancel, find_failed, requeue
from ledger.store import Ledger
from tests.ledger.operator_support import failed, in_progress, submitted


async def test_find_failed_filters_by_code_and_time(ledger: Ledger, redis: Redis) -> None:
    """Failures are listed newest first; --code matches exactly; --since drops older failures."""
    old = await failed(ledger, "fca_old", code="api_key_expired")
    await redis.zadd(
        ledger.status_key(RequestStatus.FAILED), {old.request_id: old.updated_at - 7200}
    )
    expired = await failed(ledger, "fca_new1", code="api_key_expired")
    forbidden = await failed(ledger, "fca_new2", code="403")
    everything = await find_failed(ledger)
    assert [r.request_id for r in everything] == [
        forbidden.request_id,
        expired.request_id,
        old.request_id,
    ]
    by_code = await find_failed(ledger, code="api_key_expired", since_seconds=3600)
    assert [r.request_id for r in by_code] == [expired.request_id]
    assert by_code[0].last_stripe_request_id == "req_fca_new1"


async def test_requeue_resets_budget_and_audits_operator(ledger: Ledger, redis: Redis) -> None:
    """Re-queue: attempts back to 0, fresh job id enqueued, new idempotency key, operator audited."""
    request = await failed(ledger, "fca_rq", attempts=3)
    assert request.attempts == 3
    outcome = await requeue(ledger, request.request_id, operator="alice", reason="key rotated")
    assert outcome.result == ActionResult.DONE, outcome.message
    moved = await ledger.get(request.request_id)
    assert moved.status == RequestStatus.QUEUED
    assert moved.attempts == 0
    assert moved.first_attempt_at is None
    assert moved.idempotency_generation == request.idempotency_generation + 1
    assert moved.job_id is not None and moved.job_id != request.job_id
    assert await redis.exists(ARQ_JOB_KEY_PREFIX + moved.job_id)
    assert await redis.zscore(ledger.queue_name, moved.job_id) is not None
    last = (await ledger.history(request.request_id))[-1]
    assert (last["event"], last["from"], last["to"]) == (STATUS_CHANGED, "failed", "queued")
    assert (last["operator"], last["attempt"]) == ("alice", 0)
    assert "key rotated" in last["message"] and last["job_id"] == moved.job_id


async def test_requeue_ignores_a_result_arq_still_holds(ledger: Ledger, redis: Redis) -> None:
    """An arq result under the old job id cannot block the re-queue: the new job id differs."""
    request = await failed(ledger, "fca_res")
    assert request.job_id is not None
    await redis.set(ARQ_RESULT_KEY_PREFIX + request.job_id, b"{}", ex=3600)
    outcome = await requeue(ledger, request.request_id, operator="bob", reason="retry")
    assert outcome.result == ActionResult.DONE
    assert outcome.request is not None and outcome.request.job_id != request.job_id
    assert await redis.exists(ARQ_JOB_KEY_PREFIX + str(outcome.request.job_id))


async def test_requeue_refused_when_account_has_another_active_request(ledger: Ledger) -> None:
    """If the account got a new active request meanwhile, re-queue refuses and changes nothing."""
    request = await failed(ledger, "fca_busy")
    newer = await submitted(ledger, "fca_busy")
    outcome = await requeue(ledger, request.request_id, operator="alice", reason="retry")
    assert outcome.result == ActionResult.REFUSED
    assert newer.request_id in outcome.message
    assert (await ledger.get(request.request_id)).status == RequestStatus.FAILED


async def test_requeue_refuses_non_failed_and_unknown_and_dry_run_changes_nothing(
    ledger: Ledger,
) -> None:
    """Only failed requests re-queue; unknown ids are reported; a dry run writes nothing."""
    queued = await submitted(ledger, "fca_q")
    refused = await requeue(ledger, queued.request_id, operator="a", reason="r")
    assert refused.result == ActionResult.REFUSED and "queued" in refused.message
    missing = await requeue(ledger, "dr_00000000000000000000000000", operator="a", reason="r")
    assert missing.result == ActionResult.NOT_FOUND
    request = await failed(ledger, "fca_dry")
    dry = await requeue(ledger, request.request_id, operator="a", reason="r", dry_run=True)
    assert dry.result == ActionResult.WOULD_DO
    assert await ledger.get(request.request_id) == request
    with pytest.raises(MissingReason):
        await requeue(ledger, request.request_id, operator="a", reason="  ")


async def test_cancel_waiting_request_withdraws_its_job(ledger: Ledger, redis: Redis) -> None:
    """Cancelling a queued request records the operator and takes its arq job off the queue."""
    request = await submitted(ledger, "fca_c")
    outcome = await cancel(ledger, request.request_id, operator="carol", reason="customer asked")
    assert outcome.result == ActionResult.DONE
    assert (await ledger.get(request.request_id)).status == RequestStatus.CANCELLED
    assert await redis.zscore(ledger.queue_name, str(request.job_id)) is None
    assert not await redis.exists(ARQ_JOB_KEY_PREFIX + str(request.job_id))
    record = (await ledger.history(request.request_id))[-1]
    assert (record["to"], record["operator"]) == ("cancelled", "carol")


async def test_cancel_refuses_in_flight_and_finished_requests(ledger: Ledger, redis: Redis) -> None:
    """An in-progress request is refused as in flight; a finished one as having nothing to cancel."""
    running = await in_progress(ledger, "fca_run")
    await redis.set(ARQ_IN_PROGRESS_KEY_PREFIX + str(running.job_id), b"1", ex=60)
    outcome = await cancel(ledger, running.request_id, operator="a", reason="r")
    assert outcome.result == ActionResult.REFUSED and "in flight" in outcome.message
    assert (await ledger.get(running.request_id)).status == RequestStatus.IN_PROGRESS
    done = await failed(ledger, "fca_done")
    finished = await cancel(ledger, done.request_id, operator="a", reason="r")
    assert finished.result == ActionResult.REFUSED and "already failed" in finished.message


async def test_cancel_refuses_to_drop_a_user_deletion_merged_into_a_sweep_request(
    bulk_ledger: Ledger,
) -> None:
    """Issue 16.1: a user's deletion merged into a queued sweep request makes a plain cancel
    ("retention policy misconfigured") refused, naming the merged submission, and changes
    nothing; with ``force`` it is cancelled and its record names what it dropped."""
    sweep = await bulk_ledger.submit(
        "fca_gdpr", source=RequestSource.RETENTION_POLICY, reference="stale/sw_1", reason="stale"
    )
    user = await bulk_ledger.submit(
        "fca_gdpr", source=RequestSource.DELETION_EVENT, reference="billing:evt_9", reason="gdpr"
    )
    assert user.merged and user.request_id == sweep.request_id
    refused = await cancel(
        bulk_ledger, sweep.request_id, operator="oncall", reason="retention policy misconfigured"
    )
    assert refused.result == ActionResult.REFUSED
    assert "billing:evt_9" in refused.message and "--force" in refused.message
    kept = await bulk_ledger.get(sweep.request_id)
    assert kept.status == RequestStatus.QUEUED
    assert await bulk_ledger.active_request("fca_gdpr") == sweep.request_id
    forced = await cancel(
        bulk_ledger, sweep.request_id, operator="oncall", reason="misconfigured", force=True
    )
    assert forced.result == ActionResult.DONE and "billing:evt_9" in forced.message
    last = (await bulk_ledger.history(sweep.request_id))[-1]
    assert last["to"] == "cancelled" and "billing:evt_9" in last["message"]
