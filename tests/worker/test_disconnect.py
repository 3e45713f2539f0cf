"""Every outcome of a disconnect job, against real Redis and the emulator over loopback.

Each test runs twice: once with the emulator answering a second disconnect with 200, once with 400
(Stripe does not document which it does).
"""

from __future__ import annotations

import asyncio
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from control.pause import get_pause, resume
from ledger.models import DisconnectRequest, RequestSource, RequestStatus
from ledger.store import Ledger
from tests.emulator_admin import EmulatorAdmin
from tests.worker.conftest import MakeDeps
from worker.disconnect import DisconnectDeps, run_disconnect

pytestmark = pytest.mark.integration


async def submit(ledger: Ledger, account_id: str) -> DisconnectRequest:
    submission = await ledger.submit(account_id, source=RequestSource.DELETION_EVENT, reference="e")
    return await ledger.get(submission.request_id)


async def run_current_job(deps: DisconnectDeps, request_id: str) -> DisconnectRequest:
    """Run the request's current job, as arq would, and return the request afterwards."""
    request = await deps.ledger.get(request_id)
    assert request.job_id is not None
    await run_disconnect(deps, request_id, request.job_id)
    return await deps.ledger.get(request_id)


async def statuses(ledger: Ledger, request_id: str) -> list[str | None]:
    return [h["to"] for h in await ledger.history(request_id) if h["to"] is not None]


def disconnect_calls(log: list[dict[str, Any]], account_id: str) -> list[dict[str, Any]]:
    return [r for r in log if r["method"] == "POST" and r["account_id"] == account_id]


async def test_active_account_is_disconnected(
    make_deps: MakeDeps, ledger: Ledger, admin: EmulatorAdmin
) -> None:
    """200 -> disconnected; Stripe's account is disconnected; Request-Id and key recorded."""
    [account] = await admin.create_accounts(1)
    request = await submit(ledger, account)
    done = await run_current_job(make_deps(), request.request_id)
    assert done.status == RequestStatus.DISCONNECTED
    assert (await admin.account(account))["status"] == "disconnected"
    history = await ledger.history(request.request_id)
    assert [h["to"] for h in history] == ["queued", "in_progress", "disconnected"]
    assert history[-1]["http_status"] == 200
    assert history[-1]["stripe_request_id"].startswith("req_")
    [call] = disconnect_calls(await admin.requests(), account)
    assert call["idempotency_key"] == f"fcd-{request.request_id}-0"


@pytest.mark.parametrize("precheck", [True, False], ids=["precheck", "no-precheck"])
async def test_unknown_account_is_not_found_without_retry(
    make_deps: MakeDeps, ledger: Ledger, precheck: bool
) -> None:
    """404 resource_missing (from retrieve or from the POST) -> not_found after one attempt."""
    request = await submit(ledger, "fca_doesNotExist")
    done = await run_current_job(make_deps(precheck_account=precheck), request.request_id)
    assert done.status == RequestStatus.NOT_FOUND
    assert done.attempts == 1
    history = await ledger.history(request.request_id)
    assert (history[-1]["http_status"], history[-1]["stripe_error_code"]) == (
        404,
        "resource_missing",
    )


async def test_already_disconnected_account(
    make_deps: MakeDeps, ledger: Ledger, admin: EmulatorAdmin
) -> None:
    """With the precheck forced (``FCD_PRECHECK_ACCOUNT``, the old default), an account
    disconnected before we came ends already_disconnected without a POST, in both emulator
    modes, and its record says a retrieve decided."""
    [account] = await admin.create_accounts(1, status="disconnected")
    request = await submit(ledger, account)
    done = await run_current_job(make_deps(precheck_account=True), request.request_id)
    assert done.status == RequestStatus.ALREADY_DISCONNECTED
    assert disconnect_calls(await admin.requests(), account) == []
    assert (await ledger.history(request.request_id))[-1]["evidence"] == "retrieve"


async def test_already_disconnected_without_precheck_400_mode(
    make_deps: MakeDeps, ledger: Ledger, admin: EmulatorAdmin, emulator: Any
) -> None:
    """Without the precheck, a 400 on the POST leads to a retrieve that proves it was disconnected;
    a 200 is indistinguishable from our own success and is recorded as disconnected."""
    [account] = await admin.create_accounts(1, status="disconnected")
    request = await submit(ledger, account)
    done = await run_current_job(make_deps(precheck_account=False), request.request_id)
    mode = emulator.state.config.already_disconnected_mode
    expected = RequestStatus.ALREADY_DISCONNECTED if mode == "400" else RequestStatus.DISCONNECTED
    assert done.status == expected


async def test_bad_api_key_trips_breaker_and_keeps_request_queued(
    make_deps: MakeDeps, ledger: Ledger, admin: EmulatorAdmin, audit_path: Path
) -> None:
    """401 pauses all work (one loud service.paused event), leaves the request queued with the
    attempt unspent, and no secret appears anywhere; while paused, jobs do nothing."""
    [account] = await admin.create_accounts(1)
    request = await submit(ledger, account)
    deps = make_deps(api_key="sk_test_wrongKey123")
    after = await run_current_job(deps, request.request_id)
    assert after.status == RequestStatus.QUEUED
    assert after.attempts == 0
    pause = await get_pause(ledger.redis, key=ledger.pause_key)
    assert pause is not None and pause.source == "breaker" and "401" in pause.reason
    last = (await ledger.history(request.request_id))[-1]
    assert last["http_status"] == 401 and "circuit breaker" in last["message"]
    assert await run_current_job(deps, request.request_id) == after  # paused: nothing happens
    audit_text = audit_path.read_text()
    assert audit_text.count('"service.paused"') == 1
    assert "sk_test_wrongKey123" not in audit_text + pause.reason + str(after)
    await resume(ledger.redis, "oncall", "key rotated", key=ledger.pause_key)
    done = await run_current_job(make_deps(), request.request_id)
    assert done.status == RequestStatus.DISCONNECTED


@pytest.mark.parametrize(
    "forced",
    [
        {"status": 503},
        {"status": 502},
        {"status": 409},
        {"status": 429, "code": "lock_timeout", "should_retry": True},
        {"status": 400, "should_retry": True, "store": False},
        {"reset": True},
        {"hang_seconds": 2.0},
    ],
    ids=["503", "502", "409", "429-lock", "400-should-retry", "reset", "timeout"],
)
async def test_transient_failure_is_retried_then_succeeds(
    make_deps: MakeDeps, ledger: Ledger, admin: EmulatorAdmin, forced: dict[str, Any]
) -> None:
    """A transient failure -> retry_scheduled with a deferred job; the next job disconnects."""
    [account] = await admin.create_accounts(1)
    await admin.script(account, forced)
    deps = make_deps()
    request = await submit(ledger, account)
    first = await run_current_job(deps, request.request_id)
    assert first.status == RequestStatus.RETRY_SCHEDULED
    assert first.job_id == f"{request.request_id}.2"
    assert first.last_error
    # A timed-out call may still run at Stripe; retrying its key meanwhile gets a 409.
    await asyncio.sleep(max(0.06, forced.get("hang_seconds", 0.0) - 1.3))
    second = await run_current_job(deps, request.request_id)
    assert second.status == RequestStatus.DISCONNECTED
    assert second.attempts == 2
    assert await statuses(ledger, request.request_id) == [
        "queued",
        "in_progress",
        "retry_scheduled",
        "in_progress",
        "disconnected",
    ]


@pytest.mark.parametrize(
    "forced",
    [{"status": 500}, {"status": 500, "should_retry": False}],
    ids=["500-as-stripe-sends-it", "500-should-retry-false"],
)
async def test_500_checks_account_then_retries_with_fresh_key(
    make_deps: MakeDeps, ledger: Ledger, admin: EmulatorAdmin, forced: dict[str, Any]
) -> None:
    """After a 500 (stored by Stripe under the key, and saying Stripe-Should-Retry: false as
    Stripe's 500s do) the request is not failed: the account is checked and the next attempt
    uses a new Idempotency-Key (issue 10, point 1)."""
    [account] = await admin.create_accounts(1)
    await admin.script(account, forced)
    deps = make_deps()
    request = await submit(ledger, account)
    first = await run_current_job(deps, request.request_id)
    assert first.status == RequestStatus.RETRY_SCHEDULED
    assert first.idempotency_generation == 1
    await asyncio.sleep(0.06)
    second = await run_current_job(deps, request.request_id)
    assert second.status == RequestStatus.DISCONNECTED
    keys = [c["idempotency_key"] for c in disconnect_calls(await admin.requests(), account)]
    assert keys == [f"fcd-{request.request_id}-0", f"fcd-{request.request_id}-1"]


async def test_500_after_the_work_was_done_counts_as_disconnected(
    make_deps: MakeDeps, ledger: Ledger, admin: EmulatorAdmin
) -> None:
    """A 500 whose call did disconnect the account: the retrieve shows it, no retry is needed."""
    [account] = await admin.create_accounts(1)
    await admin.script(account, {"status": 500, "execute": True})
    request = await submit(ledger, account)
    done = await run_current_job(make_deps(), request.request_id)
    assert done.status == RequestStatus.DISCONNECTED
    assert done.attempts == 1


async def test_rate_limited_429_does_not_spend_an_attempt(
    make_deps: MakeDeps, ledger: Ledger, admin: EmulatorAdmin
) -> None:
    """A limiter 429 (Stripe-Rate-Limited-Reason present) is retried and never counts."""
    [account] = await admin.create_accounts(1)
    await admin.script(
        account, {"status": 429, "code": "rate_limit", "rate_limited_reason": "endpoint-rate"}
    )
    request = await submit(ledger, account)
    done = await run_current_job(make_deps(max_attempts=1), request.request_id)
    assert done.status == RequestStatus.RETRY_SCHEDULED
    assert done.attempts == 0


async def test_attempt_budget_spent_means_failed_with_reason(
    make_deps: MakeDeps, ledger: Ledger, admin: EmulatorAdmin
) -> None:
    """With max_attempts=2, two 503s end the request failed, saying why."""
    [account] = await admin.create_accounts(1)
    await admin.script(account, {"status": 503}, {"status": 503})
    deps = make_deps(max_attempts=2)
    request = await submit(ledger, account)
    await run_current_job(deps, request.request_id)
    await asyncio.sleep(0.06)
    done = await run_current_job(deps, request.request_id)
    assert done.status == RequestStatus.FAILED
    last = (await ledger.history(request.request_id))[-1]
    assert "attempt budget spent" in last["message"]


async def test_stale_job_does_nothing(make_deps: MakeDeps, ledger: Ledger) -> None:
    """A job whose id is no longer the request's current job is skipped and changes nothing."""
    request = await submit(ledger, "fca_stale")
    assert await run_disconnect(make_deps(), request.request_id, "dr_other.9") == "skipped"
    assert await statuses(ledger, request.request_id) == ["queued"]


async def test_job_of_a_lost_worker_resumes(
    make_deps: MakeDeps, ledger: Ledger, admin: EmulatorAdmin
) -> None:
    """arq re-runs a job whose worker died in_progress: it resumes, audited, and finishes."""
    [account] = await admin.create_accounts(1)
    request = await submit(ledger, account)
    await ledger.transition(request, RequestStatus.IN_PROGRESS, attempts_delta=1)
    done = await run_current_job(make_deps(), request.request_id)
    assert done.status == RequestStatus.DISCONNECTED
    assert await statuses(ledger, request.request_id) == [
        "queued",
        "in_progress",
        "queued",
        "in_progress",
        "disconnected",
    ]


async def test_cancelled_job_requeues_without_spending_attempt(
    make_deps: MakeDeps, ledger: Ledger, admin: EmulatorAdmin
) -> None:
    """A job cancelled mid-call (worker shutdown) puts the request back, attempt not spent."""
    [account] = await admin.create_accounts(1)
    await admin.script(account, {"hang_seconds": 1.0})
    request = await submit(ledger, account)
    task = asyncio.create_task(
        run_disconnect(make_deps(), request.request_id, request.job_id or "")
    )
    await asyncio.sleep(0.3)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    after = await ledger.get(request.request_id)
    assert after.status == RequestStatus.QUEUED
    assert after.attempts == 0
    assert after.job_id == f"{request.request_id}.2"
    assert await ledger.redis.zscore(ledger.queue_name, after.job_id) is not None


async def test_never_posted_then_found_disconnected_is_already_disconnected(
    make_deps: MakeDeps, ledger: Ledger, admin: EmulatorAdmin
) -> None:
    """With the precheck forced, attempt 1 fails in the precheck (Stripe outage), no POST is
    sent; the user disconnects at the bank meanwhile: attempt 2 records already_disconnected,
    not a disconnect of ours."""
    [account] = await admin.create_accounts(1)
    deps = make_deps(precheck_account=True)
    request = await submit(ledger, account)
    await admin.configure(outage_for_seconds=30)
    first = await run_current_job(deps, request.request_id)
    assert first.status == RequestStatus.RETRY_SCHEDULED and first.last_posted_at is None
    await admin.configure(outage_for_seconds=0)
    await admin._json("POST", f"/_emulator/accounts/{account}/user-disconnect")
    await asyncio.sleep(0.06)
    second = await run_current_job(deps, request.request_id)
    assert second.status == RequestStatus.ALREADY_DISCONNECTED


@pytest.mark.parametrize("precheck", [True, False], ids=["precheck", "no-precheck"])
async def test_posted_then_found_disconnected_counts_as_ours(
    make_deps: MakeDeps, ledger: Ledger, admin: EmulatorAdmin, precheck: bool
) -> None:
    """A POST whose outcome is unknown (the connection reset after Stripe executed it) and a
    retry: recorded as disconnected by an earlier call of ours, whether the forced precheck
    finds the account disconnected or (no precheck) the same-key POST gets the first call's
    answer replayed."""
    [account] = await admin.create_accounts(1)
    await admin.script(account, {"reset": True, "execute": True})
    deps = make_deps(precheck_account=precheck)
    request = await submit(ledger, account)
    first = await run_current_job(deps, request.request_id)
    assert first.status == RequestStatus.RETRY_SCHEDULED and first.last_posted_at is not None
    await asyncio.sleep(0.06)
    second = await run_current_job(deps, request.request_id)
    assert second.status == RequestStatus.DISCONNECTED
    last = (await ledger.history(request.request_id))[-1]
    assert "call of ours" in last["message"]
    assert last["evidence"] == ("retrieve" if precheck else "answer")
    if not precheck:
        posts = disconnect_calls(await admin.requests(), account)
        assert [c["replayed"] for c in posts] == [False, True]


class _BrokenGate:
    """A gate whose Redis script fails (as on a Redis OOM): cannot be provoked safely on the
    shared test Redis, so this stands in for it."""

    def slot(self, endpoint: str, **_: Any) -> Any:
        raise RuntimeError("OOM command not allowed when used memory > 'maxmemory'")

    async def report_rate_limited(self, endpoint: str, reason: str | None = None) -> float:
        return 1.0


async def test_internal_error_mid_attempt_is_recorded_and_spends_budget(
    make_deps: MakeDeps, ledger: Ledger
) -> None:
    """An unexpected error inside the attempt never leaves the request in_progress: it is
    retry_scheduled with the reason, and the attempt budget still ends it as failed."""
    deps = replace(make_deps(max_attempts=2), gate=_BrokenGate())
    request = await submit(ledger, "fca_broken")
    first = await run_current_job(deps, request.request_id)
    assert first.status == RequestStatus.RETRY_SCHEDULED
    assert "internal error" in (first.last_error or "") and "OOM" in (first.last_error or "")
    await asyncio.sleep(0.06)
    second = await run_current_job(deps, request.request_id)
    assert second.status == RequestStatus.FAILED


async def test_attempts_lost_without_outcome_still_exhaust_the_budget(
    make_deps: MakeDeps, ledger: Ledger
) -> None:
    """Attempts whose workers died (reconciled back to queued) count: once they exceed the
    budget the next job fails the request, saying why, instead of trying forever."""
    request = await submit(ledger, "fca_lost")
    for _ in range(3):
        request = await ledger.transition(request, RequestStatus.IN_PROGRESS, attempts_delta=1)
        request = await ledger.transition(request, RequestStatus.QUEUED, enqueue_in=0.0)
    done = await run_current_job(make_deps(max_attempts=3), request.request_id)
    assert done.status == RequestStatus.FAILED
    last = (await ledger.history(request.request_id))[-1]
    assert "earlier attempts ended without a recorded outcome" in last["message"]


async def test_every_stripe_call_is_counted_by_endpoint_and_outcome(
    make_deps: MakeDeps, ledger: Ledger, admin: EmulatorAdmin
) -> None:
    """Each call made lands in P metrics:stripe as endpoint|outcome (read by /metrics)."""
    [account] = await admin.create_accounts(1)
    await admin.script(account, {"status": 503})
    deps = make_deps()
    request = await submit(ledger, account)
    await run_current_job(deps, request.request_id)
    await asyncio.sleep(0.06)
    await run_current_job(deps, request.request_id)
    raw = await ledger.redis.hgetall(f"{ledger.prefix}metrics:stripe")  # type: ignore[misc]
    counts = {k.decode(): int(v) for k, v in raw.items()}
    # the check after the 503 (the next call uses a fresh key), then the second attempt's POST
    assert counts == {"retrieve|ok": 1, "disconnect|503": 1, "disconnect|ok": 1}


async def test_a_5xx_after_stripe_executed_is_settled_by_the_check(
    make_deps: MakeDeps, ledger: Ledger, admin: EmulatorAdmin
) -> None:
    """A 503 whose call did disconnect the account: the retrieve right after it shows the
    account disconnected, so the request is done in that attempt, counted as ours."""
    [account] = await admin.create_accounts(1)
    await admin.script(account, {"status": 503, "execute": True})
    request = await submit(ledger, account)
    done = await run_current_job(make_deps(), request.request_id)
    assert done.status == RequestStatus.DISCONNECTED and done.attempts == 1
    assert "checked after HTTP 503" in (await ledger.history(request.request_id))[-1]["message"]
