"""Customer-level requests: the list job submits one child per account; the parent ends when
every child has. Real Redis, the emulator in process over loopback, no arq."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest

from control.metrics import CounterBuffer
from control.pause import get_pause, resume
from ledger.audit import AuditTrail
from ledger.customer_models import CustomerStatus
from ledger.customers import CustomerLedger
from ledger.event_ids import EventRegistry
from ledger.jobs import ARQ_JOB_KEY_PREFIX, deserialize
from ledger.store import Ledger
from producer.intake import IntakeService, parse_body
from stripe_emulator import DEFAULT_API_KEY, EmulatorConfig, RunningEmulator, run_emulator
from tests.emulator_admin import EmulatorAdmin
from tests.worker_deps import build_test_deps
from worker.customers import CustomerDeps, run_customer
from worker.disconnect import run_disconnect
from worker.stripe_client import client_timeout

pytestmark = pytest.mark.integration


@pytest.fixture
async def stripe_emulator() -> AsyncIterator[RunningEmulator]:
    async with run_emulator(EmulatorConfig(accounts=5, seed=11)) as running:
        yield running


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession(timeout=client_timeout(2.0, 5.0)) as http:
        yield http


@pytest.fixture
def customers(ledger: Ledger) -> CustomerLedger:
    return CustomerLedger(ledger, AuditTrail())


def make_deps(
    ledger: Ledger, customers: CustomerLedger, url: str, http: aiohttp.ClientSession, key: str
) -> CustomerDeps:
    base = build_test_deps(ledger, url, http, api_key=key, max_attempts=3)
    return CustomerDeps(customers, base)


@pytest.fixture
def deps(
    ledger: Ledger,
    customers: CustomerLedger,
    stripe_emulator: RunningEmulator,
    session: aiohttp.ClientSession,
) -> CustomerDeps:
    return make_deps(ledger, customers, stripe_emulator.url, session, DEFAULT_API_KEY)


async def add_customer(url: str, http: aiohttp.ClientSession, customer: str, count: int) -> None:
    body = {"count": count, "customer": customer}
    async with http.post(f"{url}/_emulator/accounts", json=body) as resp:
        resp.raise_for_status()


async def submit_customer(deps: CustomerDeps, customer: str, event: str = "evt_c") -> str:
    intake = IntakeService(
        deps.base.ledger,
        deps.customers,
        EventRegistry(deps.base.ledger.redis, deps.base.ledger.prefix),
        CounterBuffer(deps.base.ledger.redis, deps.base.ledger.prefix),
    )
    body = parse_body({"customer_id": customer, "event_id": event, "reason": "account closed"})
    result = await intake.submit("crm", body)
    request_id: str = result.body["request_ids"][0]
    return request_id


async def run_parent_job(deps: CustomerDeps, parent_id: str) -> str:
    parent = await deps.customers.get(parent_id)
    assert parent.job_id is not None
    return await run_customer(deps, parent_id, parent.job_id)


async def test_parent_and_its_job_are_written_together(deps: CustomerDeps) -> None:
    """Submitting a customer records the parent queued and its JSON arq job in the queue."""
    parent_id = await submit_customer(deps, "cus_solo")
    parent = await deps.customers.get(parent_id)
    assert parent.status == CustomerStatus.QUEUED and parent.reference == "crm:evt_c"
    redis = deps.base.ledger.redis
    job = deserialize(await redis.get(ARQ_JOB_KEY_PREFIX + str(parent.job_id)))
    assert job["f"] == "disconnect_customer" and job["a"] == [{"v": 1, "parent_id": parent_id}]
    assert await redis.zscore(deps.base.ledger.queue_name, str(parent.job_id)) is not None


async def test_every_account_gets_a_child_and_the_parent_is_done_when_they_are(
    deps: CustomerDeps, stripe_emulator: RunningEmulator, session: aiohttp.ClientSession
) -> None:
    """Three accounts: three children linked to the parent; done once all three are terminal."""
    await add_customer(stripe_emulator.url, session, "cus_three", 3)
    parent_id = await submit_customer(deps, "cus_three")
    assert await run_parent_job(deps, parent_id) == "listed"
    parent = await deps.customers.get(parent_id)
    summary = await deps.customers.summary(parent)
    assert summary["state"] == "in_progress"
    assert summary["children"] == {"total": 3, "by_status": {"queued": 3}}
    for child_id in summary["child_request_ids"]:
        child = await deps.base.ledger.get(child_id)
        assert child.parent_id == parent_id and child.reference == "crm:evt_c"
        await run_disconnect(deps.base, child_id, str(child.job_id))
    summary = await deps.customers.summary(parent)
    assert summary["state"] == "done"
    assert summary["children"]["by_status"] == {"disconnected": 3}


async def test_listing_pages_through_every_account(
    deps: CustomerDeps, stripe_emulator: RunningEmulator, session: aiohttp.ClientSession
) -> None:
    """230 accounts take three list pages (starting_after) and give 230 distinct children."""
    await add_customer(stripe_emulator.url, session, "cus_many", 230)
    parent_id = await submit_customer(deps, "cus_many")
    await run_parent_job(deps, parent_id)
    children = await deps.customers.children(parent_id)
    assert len(children) == len(set(children.values())) == 230
    requests = await EmulatorAdmin(stripe_emulator.url, session).requests()
    lists = [r for r in requests if r["method"] == "GET" and r["account_id"] is None]
    assert len(lists) == 3


async def test_transient_list_errors_retry_then_succeed(
    deps: CustomerDeps, stripe_emulator: RunningEmulator, session: aiohttp.ClientSession
) -> None:
    """A 503 on the list call schedules a retry with a new job; the retry lists everything."""
    await add_customer(stripe_emulator.url, session, "cus_flaky", 2)
    parent_id = await submit_customer(deps, "cus_flaky")
    admin = EmulatorAdmin(stripe_emulator.url, session)
    await admin.configure(faults={"error_rates": {"503": 1.0}})
    assert await run_parent_job(deps, parent_id) == "retry_scheduled"
    parent = await deps.customers.get(parent_id)
    assert parent.job_id == f"{parent_id}.2" and parent.last_error
    await admin.configure(faults={"error_rates": {}})
    assert await run_parent_job(deps, parent_id) == "listed"
    history = await deps.customers.history(parent_id)
    moves = [h["to"] for h in history if h["event"] == "customer.status_changed"]
    assert moves == ["queued", "listing", "retry_scheduled", "listing", "listed"]
    assert history[2]["http_status"] == 503


async def test_bad_key_while_listing_trips_the_breaker_and_keeps_the_parent(
    ledger: Ledger,
    customers: CustomerLedger,
    stripe_emulator: RunningEmulator,
    session: aiohttp.ClientSession,
) -> None:
    """A 401 while listing pauses all work (as for disconnects) and hands the parent back to
    queued with the attempt unspent; after resume with a good key the listing completes."""
    deps = make_deps(ledger, customers, stripe_emulator.url, session, "sk_test_wrong")
    parent_id = await submit_customer(deps, "cus_any")
    assert await run_parent_job(deps, parent_id) == "queued"
    parent = await customers.get(parent_id)
    assert parent.attempts == 0
    assert (await customers.history(parent_id))[-1]["http_status"] == 401
    pause = await get_pause(ledger.redis, key=ledger.pause_key)
    assert pause is not None and pause.source == "breaker"
    assert await run_parent_job(deps, parent_id) == "paused"
    await resume(ledger.redis, "oncall", "key fixed", key=ledger.pause_key)
    good = make_deps(ledger, customers, stripe_emulator.url, session, DEFAULT_API_KEY)
    assert await run_parent_job(good, parent_id) == "listed"


async def test_a_stale_job_does_nothing(deps: CustomerDeps) -> None:
    """A job that is not the parent's current job leaves the parent alone."""
    parent_id = await submit_customer(deps, "cus_stale")
    assert await run_customer(deps, parent_id, "someone-else.9") == "skipped"
    assert (await deps.customers.get(parent_id)).status == CustomerStatus.QUEUED


async def test_a_listing_cut_short_resumes_from_its_cursor(
    deps: CustomerDeps, stripe_emulator: RunningEmulator, session: aiohttp.ClientSession
) -> None:
    """A worker lost mid-listing: the same job resumes, and no account gets a second child."""
    await add_customer(stripe_emulator.url, session, "cus_resume", 3)
    parent_id = await submit_customer(deps, "cus_resume")
    parent = await deps.customers.get(parent_id)
    listing = await deps.customers.transition(parent, CustomerStatus.LISTING, attempts_delta=1)
    await deps.customers.add_children(listing, {}, None)
    assert await run_customer(deps, parent_id, str(listing.job_id)) == "listed"
    assert len(await deps.customers.children(parent_id)) == 3
    notes: list[Any] = [h["message"] for h in await deps.customers.history(parent_id)]
    assert any("resuming" in str(n) for n in notes)


async def test_a_resumed_listing_never_resubmits_children_that_already_finished(
    deps: CustomerDeps, stripe_emulator: RunningEmulator, session: aiohttp.ClientSession
) -> None:
    """Issue 16.3: killed after a page's children were submitted but before they were recorded
    on the parent (as the previous version could be), then the children finished: the resumed
    listing records them as the parent's children and creates no second request for any of
    them; the parent is done."""
    await add_customer(stripe_emulator.url, session, "cus_done", 3)
    parent_id = await submit_customer(deps, "cus_done")
    parent = await deps.customers.get(parent_id)
    listing = await deps.customers.transition(parent, CustomerStatus.LISTING, attempts_delta=1)
    listed = await deps.base.stripe.list_accounts(customer="cus_done", limit=100)
    accounts = [a["id"] for a in listed.body["data"]]
    ledger = deps.base.ledger
    for account_id in accounts:  # what the killed worker got done: submitted, never recorded
        child = await ledger.submit(
            account_id,
            source=listing.source,
            reference=listing.reference,
            reason=listing.reason,
            parent_id=parent_id,
        )
        request = await ledger.get(child.request_id)
        assert await run_disconnect(deps.base, child.request_id, str(request.job_id))
    assert await deps.customers.children(parent_id) == {}
    assert await run_customer(deps, parent_id, str(listing.job_id)) == "listed"
    for account_id in accounts:
        assert len(await ledger.requests_for_account(account_id)) == 1, account_id
    summary = await deps.customers.summary(await deps.customers.get(parent_id))
    assert summary["state"] == "done"
    assert summary["children"] == {"total": 3, "by_status": {"disconnected": 3}}


async def test_a_403_listing_for_a_connected_account_fails_that_parent_only(
    deps: CustomerDeps, customers: CustomerLedger, ledger: Ledger
) -> None:
    """Issue 10, point 2: a customer listing sent with a Stripe-Account the platform cannot act
    as (Stripe's 403 account_invalid) fails that parent with the reason and counts it as
    ``list|403_account``; the fleet is not paused and the next listing runs."""
    intake_body = {
        "customer_id": "cus_gone",
        "event_id": "evt_403",
        "reason": "account closed",
        "stripe_account": "acct_1NotConnected",
    }
    intake = IntakeService(
        ledger,
        customers,
        EventRegistry(ledger.redis, ledger.prefix),
        CounterBuffer(ledger.redis, ledger.prefix),
    )
    result = await intake.submit("crm", parse_body(intake_body))
    parent_id = result.body["request_ids"][0]
    assert await run_parent_job(deps, parent_id) == "failed"
    last = (await customers.history(parent_id))[-1]
    assert last["http_status"] == 403 and last["stripe_error_code"] == "account_invalid"
    assert await get_pause(ledger.redis, key=ledger.pause_key) is None
    counts = await ledger.redis.hgetall(f"{ledger.prefix}metrics:stripe")  # type: ignore[misc]
    assert counts[b"list|403_account"] == b"1"
    other = await submit_customer(deps, "cus_other", event="evt_ok")
    assert await run_parent_job(deps, other) == "listed"
