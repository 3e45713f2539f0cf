"""The webhook catch-up (issue 10, point 6): Stripe's event list fed into the webhook inbox.

Real Redis, the emulator in process (its webhook endpoint unreachable, so every delivery is
lost), the real inbox consumer applying what the catch-up accepted. Also the undocumented
``request`` on our own disconnect's event: the worker and the catch-up are run against both
answers the emulator offers.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from functools import partial

import aiohttp
import pytest

from events.apply import CONFIRMED, EXTERNALLY_DISCONNECTED, apply_event
from events.inbox import WebhookInbox
from ledger.models import RequestSource, RequestStatus
from ledger.store import Ledger
from stripe_emulator import (
    EmulatorConfig,
    RunningEmulator,
    WebhookEndpoint,
    free_port,
    run_emulator,
)
from tests.emulator_admin import EmulatorAdmin
from tests.worker.test_disconnect import run_current_job, submit
from tests.worker_deps import build_test_deps
from worker.disconnect import DisconnectDeps
from worker.events_catchup import catch_up, cursor_key
from worker.ratelimit import AccountLock
from worker.stripe_client import client_timeout

pytestmark = pytest.mark.integration


def config(**overrides: object) -> EmulatorConfig:
    """Webhooks to a port nothing listens on, one attempt: every delivery fails (an outage)."""
    dead = WebhookEndpoint(url=f"http://127.0.0.1:{free_port()}/webhooks/stripe", secret="whsec_x")
    base: dict[str, object] = {
        "accounts": 10,
        "seed": 9,
        "webhook_endpoints": (dead,),
        "webhook_max_attempts": 1,
    }
    return EmulatorConfig.model_validate({**base, **overrides})


@pytest.fixture
async def outage_emulator() -> AsyncIterator[RunningEmulator]:
    async with run_emulator(config()) as running:
        yield running


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession(timeout=client_timeout(2.0, 5.0)) as session:
        yield session


async def user_disconnects(admin: EmulatorAdmin, count: int) -> list[str]:
    """``count`` new accounts, each then disconnected by its user at the bank (an event each)."""
    ids = await admin.create_accounts(count)
    for account_id in ids:
        await admin.post(f"/_emulator/accounts/{account_id}/user-disconnect", {})
    return ids


async def apply_inbox(ledger: Ledger, inbox: WebhookInbox) -> int:
    await inbox.ensure_group()
    applied = 0
    while await inbox.pending():
        applied += await inbox.process_once("test", partial(apply_event, ledger), block_ms=10)
    return applied


async def test_missed_webhooks_are_caught_up_and_applied(
    outage_emulator: RunningEmulator, ledger: Ledger, http: aiohttp.ClientSession
) -> None:
    """Three user disconnects whose webhooks all failed: one pass accepts the three events into
    the inbox, the consumer applies them (the waiting request is cancelled, the account noted),
    the cursor is the newest event, and a second pass re-reads the overlap as duplicates only."""
    admin = EmulatorAdmin(outage_emulator.url, http)
    [waiting] = await admin.create_accounts(1)
    request = await submit(ledger, waiting)
    others = await user_disconnects(admin, 2)
    await admin.post(f"/_emulator/accounts/{waiting}/user-disconnect", {})
    await outage_emulator.state.webhooks.drain()
    deliveries = await admin.get("/_emulator/webhooks")
    assert {d["status"] for d in deliveries} == {"failed"}
    deps = build_test_deps(ledger, outage_emulator.url, http)
    inbox = WebhookInbox(ledger.redis, ledger.prefix)
    first = await catch_up(deps, inbox, lookback_seconds=3600, overlap_seconds=300)
    assert (first.listed, first.accepted, first.duplicates) == (3, 3, 0)
    assert await apply_inbox(ledger, inbox) == 3
    assert (await ledger.get(request.request_id)).status == RequestStatus.CANCELLED
    for account_id in [*others, waiting]:
        notes = [h["event"] for h in await ledger.account_history(account_id)]
        assert EXTERNALLY_DISCONNECTED in notes
    newest = outage_emulator.state.webhooks.events[-1]
    cursor = await ledger.redis.hgetall(cursor_key(ledger.prefix))  # type: ignore[misc]
    assert cursor[b"id"].decode() == newest["id"]
    assert int(cursor[b"created"]) == newest["created"]
    again = await catch_up(deps, inbox, lookback_seconds=3600, overlap_seconds=300)
    assert (again.accepted, again.duplicates) == (0, 3)
    counts = await ledger.redis.hgetall(f"{ledger.prefix}metrics:webhooks")  # type: ignore[misc]
    kind = "financial_connections.account.disconnected"
    assert counts[f"{kind}|caught_up".encode()] == b"3"
    assert counts[f"{kind}|caught_up_duplicate".encode()] == b"3"


async def test_pages_through_the_limiter_and_resumes_from_the_cursor(
    outage_emulator: RunningEmulator, ledger: Ledger, http: aiohttp.ClientSession
) -> None:
    """230 missed events (made over the last five minutes) are read 100 a page, every page a
    limiter grant; with the overlap off, the next pass starts at the newest event's second and
    accepts only the two events made since."""
    admin = EmulatorAdmin(outage_emulator.url, http)
    await user_disconnects(admin, 230)
    events = outage_emulator.state.webhooks.events
    for n, event in enumerate(events):
        event["created"] -= 300 - n  # spread over (now - 300 s, now - 70 s]
    deps = build_test_deps(ledger, outage_emulator.url, http)
    inbox = WebhookInbox(ledger.redis, ledger.prefix)
    first = await catch_up(deps, inbox, lookback_seconds=3600, overlap_seconds=0)
    assert first.accepted == 230 and first.cursor_created == events[-1]["created"]
    calls = [e for e in await admin.requests() if e["path"] == "/v1/events"]
    assert len(calls) == 3
    stats = await ledger.redis.hgetall(f"{ledger.prefix}rl:stats")  # type: ignore[misc]
    assert int(stats[b"grants"]) == 3
    await user_disconnects(admin, 2)
    second = await catch_up(deps, inbox, lookback_seconds=3600, overlap_seconds=0)
    assert (second.listed, second.accepted, second.duplicates) == (3, 2, 1)


async def test_an_event_received_by_webhook_is_not_applied_again(
    outage_emulator: RunningEmulator, ledger: Ledger, http: aiohttp.ClientSession
) -> None:
    """An event the intake already accepted (same id) is a duplicate for the catch-up."""
    admin = EmulatorAdmin(outage_emulator.url, http)
    await user_disconnects(admin, 1)
    [event] = outage_emulator.state.webhooks.events
    inbox = WebhookInbox(ledger.redis, ledger.prefix)
    assert await inbox.accept(event["id"], event)
    deps = build_test_deps(ledger, outage_emulator.url, http)
    report = await catch_up(deps, inbox, lookback_seconds=3600, overlap_seconds=300)
    assert (report.accepted, report.duplicates) == (0, 1)
    assert await inbox.pending() == 1


async def test_one_pass_at_a_time_across_the_fleet(
    outage_emulator: RunningEmulator, ledger: Ledger, http: aiohttp.ClientSession
) -> None:
    """While another worker's pass holds the lock, a pass does nothing and says busy."""
    deps = build_test_deps(ledger, outage_emulator.url, http)
    inbox = WebhookInbox(ledger.redis, ledger.prefix)
    async with AccountLock(ledger.redis, "events-catchup", key_prefix=f"{ledger.prefix}lock:"):
        report = await catch_up(deps, inbox, lookback_seconds=3600, overlap_seconds=300)
    assert report.busy and report.listed == 0
    assert [e for e in await EmulatorAdmin(outage_emulator.url, http).requests()] == []


@pytest.mark.parametrize("mode", ["set", "null"], ids=["event-request-set", "event-request-null"])
async def test_our_own_disconnects_event_confirms_it_whether_or_not_it_names_us(
    ledger: Ledger, http: aiohttp.ClientSession, mode: str
) -> None:
    """Undocumented: does Stripe's event of our own disconnect carry our request and key? In
    both cases the request ends ``disconnected`` (one POST, ``evidence`` = ``answer``) and the
    caught-up event is recorded as ``disconnect.confirmed`` on it (``evidence`` = ``event``),
    never as an external disconnect."""
    async with run_emulator(config(event_request_mode=mode)) as emulator:
        admin = EmulatorAdmin(emulator.url, http)
        [account] = await admin.create_accounts(1)
        deps: DisconnectDeps = build_test_deps(ledger, emulator.url, http)
        request = await ledger.get(
            (
                await ledger.submit(account, source=RequestSource.DELETION_EVENT, reference="e")
            ).request_id
        )
        assert (
            await run_current_job(deps, request.request_id)
        ).status == RequestStatus.DISCONNECTED
        inbox = WebhookInbox(ledger.redis, ledger.prefix)
        report = await catch_up(deps, inbox, lookback_seconds=3600, overlap_seconds=300)
        assert report.accepted == 1
        assert await apply_inbox(ledger, inbox) == 1
        history = await ledger.history(request.request_id)
        assert next(h["evidence"] for h in history if h["to"] == "disconnected") == "answer"
        assert [h["evidence"] for h in history if h["event"] == CONFIRMED] == ["event"]
        posts = [r for r in await admin.requests() if r["account_id"] == account]
        assert [r["method"] for r in posts] == ["POST"]
        account_notes = [h.get("event") for h in await ledger.account_history(account)]
        assert EXTERNALLY_DISCONNECTED not in account_notes
        assert (await ledger.get(request.request_id)).status == RequestStatus.DISCONNECTED
