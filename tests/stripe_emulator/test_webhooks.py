"""Webhook events: shape, Stripe's signature (checked by the stripe SDK), retries, user disconnects."""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import pytest
import stripe
from aiohttp import web

from stripe_emulator import RunningEmulator, WebhookEndpoint, run_emulator, sign_webhook_payload
from tests.stripe_emulator.conftest import LIVE_KEY, StripeHttp, small_config

SECRET = "whsec_test_emulator_secret"


@dataclass
class Receiver:
    """A local webhook endpoint that fails its first `failures` deliveries."""

    url: str = ""
    failures: int = 0
    received: list[tuple[bytes, str]] = field(default_factory=list)

    async def handle(self, request: web.Request) -> web.Response:
        """Record the delivery; answer 500 while failures remain, then 200."""
        self.received.append((await request.read(), request.headers["Stripe-Signature"]))
        if self.failures > 0:
            self.failures -= 1
            return web.Response(status=500)
        return web.Response(text="ok")


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    """A running `Receiver` on loopback."""
    hook = Receiver()
    app = web.Application()
    app.router.add_post("/hook", hook.handle)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    host, port = runner.addresses[0][:2]
    hook.url = f"http://{host}:{port}/hook"
    yield hook
    await runner.cleanup()


@pytest.fixture
async def hooked(receiver: Receiver) -> AsyncIterator[RunningEmulator]:
    """An emulator that delivers to `receiver`, retrying quickly."""
    config = small_config(
        webhook_endpoints=(WebhookEndpoint(url=receiver.url, secret=SECRET),),
        webhook_backoff_seconds=0.01,
        webhook_max_attempts=3,
    )
    async with run_emulator(config) as emulator:
        yield emulator


def _verified(payload: bytes, header: str) -> Any:
    return stripe.Webhook.construct_event(payload, header, SECRET)


async def test_disconnect_sends_signed_event(
    hooked: RunningEmulator, receiver: Receiver, session: aiohttp.ClientSession
) -> None:
    """A disconnect POSTs a disconnected event that stripe.Webhook.construct_event accepts."""
    stripe_http = StripeHttp(hooked.url, session)
    account_id = (await stripe_http.account_ids())[0]
    reply = await stripe_http.disconnect(account_id, headers={"Idempotency-Key": "wh-1"})
    await hooked.state.webhooks.drain()
    payload, header = receiver.received[0]
    event = _verified(payload, header)
    assert event.type == "financial_connections.account.disconnected"
    assert event.id.startswith("evt_")
    body = json.loads(payload)
    assert body["object"] == "event"
    assert body["data"]["object"]["id"] == account_id
    assert body["data"]["object"]["status"] == "disconnected"
    assert body["request"] == {"id": reply.headers["Request-Id"], "idempotency_key": "wh-1"}
    assert body["livemode"] is False
    assert body["pending_webhooks"] == 1
    deliveries = (await stripe_http.admin("GET", "/webhooks"))["data"]
    assert deliveries[0]["status"] == "delivered"


async def test_replays_and_repeats_send_no_second_event(
    hooked: RunningEmulator, receiver: Receiver, session: aiohttp.ClientSession
) -> None:
    """Only the call that changes the account makes an event."""
    stripe_http = StripeHttp(hooked.url, session)
    account_id = (await stripe_http.account_ids())[0]
    for key in ("a", "a", "b"):
        await stripe_http.disconnect(account_id, headers={"Idempotency-Key": key})
    await hooked.state.webhooks.drain()
    assert len(receiver.received) == 1


async def test_failed_delivery_is_retried_then_delivered(
    hooked: RunningEmulator, receiver: Receiver, session: aiohttp.ClientSession
) -> None:
    """Non-2xx answers are retried, each attempt freshly signed, until one succeeds."""
    receiver.failures = 2
    stripe_http = StripeHttp(hooked.url, session)
    account_id = (await stripe_http.account_ids())[0]
    await stripe_http.disconnect(account_id)
    await hooked.state.webhooks.drain()
    assert len(receiver.received) == 3
    for payload, header in receiver.received:
        _verified(payload, header)
    delivery = (await stripe_http.admin("GET", "/webhooks"))["data"][0]
    assert [a["status"] for a in delivery["attempts"]] == [500, 500, 200]
    assert delivery["status"] == "delivered"


async def test_delivery_gives_up_after_max_attempts(
    hooked: RunningEmulator, receiver: Receiver, session: aiohttp.ClientSession
) -> None:
    """An endpoint that keeps failing gets max_attempts tries; the delivery is marked failed."""
    receiver.failures = 10
    stripe_http = StripeHttp(hooked.url, session)
    await stripe_http.disconnect((await stripe_http.account_ids())[0])
    await hooked.state.webhooks.drain()
    delivery = (await stripe_http.admin("GET", "/webhooks"))["data"][0]
    assert len(delivery["attempts"]) == 3
    assert delivery["status"] == "failed"


async def test_unreachable_endpoint_records_error(session: aiohttp.ClientSession) -> None:
    """A connection error is recorded per attempt, with no status."""
    endpoint = WebhookEndpoint(url="http://127.0.0.1:9/hook", secret=SECRET)
    config = small_config(
        webhook_endpoints=(endpoint,), webhook_backoff_seconds=0.0, webhook_max_attempts=2
    )
    async with run_emulator(config) as emulator:
        stripe_http = StripeHttp(emulator.url, session)
        await stripe_http.disconnect((await stripe_http.account_ids())[0], api_key=LIVE_KEY)
        await emulator.state.webhooks.drain()
        delivery = (await stripe_http.admin("GET", "/webhooks"))["data"][0]
        assert delivery["status"] == "failed"
        assert all(a["status"] is None and a["error"] for a in delivery["attempts"])
        assert emulator.state.webhooks.events[0]["livemode"] is True


async def test_user_disconnect_sends_event_without_request(
    hooked: RunningEmulator, receiver: Receiver, session: aiohttp.ClientSession
) -> None:
    """A disconnect by the user at their bank sends the event with null request ids."""
    stripe_http = StripeHttp(hooked.url, session)
    account_id = (await stripe_http.account_ids())[0]
    await stripe_http.admin("POST", f"/accounts/{account_id}/user-disconnect")
    await hooked.state.webhooks.drain()
    body = json.loads(receiver.received[0][0])
    assert body["request"] == {"id": None, "idempotency_key": None}
    assert body["data"]["object"]["id"] == account_id


async def test_runtime_endpoint_change(
    emulator: RunningEmulator, stripe_http: StripeHttp, receiver: Receiver
) -> None:
    """Webhook endpoints set through POST /_emulator/config receive later events."""
    endpoints = [{"url": receiver.url, "secret": SECRET}]
    config = await stripe_http.admin("POST", "/config", {"webhook_endpoints": endpoints})
    assert SECRET not in json.dumps(config)
    await stripe_http.disconnect((await stripe_http.account_ids())[0])
    await emulator.state.webhooks.drain()
    assert len(receiver.received) == 1


def test_signature_matches_stripe_verifier() -> None:
    """sign_webhook_payload makes headers the SDK accepts, and rejects with another secret."""
    payload = json.dumps({"id": "evt_1", "object": "event", "type": "x", "data": {"object": {}}})
    header = sign_webhook_payload(payload.encode(), SECRET, int(time.time()))
    assert header.startswith("t=")
    assert _verified(payload.encode(), header).id == "evt_1"
    with pytest.raises(stripe.SignatureVerificationError):
        stripe.Webhook.construct_event(payload, header, "whsec_other")
    stale = sign_webhook_payload(payload.encode(), SECRET, int(time.time()) - 3600)
    with pytest.raises(stripe.SignatureVerificationError):
        _verified(payload.encode(), stale)
