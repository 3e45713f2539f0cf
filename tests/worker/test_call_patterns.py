"""One Stripe call per disconnect (issue 13): each source's call pattern, read from the emulator's
own request log, and the evidence each outcome's audit record states.

Every test runs against both answers Stripe might give to a second disconnect (200 or 400, the
``emulator`` fixture); tests about another undocumented answer parametrize it too.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from dataclasses import replace
from typing import Any

import pytest

from events.apply import CONFIRMED, CONTRADICTED, apply_event
from ledger.bulk import BulkItem, submit_many
from ledger.models import DisconnectRequest, RequestStatus
from ledger.store import Ledger
from stripe_emulator import RunningEmulator
from tests.emulator_admin import EmulatorAdmin
from tests.worker.conftest import INACTIVE_DISCONNECT_MODES, MakeDeps
from tests.worker.test_disconnect import run_current_job, submit
from worker.batch import BatchDeps, run_batch

pytestmark = pytest.mark.integration


def calls_of(log: list[dict[str, Any]], account_id: str) -> Counter[str]:
    """How many calls of each endpoint the emulator logged for ``account_id``."""
    endpoints: Counter[str] = Counter()
    for entry in log:
        if entry["account_id"] != account_id:
            continue
        post = entry["method"] == "POST" and entry["path"].endswith("/disconnect")
        endpoints["disconnect" if post else "retrieve"] += 1
    return endpoints


async def outcome(ledger: Ledger, request_id: str) -> dict[str, Any]:
    """The request's last status change record (its outcome)."""
    changes = [h for h in await ledger.history(request_id) if h["to"] != h["from"]]
    return changes[-1]


def second_disconnect_mode(emulator: RunningEmulator) -> str:
    return emulator.state.config.already_disconnected_mode


async def test_a_single_request_costs_one_post(
    make_deps: MakeDeps, ledger: Ledger, admin: EmulatorAdmin
) -> None:
    """A user's deletion for an active account: one POST, no retrieve; ``disconnected`` with
    ``evidence`` = ``answer``."""
    [account] = await admin.create_accounts(1)
    request = await submit(ledger, account)
    done = await run_current_job(make_deps(), request.request_id)
    assert done.status == RequestStatus.DISCONNECTED
    assert calls_of(await admin.requests(), account) == {"disconnect": 1}
    assert (await outcome(ledger, request.request_id))["evidence"] == "answer"


async def test_a_single_request_for_a_disconnected_account(
    make_deps: MakeDeps, ledger: Ledger, admin: EmulatorAdmin, emulator: RunningEmulator
) -> None:
    """Post first, one call either way. A 400 says ``already disconnected`` by itself
    (``evidence`` = ``answer``, no retrieve); a 200 cannot be told from our own disconnect, so
    the request is ``disconnected`` (``answer``) and, as no transition happened, Stripe makes no
    event that could ever confirm it."""
    [account] = await admin.create_accounts(1, status="disconnected")
    request = await submit(ledger, account)
    done = await run_current_job(make_deps(), request.request_id)
    assert calls_of(await admin.requests(), account) == {"disconnect": 1}
    last = await outcome(ledger, request.request_id)
    assert last["evidence"] == "answer"
    if second_disconnect_mode(emulator) == "400":
        assert done.status == RequestStatus.ALREADY_DISCONNECTED
        assert last["stripe_error_code"] == "account_already_disconnected"
        return
    assert done.status == RequestStatus.DISCONNECTED
    events = (await admin._json("GET", "/_emulator/webhooks"))["events"]
    assert [e for e in events if e["data"]["object"]["id"] == account] == []


async def test_sweep_requests_cost_one_post_or_none(
    make_deps: MakeDeps, ledger: Ledger, admin: EmulatorAdmin, emulator: RunningEmulator
) -> None:
    """A sweep's batch: an account listed ``active`` is posted without a retrieve; one listed
    ``disconnected`` ends ``already_disconnected`` with no call at all (``evidence`` =
    ``listing``); one listed ``active`` that its user disconnected since is posted once and
    decided by Stripe's answer. Each request carries the status and time it was listed with."""
    fresh, gone = await admin.create_accounts(2)
    stale = (await admin.create_accounts(1, status="disconnected"))[0]
    listed_at = int(time.time()) - 120
    items = [
        BulkItem(fresh, "stale links", listed_status="active", listed_at=listed_at),
        BulkItem(gone, "stale links", listed_status="disconnected", listed_at=listed_at),
        BulkItem(stale, "stale links", listed_status="active", listed_at=listed_at),
    ]
    await submit_many(ledger, items)
    requests = {a: await ledger.resolve(a) for a in (fresh, gone, stale)}
    assert (requests[fresh].listed_status, requests[fresh].listed_at) == ("active", listed_at)
    (job_id,) = {r.job_id for r in requests.values()}
    batch = BatchDeps(replace(make_deps(), priority="bulk"), asyncio.Semaphore(3), 30.0)
    await run_batch(batch, [r.request_id for r in requests.values()], str(job_id))
    log = await admin.requests()
    assert calls_of(log, fresh) == {"disconnect": 1}
    assert calls_of(log, gone) == {}
    assert calls_of(log, stale) == {"disconnect": 1}
    done = {a: await ledger.get(r.request_id) for a, r in requests.items()}
    assert done[fresh].status == RequestStatus.DISCONNECTED
    assert done[gone].status == RequestStatus.ALREADY_DISCONNECTED
    expected_stale = (
        RequestStatus.ALREADY_DISCONNECTED
        if second_disconnect_mode(emulator) == "400"
        else RequestStatus.DISCONNECTED
    )
    assert done[stale].status == expected_stale
    evidence = {a: (await outcome(ledger, r.request_id))["evidence"] for a, r in done.items()}
    assert evidence == {fresh: "answer", gone: "listing", stale: "answer"}
    assert "listed as disconnected" in (await outcome(ledger, done[gone].request_id))["message"]


async def test_what_the_ledger_knows_settles_a_request_without_a_call(
    make_deps: MakeDeps, ledger: Ledger, admin: EmulatorAdmin
) -> None:
    """No call for an account the ledger already knows is disconnected: one an earlier request
    of ours disconnected (``evidence`` = ``ledger``), and one whose user disconnected it, as
    Stripe's applied event told (``evidence`` = ``event``)."""
    ours, users = await admin.create_accounts(2)
    first = await submit(ledger, ours)
    assert (await run_current_job(make_deps(), first.request_id)).status.is_terminal
    await admin.post(f"/_emulator/accounts/{users}/user-disconnect", {})
    [user_event] = [
        e
        for e in (await admin._json("GET", "/_emulator/webhooks"))["events"]
        if e["data"]["object"]["id"] == users
    ]
    assert await apply_event(ledger, user_event) == "external"
    before = len(await admin.requests())
    again, later = await submit(ledger, ours), await submit(ledger, users)
    for request in (again, later):
        done = await run_current_job(make_deps(), request.request_id)
        assert done.status == RequestStatus.ALREADY_DISCONNECTED
    assert len(await admin.requests()) == before
    assert (await outcome(ledger, again.request_id))["evidence"] == "ledger"
    assert (await outcome(ledger, later.request_id))["evidence"] == "event"
    assert first.request_id in (await outcome(ledger, again.request_id))["message"]


def disconnected_event(account_id: str, created: float, key: str | None = None) -> dict[str, Any]:
    """Stripe's event for a disconnect of ``account_id`` made at ``created`` (unix seconds)."""
    return {
        "id": f"evt_{account_id[-12:]}{int(created)}",
        "object": "event",
        "type": "financial_connections.account.disconnected",
        "created": int(created),
        "data": {"object": {"id": account_id, "status": "disconnected"}},
        "request": {"id": None, "idempotency_key": key},
    }


async def test_an_event_applied_while_the_call_runs_decides_after_a_200(
    make_deps: MakeDeps, ledger: Ledger, admin: EmulatorAdmin, emulator: RunningEmulator
) -> None:
    """The user disconnected a minute before our first attempt; that event reaches the ledger
    while our POST is in flight. Either answer ends ``already_disconnected`` with one call: a
    400 by itself, a 200 because the ledger learnt meanwhile (``evidence`` = ``event``)."""
    [account] = await admin.create_accounts(1, status="disconnected")
    await admin.script(account, {"hang_seconds": 1.0, "execute": False})  # client gives up at 1.5
    request = await submit(ledger, account)
    attempt = asyncio.create_task(run_current_job(make_deps(), request.request_id))
    async with asyncio.timeout(10):
        # The ledger is in Redis, written by the attempt's task: no event to wait on.
        while (await ledger.get(request.request_id)).last_posted_at is None:  # noqa: ASYNC110
            await asyncio.sleep(0.02)
    held = await ledger.get(request.request_id)
    assert held.first_attempt_at is not None
    early = disconnected_event(account, held.first_attempt_at - 60)
    assert await apply_event(ledger, early) == "external"  # not ours: it predates our call
    done = await attempt
    assert done.status == RequestStatus.ALREADY_DISCONNECTED
    assert calls_of(await admin.requests(), account) == {"disconnect": 1}
    expected = "answer" if second_disconnect_mode(emulator) == "400" else "event"
    assert (await outcome(ledger, request.request_id))["evidence"] == expected


async def test_events_confirm_or_contradict_a_recorded_disconnect(
    make_deps: MakeDeps, ledger: Ledger, admin: EmulatorAdmin
) -> None:
    """After a 200, Stripe's event says who made the transition: one naming our key, or naming
    no request but made after our first call, confirms it; one made before our first call
    contradicts it (the account was already disconnected). Both notes state ``event``."""
    accounts = await admin.create_accounts(3)
    done: list[DisconnectRequest] = []
    for account in accounts:
        request = await submit(ledger, account)
        done.append(await run_current_job(make_deps(), request.request_id))
    assert {r.status for r in done} == {RequestStatus.DISCONNECTED}
    first_call = [r.first_attempt_at or 0.0 for r in done]
    keyed = disconnected_event(accounts[0], first_call[0], key=done[0].idempotency_key)
    unnamed_after = disconnected_event(accounts[1], first_call[1] + 1)
    unnamed_before = disconnected_event(accounts[2], first_call[2] - 3600)
    assert await apply_event(ledger, keyed) == "confirmed"
    assert await apply_event(ledger, unnamed_after) == "confirmed"
    assert await apply_event(ledger, unnamed_before) == "contradicted"
    notes = [(await ledger.history(r.request_id))[-1] for r in done]
    assert [n["event"] for n in notes] == [CONFIRMED, CONFIRMED, CONTRADICTED]
    assert {n["evidence"] for n in notes} == {"event"}
    assert "already disconnected" in notes[2]["message"]
    assert (await ledger.get(done[2].request_id)).status == RequestStatus.DISCONNECTED


async def test_a_5xx_buys_one_retrieve_before_the_fresh_key(
    make_deps: MakeDeps, ledger: Ledger, admin: EmulatorAdmin
) -> None:
    """A 503 (the POST may or may not have run): the account is retrieved before the next POST,
    which uses a fresh key. POST, retrieve, POST: the only second call a healthy run never
    makes."""
    [account] = await admin.create_accounts(1)
    await admin.script(account, {"status": 503})
    request = await submit(ledger, account)
    deps = make_deps()
    first = await run_current_job(deps, request.request_id)
    assert first.status == RequestStatus.RETRY_SCHEDULED
    await asyncio.sleep(0.06)
    done = await run_current_job(deps, request.request_id)
    assert done.status == RequestStatus.DISCONNECTED
    log = [e for e in await admin.requests() if e["account_id"] == account]
    assert [e["method"] for e in log] == ["POST", "GET", "POST"]
    assert log[0]["idempotency_key"] != log[2]["idempotency_key"]


async def test_a_key_older_than_the_idempotency_window_is_checked_first(
    make_deps: MakeDeps, ledger: Ledger, admin: EmulatorAdmin
) -> None:
    """Past the idempotency window Stripe may have forgotten the key: retrieve, then POST with
    the next key (the first attempt here, with a window of zero seconds)."""
    [account] = await admin.create_accounts(1)
    request = await submit(ledger, account)
    deps = replace(make_deps(), idempotency_refresh_seconds=0.0)
    done = await run_current_job(deps, request.request_id)
    assert done.status == RequestStatus.DISCONNECTED
    log = [e for e in await admin.requests() if e["account_id"] == account]
    assert [e["method"] for e in log] == ["GET", "POST"]
    assert log[1]["idempotency_key"] == f"fcd-{request.request_id}-1"


async def test_an_unrecognised_400_is_checked_with_a_retrieve(
    make_deps: MakeDeps, ledger: Ledger, admin: EmulatorAdmin
) -> None:
    """A 400 whose code says nothing about the account: one retrieve tells already-disconnected
    from refused; the account is active, so the request fails with Stripe's reason
    (``evidence`` = ``retrieve``)."""
    [account] = await admin.create_accounts(1)
    await admin.script(account, {"status": 400, "code": "parameter_unknown", "message": "no"})
    request = await submit(ledger, account)
    done = await run_current_job(make_deps(), request.request_id)
    assert done.status == RequestStatus.FAILED
    assert calls_of(await admin.requests(), account) == {"disconnect": 1, "retrieve": 1}
    assert (await outcome(ledger, request.request_id))["evidence"] == "retrieve"


@pytest.mark.parametrize("emulator", INACTIVE_DISCONNECT_MODES, indirect=True)
async def test_an_inactive_account_costs_one_post_in_either_answer(
    make_deps: MakeDeps, ledger: Ledger, admin: EmulatorAdmin, emulator: RunningEmulator
) -> None:
    """Undocumented: does Stripe disconnect an ``inactive`` account? Either way one POST: a 200
    disconnects it, a 400 ``financial_connections_account_inactive`` fails the request by
    itself, no retrieve (``evidence`` = ``answer`` both times)."""
    [account] = await admin.create_accounts(1, status="inactive")
    request = await submit(ledger, account)
    done = await run_current_job(make_deps(), request.request_id)
    assert calls_of(await admin.requests(), account) == {"disconnect": 1}
    assert (await outcome(ledger, request.request_id))["evidence"] == "answer"
    inactive_400 = emulator.state.config.inactive_disconnect_mode == "400"
    expected = RequestStatus.FAILED if inactive_400 else RequestStatus.DISCONNECTED
    assert done.status == expected


async def test_the_forced_precheck_costs_two_calls(
    make_deps: MakeDeps, ledger: Ledger, admin: EmulatorAdmin
) -> None:
    """``FCD_PRECHECK_ACCOUNT=true`` (the old default, the benchmark's baseline): a retrieve
    before every POST, two calls per disconnect."""
    [account] = await admin.create_accounts(1)
    request = await submit(ledger, account)
    done = await run_current_job(make_deps(precheck_account=True), request.request_id)
    assert done.status == RequestStatus.DISCONNECTED
    assert calls_of(await admin.requests(), account) == {"retrieve": 1, "disconnect": 1}
