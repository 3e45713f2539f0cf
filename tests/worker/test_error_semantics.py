"""Stripe's error semantics as real Stripe has them, not as a lenient emulator would (issue 10).

- A 500 comes with ``Stripe-Should-Retry: false`` and is stored under its key: the worker checks
  the account and retries with a fresh key instead of failing (point 1; the single-500 case is
  ``test_disconnect.py::test_500_checks_account_then_retries_with_fresh_key``).
- A 403 for a call made with ``Stripe-Account`` concerns that connected account only: the request
  fails and is counted, the fleet is not paused (point 2).
- Stripe replays whatever an executing request produced under its key: a replayed error, and any
  5xx or 424, rotates the key after a retrieve, so the next attempt can succeed (point 3).

Each test runs against both answers to a second disconnect (the ``emulator`` fixture).
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from control.metrics import counter_key
from control.pause import get_pause
from ledger.models import RequestSource, RequestStatus
from ledger.store import Ledger
from stripe_emulator import RunningEmulator
from tests.emulator_admin import EmulatorAdmin
from tests.worker.conftest import INACTIVE_DISCONNECT_MODES, MakeDeps
from tests.worker.test_disconnect import disconnect_calls, run_current_job, submit

pytestmark = pytest.mark.integration


async def keys_sent(admin: EmulatorAdmin, account: str) -> list[str | None]:
    return [c["idempotency_key"] for c in disconnect_calls(await admin.requests(), account)]


async def test_repeated_500s_end_only_when_the_budget_is_spent(
    make_deps: MakeDeps, ledger: Ledger, admin: EmulatorAdmin
) -> None:
    """Point 1: 500s (Should-Retry: false, as Stripe sends them) keep retrying, each with a new
    key, until the attempt budget is spent; only then is the request failed, saying why."""
    [account] = await admin.create_accounts(1)
    await admin.script(account, {"status": 500}, {"status": 500}, {"status": 500})
    deps = make_deps(max_attempts=3)
    request = await submit(ledger, account)
    for _ in range(2):
        moved = await run_current_job(deps, request.request_id)
        assert moved.status == RequestStatus.RETRY_SCHEDULED
        await asyncio.sleep(0.06)
    done = await run_current_job(deps, request.request_id)
    assert done.status == RequestStatus.FAILED
    assert "attempt budget spent" in (await ledger.history(request.request_id))[-1]["message"]
    assert len(set(await keys_sent(admin, account))) == 3


async def test_403_for_a_connected_account_fails_that_request_only(
    make_deps: MakeDeps, ledger: Ledger, admin: EmulatorAdmin
) -> None:
    """Point 2: a 403 answered to a call sent with Stripe-Account ends that request failed with
    the reason and counts it (``403_account``); the service is not paused and a platform request
    right after it is disconnected."""
    connected, other = await admin.create_accounts(2)
    forbidden = {"status": 403, "code": "account_invalid", "message": "no access to acct_x1"}
    await admin.script(connected, forbidden)
    deps = make_deps(precheck_account=False)
    submission = await ledger.submit(
        connected, source=RequestSource.DELETION_EVENT, reference="e", stripe_account="acct_x1"
    )
    failed = await run_current_job(deps, submission.request_id)
    assert failed.status == RequestStatus.FAILED
    assert failed.attempts == 1
    last = (await ledger.history(submission.request_id))[-1]
    assert last["http_status"] == 403 and "acct_x1" in last["message"]
    assert await get_pause(ledger.redis, key=ledger.pause_key) is None
    counts = await ledger.redis.hgetall(counter_key(ledger.prefix, "stripe"))  # type: ignore[misc]
    assert counts[b"disconnect|403_account"] == b"1"
    request = await submit(ledger, other)
    assert (await run_current_job(deps, request.request_id)).status == RequestStatus.DISCONNECTED


async def test_403_without_stripe_account_still_pauses_everything(
    make_deps: MakeDeps, ledger: Ledger, admin: EmulatorAdmin
) -> None:
    """Point 2: the platform's own 403 (the key lacks permission) trips the breaker as before:
    the request stays queued, attempt not spent, and the pause names the 403."""
    [account] = await admin.create_accounts(1)
    await admin.script(account, {"status": 403})
    request = await submit(ledger, account)
    after = await run_current_job(make_deps(precheck_account=False), request.request_id)
    assert after.status == RequestStatus.QUEUED and after.attempts == 0
    pause = await get_pause(ledger.redis, key=ledger.pause_key)
    assert pause is not None and "403" in pause.reason


@pytest.mark.parametrize(
    "stored",
    [
        {"status": 400, "should_retry": True, "store": True},
        {"status": 424, "store": True},
        {"status": 503, "store": True},
        {"status": 503, "store": False},
    ],
    ids=["400-retry", "424", "503-stored", "503-not-stored"],
)
async def test_a_stored_error_is_not_replayed_into_failure(
    make_deps: MakeDeps, ledger: Ledger, admin: EmulatorAdmin, stored: dict[str, Any]
) -> None:
    """Point 3: an error Stripe stored under the key (or, undocumented, a 503 it may or may not
    store) is replayed with Idempotent-Replayed to a same-key retry; the worker checks the
    account and moves to a fresh key, so the request is disconnected within three attempts."""
    [account] = await admin.create_accounts(1)
    await admin.script(account, stored)
    deps = make_deps(max_attempts=3)
    request = await submit(ledger, account)
    done = await run_current_job(deps, request.request_id)
    for _ in range(2):
        if done.status != RequestStatus.RETRY_SCHEDULED:
            break
        await asyncio.sleep(0.06)
        done = await run_current_job(deps, request.request_id)
    assert done.status == RequestStatus.DISCONNECTED
    calls = disconnect_calls(await admin.requests(), account)
    assert calls[-1]["status"] == 200 and not calls[-1]["replayed"]
    assert calls[-1]["idempotency_key"] != f"fcd-{request.request_id}-0"


@pytest.mark.parametrize("emulator", INACTIVE_DISCONNECT_MODES, indirect=True)
async def test_an_inactive_account_in_either_undocumented_answer(
    make_deps: MakeDeps, ledger: Ledger, admin: EmulatorAdmin, emulator: RunningEmulator
) -> None:
    """Undocumented: does Stripe disconnect an ``inactive`` account? If it does, the request is
    ``disconnected``; if it answers 400, the worker checks the account (still inactive) and the
    request fails at once with Stripe's reason, without retrying."""
    [account] = await admin.create_accounts(1, status="inactive")
    request = await submit(ledger, account)
    done = await run_current_job(make_deps(), request.request_id)
    if emulator.state.config.inactive_disconnect_mode == "200":
        assert done.status == RequestStatus.DISCONNECTED
        return
    assert done.status == RequestStatus.FAILED and done.attempts == 1
    last = (await ledger.history(request.request_id))[-1]
    assert last["http_status"] == 400
    assert last["stripe_error_code"] == "financial_connections_account_inactive"
    assert (await admin.account(account))["status"] == "inactive"
