"""An attempt cut off while its POST is in flight (arq's job timeout, a shutdown): what the next
attempt may do and what it records. Each test runs against both of the emulator's answers to a
second disconnect."""

from __future__ import annotations

import asyncio
import time
from dataclasses import replace

import pytest

from ledger.models import DisconnectRequest, RequestSource, RequestStatus
from ledger.store import Ledger
from tests.emulator_admin import EmulatorAdmin
from tests.worker.conftest import MakeDeps
from worker.disconnect import DisconnectDeps, run_disconnect

pytestmark = pytest.mark.integration

HANG = 1.5


async def posts(admin: EmulatorAdmin, account: str) -> list[dict[str, object]]:
    """The disconnect POSTs for ``account`` the emulator has answered."""
    return [
        r for r in await admin.requests() if r["method"] == "POST" and r["account_id"] == account
    ]


async def cut_off_mid_post(
    deps: DisconnectDeps, ledger: Ledger, admin: EmulatorAdmin, account: str
) -> DisconnectRequest:
    """Submit, start the attempt, cancel it once its POST reached the emulator (which hangs)."""
    await admin.script(account, {"hang_seconds": HANG})
    submission = await ledger.submit(account, source=RequestSource.DELETION_EVENT, reference="e")
    request = await ledger.get(submission.request_id)
    task = asyncio.create_task(run_disconnect(deps, request.request_id, request.job_id or ""))
    deadline = time.monotonic() + 10
    while not (await ledger.get(request.request_id)).last_posted_at:
        assert time.monotonic() < deadline, "the POST never left"
        await asyncio.sleep(0.01)
    await asyncio.sleep(0.2)  # the POST is at the emulator, hanging
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    return await ledger.get(request.request_id)


async def test_no_second_post_while_a_cut_off_one_may_still_run(
    make_deps: MakeDeps, ledger: Ledger, admin: EmulatorAdmin
) -> None:
    """Found by the chaos harness: after a job timeout cut an attempt off mid-POST, the hand-back
    released the account lock and the next attempt posted at once, overlapping the first call
    at Stripe (answered 409, key in use). The lock is now kept until the client's timeout would
    have given the call up, so the next attempt waits instead of posting."""
    deps = replace(make_deps(), call_timeout_seconds=5.0)
    [account] = await admin.create_accounts(1)
    handed_back = await cut_off_mid_post(deps, ledger, admin, account)
    assert handed_back.status == RequestStatus.QUEUED
    lock_key = f"{ledger.prefix}lock:account:{account}"
    assert 0 < await ledger.redis.pttl(lock_key) <= 5000
    await run_disconnect(deps, handed_back.request_id, handed_back.job_id or "")
    waiting = await ledger.get(handed_back.request_id)
    assert waiting.status == RequestStatus.RETRY_SCHEDULED
    assert "another call holds this account's lock" in (waiting.last_error or "")
    await asyncio.sleep(HANG)  # the emulator logs a call when it answers it
    assert len(await posts(admin, account)) == 1


async def test_next_attempt_after_a_cut_off_post_records_our_disconnect(
    make_deps: MakeDeps, ledger: Ledger, admin: EmulatorAdmin
) -> None:
    """Issue 12's third known item, kept as a regression test (it already held on main after
    issues 11 and 13): the hand-back of an attempt cut off after its POST left keeps
    ``last_posted_at`` (the intent is written before the POST) and the same Idempotency-Key, so
    the next attempt gets Stripe's replay of the first call and records ``disconnected`` by us,
    never ``already_disconnected``."""
    deps = replace(make_deps(), call_timeout_seconds=HANG + 0.5)
    [account] = await admin.create_accounts(1)
    handed_back = await cut_off_mid_post(deps, ledger, admin, account)
    assert handed_back.last_posted_at is not None
    assert handed_back.idempotency_generation == 0
    await asyncio.sleep(HANG + 0.6)  # the first call finished at Stripe; our lock has expired
    await run_disconnect(deps, handed_back.request_id, handed_back.job_id or "")
    done = await ledger.get(handed_back.request_id)
    assert done.status == RequestStatus.DISCONNECTED
    last = (await ledger.history(done.request_id))[-1]
    assert last["to"] == "disconnected"
    assert "earlier call of ours" in str(last["message"])
