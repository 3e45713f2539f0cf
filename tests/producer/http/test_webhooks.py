"""POST /webhooks/stripe: only Stripe-signed, fresh events are kept; each is applied once in the
background. ``stripe.Webhook.construct_event`` is the oracle for what a valid signature is."""

from __future__ import annotations

import asyncio
import itertools
import json
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import aiohttp
import pytest
import stripe
from aiohttp.test_utils import TestClient

from events.apply import apply_event
from events.inbox import GROUP, WebhookInbox
from ledger.models import RequestStatus
from ledger.store import Ledger
from stripe_emulator import (
    EmulatorConfig,
    RunningEmulator,
    WebhookEndpoint,
    run_emulator,
    sign_webhook_payload,
)
from tests.producer.http.conftest import BILLING, WEBHOOK_SECRETS, account_body
from tests.worker_deps import build_test_deps
from worker.disconnect import run_disconnect
from worker.stripe_client import client_timeout

Client = TestClient[Any, Any]
pytestmark = pytest.mark.integration


def event(event_id: str = "evt_1", account_id: str = "fca_1", key: str | None = None) -> bytes:
    body = {
        "id": event_id,
        "object": "event",
        "type": "financial_connections.account.disconnected",
        "created": int(time.time()),
        "data": {"object": {"id": account_id, "status": "disconnected"}},
        "request": {"id": None, "idempotency_key": key},
    }
    return json.dumps(body).encode()


def oracle_accepts(payload: bytes, header: str) -> bool:
    """Whether stripe-python accepts the signature with any of our secrets."""
    for secret in WEBHOOK_SECRETS:
        try:
            stripe.Webhook.construct_event(payload, header, secret, tolerance=300)
        except stripe.SignatureVerificationError:
            continue
        return True
    return False


async def post_event(intake: Client, payload: bytes, header: str | None) -> aiohttp.ClientResponse:
    headers = {"Content-Type": "application/json"}
    if header is not None:
        headers["Stripe-Signature"] = header
    return await intake.post("/webhooks/stripe", data=payload, headers=headers)


async def eventually(check: Callable[[], Awaitable[bool]]) -> None:
    """Poll ``check`` (state lives in Redis, so there is no event to wait on) for up to 8 s."""
    async with asyncio.timeout(8.0):
        for _ in itertools.count():
            if await check():
                return
            await asyncio.sleep(0.05)


@pytest.mark.parametrize("secret", WEBHOOK_SECRETS, ids=["old-secret", "new-secret"])
async def test_a_signed_event_is_accepted_with_either_secret(intake: Client, secret: str) -> None:
    """Signed with any configured secret (rotation): 200, and the oracle agrees."""
    payload = event()
    header = sign_webhook_payload(payload, secret, int(time.time()))
    resp = await post_event(intake, payload, header)
    assert resp.status == 200 and oracle_accepts(payload, header)
    assert (await resp.json()) == {"received": True, "duplicate": False}


BAD_SIGNATURES: list[tuple[str, Callable[[bytes], str | None]]] = [
    ("wrong-secret", lambda p: sign_webhook_payload(p, "whsec_other", int(time.time()))),
    ("stale", lambda p: sign_webhook_payload(p, WEBHOOK_SECRETS[0], int(time.time()) - 301)),
    ("tampered", lambda p: sign_webhook_payload(p + b" ", WEBHOOK_SECRETS[0], int(time.time()))),
    ("garbage", lambda p: "t=abc,v1=zz"),
    ("no-v1", lambda p: f"t={int(time.time())}"),
    ("missing", lambda p: None),
]


@pytest.mark.parametrize(("name", "sign"), BAD_SIGNATURES, ids=[n for n, _ in BAD_SIGNATURES])
async def test_bad_or_stale_signatures_are_400_and_change_nothing(
    intake: Client, ledger: Ledger, name: str, sign: Callable[[bytes], str | None]
) -> None:
    """Wrong secret, stale, tampered, malformed or missing: 400, nothing stored; the oracle agrees."""
    payload = event()
    header = sign(payload)
    resp = await post_event(intake, payload, header)
    assert resp.status == 400
    assert (await resp.json())["error"]["code"] == "bad_signature"
    if header is not None:
        assert not oracle_accepts(payload, header)
    keys = [k async for k in ledger.redis.scan_iter(match=f"{ledger.prefix}webhook:*")]
    assert keys == [] or all(b"inbox" in k for k in keys)
    assert await ledger.redis.xlen(f"{ledger.prefix}webhook:inbox") == 0


async def test_events_are_deduplicated_by_id(intake: Client, ledger: Ledger) -> None:
    """Stripe's retry of an event (same id) is acknowledged but applied only once."""
    payload = event("evt_dup", "fca_dup")
    for expected in (False, True):
        header = sign_webhook_payload(payload, WEBHOOK_SECRETS[0], int(time.time()))
        resp = await post_event(intake, payload, header)
        assert (await resp.json())["duplicate"] is expected

    async def applied() -> bool:
        return len(await ledger.account_history("fca_dup")) >= 1

    await eventually(applied)
    await asyncio.sleep(0.2)
    history = await ledger.account_history("fca_dup")
    assert [h["event"] for h in history] == ["account.externally_disconnected"]


@pytest.fixture
async def emulator_to_intake(intake: Client) -> AsyncIterator[RunningEmulator]:
    """The emulator, delivering its webhooks to the intake under test."""
    endpoint = WebhookEndpoint(
        url=str(intake.make_url("/webhooks/stripe")), secret=WEBHOOK_SECRETS[1]
    )
    config = EmulatorConfig(accounts=4, seed=5, webhook_endpoints=(endpoint,))
    async with run_emulator(config) as running:
        yield running


async def emulator_account(emulator: RunningEmulator, http: aiohttp.ClientSession) -> str:
    async with http.get(f"{emulator.url}/_emulator/accounts?status=active&limit=1") as resp:
        account_id: str = (await resp.json())["data"][0]["id"]
        return account_id


async def test_our_disconnect_is_confirmed_by_its_webhook(
    intake: Client, ledger: Ledger, emulator_to_intake: RunningEmulator
) -> None:
    """The worker disconnects; Stripe's event (with our Idempotency-Key) adds disconnect.confirmed."""
    async with aiohttp.ClientSession(timeout=client_timeout(2.0, 5.0)) as http:
        account_id = await emulator_account(emulator_to_intake, http)
        resp = await intake.post(
            "/v1/disconnect-requests", json=account_body(account_id), headers=BILLING
        )
        request_id = (await resp.json())["request_ids"][0]
        deps = build_test_deps(ledger, emulator_to_intake.url, http, max_attempts=3)
        await run_disconnect(deps, request_id, f"{request_id}.1")

        async def confirmed() -> bool:
            return any(
                h["event"] == "disconnect.confirmed" for h in await ledger.history(request_id)
            )

        await eventually(confirmed)
    assert (await ledger.get(request_id)).status == RequestStatus.DISCONNECTED


async def test_a_user_disconnect_cancels_the_queued_request(
    intake: Client, ledger: Ledger, emulator_to_intake: RunningEmulator
) -> None:
    """The user disconnects at their bank: externally_disconnected, and our queued request is
    cancelled with that reason."""
    async with aiohttp.ClientSession(timeout=client_timeout(2.0, 5.0)) as http:
        account_id = await emulator_account(emulator_to_intake, http)
        resp = await intake.post(
            "/v1/disconnect-requests", json=account_body(account_id), headers=BILLING
        )
        request_id = (await resp.json())["request_ids"][0]
        url = f"{emulator_to_intake.url}/_emulator/accounts/{account_id}/user-disconnect"
        async with http.post(url) as done:
            assert done.status == 200

        async def cancelled() -> bool:
            return (await ledger.get(request_id)).status == RequestStatus.CANCELLED

        await eventually(cancelled)
    events = [h["event"] for h in await ledger.account_history(account_id)]
    assert "account.externally_disconnected" in events
    last = (await ledger.history(request_id))[-1]
    assert "outside this service" in last["message"]


async def test_an_event_accepted_but_not_applied_survives_the_process(ledger: Ledger) -> None:
    """An event read by a consumer that died before applying it is claimed and applied by
    another: nothing acknowledged to Stripe is lost."""
    inbox = WebhookInbox(ledger.redis, ledger.prefix, claim_idle_ms=0)
    await inbox.ensure_group()
    await inbox.accept("evt_lost", json.loads(event("evt_lost", "fca_lost")))
    await ledger.redis.xreadgroup(GROUP, "dead-consumer", {inbox.stream: ">"}, count=10)

    async def apply(evt: dict[str, Any]) -> str:
        return await apply_event(ledger, evt)

    assert await inbox.process_once("alive-consumer", apply, block_ms=10) == 1
    assert [h["event"] for h in await ledger.account_history("fca_lost")] == [
        "account.externally_disconnected"
    ]
    assert await inbox.pending() == 0


async def test_a_failing_event_never_blocks_the_others_and_is_dead_lettered(
    ledger: Ledger,
) -> None:
    """An event whose application keeps failing is skipped (the events after it are applied)
    and, after max_deliveries failures, parked in the dead-letter stream."""
    inbox = WebhookInbox(ledger.redis, ledger.prefix, claim_idle_ms=0, max_deliveries=2)
    await inbox.ensure_group()
    await inbox.accept("evt_poison", json.loads(event("evt_poison", "fca_poison")))
    await inbox.accept("evt_fine", json.loads(event("evt_fine", "fca_fine")))

    async def apply(evt: dict[str, Any]) -> str:
        if evt["id"] == "evt_poison":
            raise ValueError("cannot apply this one")
        return await apply_event(ledger, evt)

    assert await inbox.process_once("c1", apply, block_ms=10) == 1
    assert [h["event"] for h in await ledger.account_history("fca_fine")] == [
        "account.externally_disconnected"
    ]
    assert await inbox.pending() == 1
    assert await inbox.process_once("c1", apply, block_ms=10) == 0  # second failed delivery
    assert await inbox.pending() == 0
    [(_, fields)] = await ledger.redis.xrange(inbox.dead_stream)
    assert json.loads(fields[b"event"])["id"] == "evt_poison"


async def test_event_with_request_as_a_bare_string_is_applied(ledger: Ledger) -> None:
    """Old API versions send ``request`` as an id string: treated as 'not ours', never a crash."""
    body = json.loads(event("evt_old", "fca_old"))
    body["request"] = "req_123"
    assert await apply_event(ledger, body) == "external"
