"""``fcd failed | requeue | cancel | queue | reconcile`` as real processes against real Redis.

Where the claim is that a request gets *done* again (re-queue, reconcile), a real worker process
then runs it against the emulator process.
"""

from __future__ import annotations

import json
import time

import pytest
from redis.asyncio import Redis

from control.overview import publish_limiter_snapshot
from devenv.processes import ProcessGroup
from ledger.audit import STATUS_CHANGED
from ledger.jobs import ARQ_IN_PROGRESS_KEY_PREFIX, ARQ_JOB_KEY_PREFIX, ARQ_RESULT_KEY_PREFIX
from ledger.models import RequestStatus
from ledger.reconcile import REENQUEUED
from ledger.store import Ledger
from retention.runs import SweepRun, SweepRuns, SweepStatus, new_sweep_id
from tests.emulator_admin import EmulatorAdmin
from tests.ledger.operator_support import failed, in_progress, submitted
from tests.producer.process_helpers import env_for, wait_for_exit
from tests.producer.test_cli import fcd

pytestmark = pytest.mark.process


async def test_failed_lists_errors_with_request_ids_and_filters(
    redis_url: str, namespace: str, ledger: Ledger
) -> None:
    """fcd failed shows request, account, attempts, error, Request-Id, age; --code filters."""
    expired = await failed(ledger, "fca_f1", code="api_key_expired", attempts=2)
    forbidden = await failed(ledger, "fca_f2", code="403", http_status=403)
    done = fcd(["failed", "--json"], redis_url, namespace)
    assert done.returncode == 0, done.stderr
    rows = [json.loads(line) for line in done.stdout.splitlines()]
    assert [r["request_id"] for r in rows] == [forbidden.request_id, expired.request_id]
    assert rows[1]["attempts"] == 2
    assert rows[1]["last_stripe_request_id"] == "req_fca_f1"
    assert rows[1]["last_error"] == "Stripe said api_key_expired"
    only = fcd(["failed", "--code", "403", "--since", "1h", "--json"], redis_url, namespace)
    assert [json.loads(x)["account_id"] for x in only.stdout.splitlines()] == ["fca_f2"]
    table = fcd(["failed"], redis_url, namespace)
    assert "req_fca_f1" in table.stdout and "2 failed" in table.stdout
    bad = fcd(["failed", "--since", "yesterday"], redis_url, namespace)
    assert bad.returncode == 2 and "not a duration" in bad.stderr


async def test_requeue_with_old_arq_result_then_worker_disconnects(
    redis_url: str,
    namespace: str,
    ledger: Ledger,
    redis: Redis,
    admin: EmulatorAdmin,
    group: ProcessGroup,
) -> None:
    """A failed request whose old job id still has an arq result is re-queued (operator and
    reason audited, attempts reset) and a real worker then disconnects the account."""
    [account] = await admin.create_accounts(1)
    request = await failed(ledger, account, attempts=3)
    await redis.set(ARQ_RESULT_KEY_PREFIX + str(request.job_id), b'{"r":"failed"}', ex=3600)
    args = ["requeue", request.request_id, "--reason", "key rotated", "--operator", "dana"]
    done = fcd(args, redis_url, namespace)
    assert done.returncode == 0, done.stderr
    assert "1 re-queued, 0 refused" in done.stdout
    requeued = await ledger.get(request.request_id)
    assert (requeued.status, requeued.attempts) == (RequestStatus.QUEUED, 0)
    group.start("worker", ["-m", "worker", "--burst"], env_for(ledger, redis_url, admin.base))
    await wait_for_exit(group, "worker")
    final = await ledger.get(request.request_id)
    assert final.status == RequestStatus.DISCONNECTED, group.log_text("worker")
    assert (await admin.account(account))["status"] == "disconnected"
    history = await ledger.history(request.request_id)
    requeue_record = next(h for h in history if h["from"] == "failed")
    assert requeue_record["operator"] == "dana" and "key rotated" in requeue_record["message"]


async def test_requeue_all_failed_by_code_dry_run_then_for_real(
    redis_url: str, namespace: str, ledger: Ledger
) -> None:
    """--all-failed --code picks exactly the matching failures; --dry-run changes nothing."""
    match = [await failed(ledger, f"fca_m{i}", code="api_key_expired") for i in range(3)]
    other = await failed(ledger, "fca_other", code="403")
    args = ["requeue", "--all-failed", "--code", "api_key_expired", "--reason", "rotated"]
    dry = fcd([*args, "--dry-run"], redis_url, namespace)
    assert dry.returncode == 0, dry.stderr
    assert "dry run: 3 would be re-queued" in dry.stdout
    assert [(await ledger.get(r.request_id)).status for r in match] == ["failed"] * 3
    real = fcd(args, redis_url, namespace)
    assert "3 re-queued, 0 refused" in real.stdout
    assert [(await ledger.get(r.request_id)).status for r in match] == ["queued"] * 3
    assert (await ledger.get(other.request_id)).status == RequestStatus.FAILED
    mixed = fcd(
        ["requeue", other.request_id, "--all-failed", "--reason", "x"], redis_url, namespace
    )
    assert mixed.returncode == 2
    no_reason = fcd(["requeue", other.request_id], redis_url, namespace)
    assert no_reason.returncode == 2 and "--reason" in no_reason.stderr


async def test_requeue_refused_cleanly_when_account_is_busy(
    redis_url: str, namespace: str, ledger: Ledger
) -> None:
    """If the account has a newer active request, requeue says so and exits 1; nothing moves."""
    old = await failed(ledger, "fca_busy")
    newer = await submitted(ledger, "fca_busy")
    done = fcd(["requeue", old.request_id, "--reason", "retry"], redis_url, namespace)
    assert done.returncode == 1
    assert f"already has an active request {newer.request_id}" in done.stdout
    assert "Traceback" not in done.stderr
    assert (await ledger.get(old.request_id)).status == RequestStatus.FAILED


async def test_cancel_waiting_and_refuse_in_flight(
    redis_url: str, namespace: str, ledger: Ledger, redis: Redis
) -> None:
    """cancel moves a queued request to cancelled (by account id too); an in-flight one is
    refused with an explanation and exit 1."""
    waiting = await submitted(ledger, "fca_wait")
    done = fcd(["cancel", "fca_wait", "--reason", "dup", "--operator", "eve"], redis_url, namespace)
    assert done.returncode == 0, done.stderr
    cancelled = await ledger.get(waiting.request_id)
    assert cancelled.status == RequestStatus.CANCELLED
    record = (await ledger.history(waiting.request_id))[-1]
    assert (record["event"], record["operator"]) == (STATUS_CHANGED, "eve")
    running = await in_progress(ledger, "fca_run")
    await redis.set(ARQ_IN_PROGRESS_KEY_PREFIX + str(running.job_id), b"1", ex=60)
    refused = fcd(["cancel", running.request_id, "--reason", "stop"], redis_url, namespace)
    assert refused.returncode == 1
    assert "in flight" in refused.stdout
    assert (await ledger.get(running.request_id)).status == RequestStatus.IN_PROGRESS


async def test_queue_shows_depths_flight_failures_limiter_and_pause(
    redis_url: str, namespace: str, ledger: Ledger, redis: Redis
) -> None:
    """fcd queue reports depth, in flight, retries, oldest pending, recent failures, the
    published limiter snapshot and the pause flag."""
    await submitted(ledger, "fca_q1")
    await in_progress(ledger, "fca_q2")
    await failed(ledger, "fca_q3")
    retry = await in_progress(ledger, "fca_q4")
    await ledger.transition(retry, RequestStatus.RETRY_SCHEDULED, enqueue_in=600.0)
    snapshot = {"rate_factor": 0.5, "effective_global_rate": 10.0, "in_flight": 2, "waits": 7}
    await publish_limiter_snapshot(redis, ledger.prefix, {**snapshot, "wait_seconds": 1.5})
    done = fcd(["queue", "--json"], redis_url, namespace)
    assert done.returncode == 0, done.stderr
    body = json.loads(done.stdout)
    queue, bulk = body["queues"]  # the urgent queue, then the sweeps' bulk queue
    assert queue["name"] == ledger.queue_name
    assert bulk["name"] == "fcd:queue:bulk"
    assert (queue["due"], queue["deferred"]) == (4, 1)  # no worker ran: first jobs still queued
    assert (body["in_flight"], body["retry_scheduled"], body["failed_last_hour"]) == (1, 1, 1)
    assert body["oldest_pending_age_seconds"] >= 0
    assert body["limiter"]["effective_global_rate"] == 10.0
    assert body["paused"] is None or body["paused"]  # the pause key is global: other tests
    text = fcd(["queue"], redis_url, namespace)
    assert (
        "rate 10.0/s (factor 0.50)" in text.stdout and "failed in the last hour: 1" in text.stdout
    )


async def test_reconcile_brings_back_request_whose_arq_job_was_deleted(
    redis_url: str,
    namespace: str,
    ledger: Ledger,
    redis: Redis,
    admin: EmulatorAdmin,
    group: ProcessGroup,
) -> None:
    """Delete a queued request's arq job by hand: a burst worker cannot see it; fcd reconcile
    re-enqueues it (audited) and the next worker disconnects the account."""
    [account] = await admin.create_accounts(1)
    request = await submitted(ledger, account)
    await redis.delete(ARQ_JOB_KEY_PREFIX + str(request.job_id))
    await redis.zrem(ledger.queue_name, str(request.job_id))
    dry = fcd(["reconcile", "--dry-run"], redis_url, namespace)
    assert dry.returncode == 0, dry.stderr
    assert "would repair 1" in dry.stdout and request.request_id in dry.stdout
    done = fcd(["reconcile", "--operator", "frank"], redis_url, namespace)
    assert done.returncode == 0, done.stderr
    assert "repaired 1" in done.stdout
    record = (await ledger.history(request.request_id))[-1]
    assert (record["event"], record["operator"]) == (REENQUEUED, "frank")
    group.start("worker", ["-m", "worker", "--burst"], env_for(ledger, redis_url, admin.base))
    await wait_for_exit(group, "worker")
    assert (await ledger.get(request.request_id)).status == RequestStatus.DISCONNECTED
    assert (await admin.account(account))["status"] == "disconnected"


async def test_reconcile_fails_killed_sweep_runs_and_frees_their_policy(
    redis_url: str, namespace: str, ledger: Ledger
) -> None:
    """Issue 16.5: a run whose worker was SIGKILLed mid-listing (no heartbeat for longer than
    its time to live, its policy lock still held) and a ``requested`` run whose job expired
    before a bulk worker took it: ``fcd reconcile`` fails both with the reason, releases the
    policy lock, and the policy can run again."""
    runs = SweepRuns(ledger.redis, ledger.prefix, ledger.audit)
    long_ago = time.time() - 600
    killed = await runs.create(
        SweepRun(run_id=new_sweep_id(), policy="stale", trigger="schedule", apply=True,
                 status=SweepStatus.LISTING, started_at=long_ago)
    )  # fmt: skip
    token = await runs.lock("stale", 86_400)
    assert token is not None
    await runs.update(killed.run_id, lock_token=token, scanned=300)
    expired = await runs.create(
        SweepRun(run_id=new_sweep_id(), policy="legal", trigger="cli", apply=True,
                 status=SweepStatus.REQUESTED, started_at=long_ago)
    )  # fmt: skip
    done = fcd(["reconcile"], redis_url, namespace)
    assert done.returncode == 0, done.stderr
    assert killed.run_id in done.stdout and expired.run_id in done.stdout
    for run_id, why in ((killed.run_id, "no heartbeat"), (expired.run_id, "job expired")):
        run = await runs.get(run_id)
        assert run.status == SweepStatus.FAILED and why in run.message, run
        assert (await runs.history(run_id))[-1]["event"] == "sweep.failed"
    assert await runs.lock("stale", 60) is not None  # the policy is free to run again
