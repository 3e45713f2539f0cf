"""Webhook events for disconnects, signed and delivered as Stripe does, in the background.

Every disconnect (through the API or `POST /_emulator/accounts/{id}/user-disconnect`) makes one
`financial_connections.account.disconnected` event, kept in `events`, and one delivery per
configured endpoint: a POST of the event's JSON with `Stripe-Signature: t=<unix>,v1=<hex>`, where
the hex is HMAC-SHA256 with the endpoint's secret over `"{t}.{body}"`. A non-2xx answer or a
connection error is retried after `webhook_backoff_seconds`, doubling, up to
`webhook_max_attempts` attempts; each attempt is re-signed with a fresh timestamp.

`sign_webhook_payload` is public: tests elsewhere use it to forge valid (or stale) signatures.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import random
import time
from collections import deque
from typing import Any

import aiohttp

from stripe_emulator.config import WebhookEndpoint
from stripe_emulator.ids import to_base62

EVENT_TYPE = "financial_connections.account.disconnected"
_USER_AGENT = "Stripe/1.0 (+https://stripe.com/docs/webhooks)"


def sign_webhook_payload(payload: bytes, secret: str, timestamp: int) -> str:
    """The `Stripe-Signature` header value Stripe would send for `payload` signed at `timestamp`."""
    signed = f"{timestamp}.".encode() + payload
    digest = hmac.new(secret.encode(), signed, hashlib.sha256).hexdigest()
    return f"t={timestamp},v1={digest}"


class WebhookDispatcher:
    """Makes events and delivers them to the endpoints; owns one `aiohttp.ClientSession`."""

    def __init__(
        self,
        endpoints: tuple[WebhookEndpoint, ...],
        *,
        api_version: str,
        max_attempts: int,
        backoff: float,
        timeout: float,
        seed: int,
    ) -> None:
        self.endpoints = endpoints
        self.events: deque[dict[str, Any]] = deque(maxlen=10_000)  # each holds an account
        self.deliveries: deque[dict[str, Any]] = deque(maxlen=100_000)
        self._api_version = api_version
        self._max_attempts = max_attempts
        self._backoff = backoff
        self._timeout = aiohttp.ClientTimeout(total=timeout)
        self._rng = random.Random(seed)
        self._session: aiohttp.ClientSession | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    async def start(self) -> None:
        """Open the session deliveries use."""
        self._session = aiohttp.ClientSession(timeout=self._timeout)

    async def close(self) -> None:
        """Cancel deliveries still running or waiting to retry, then close the session."""
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def drain(self) -> None:
        """Wait until every delivery has succeeded or used up its attempts."""
        while self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)

    def emit(
        self,
        account: dict[str, Any],
        *,
        livemode: bool,
        request_id: str | None,
        idempotency_key: str | None,
        stripe_account: str | None = None,
    ) -> dict[str, Any]:
        """Record the disconnected event for `account` (kept, not copied) and deliver it.

        An event of a connected account (`stripe_account`) carries `account`, as Stripe's do;
        it is delivered to every endpoint here (as if each were also a Connect endpoint).
        """
        event: dict[str, Any] = {
            "id": f"evt_1{to_base62(self._rng.getrandbits(128), 23)}",
            "object": "event",
            "api_version": self._api_version,
            "created": int(time.time()),
            "data": {"object": account},
            "livemode": livemode,
            "pending_webhooks": len(self.endpoints),
            "request": {"id": request_id, "idempotency_key": idempotency_key},
            "type": EVENT_TYPE,
        }
        if stripe_account is not None:
            event["account"] = stripe_account
        self.events.append(event)
        if self.endpoints and self._session is not None:
            payload = json.dumps(event, indent=2).encode()
            for endpoint in self.endpoints:
                delivery = {
                    "event_id": event["id"],
                    "event_type": EVENT_TYPE,
                    "account_id": account["id"],
                    "url": endpoint.url,
                    "status": "pending",
                    "attempts": [],
                }
                self.deliveries.append(delivery)
                task = asyncio.create_task(self._deliver(endpoint, payload, delivery))
                self._tasks.add(task)
                task.add_done_callback(self._tasks.discard)
        return event

    async def _deliver(
        self, endpoint: WebhookEndpoint, payload: bytes, delivery: dict[str, Any]
    ) -> None:
        delay = self._backoff
        for attempt in range(1, self._max_attempts + 1):
            status, error = await self._attempt(endpoint, payload)
            delivery["attempts"].append({"ts": time.time(), "status": status, "error": error})
            if status is not None and 200 <= status < 300:
                delivery["status"] = "delivered"
                return
            if attempt < self._max_attempts:
                await asyncio.sleep(delay)
                delay *= 2
        delivery["status"] = "failed"

    async def _attempt(
        self, endpoint: WebhookEndpoint, payload: bytes
    ) -> tuple[int | None, str | None]:
        assert self._session is not None
        headers = {
            "Content-Type": "application/json; charset=utf-8",
            "User-Agent": _USER_AGENT,
            "Stripe-Signature": sign_webhook_payload(payload, endpoint.secret, int(time.time())),
        }
        try:
            async with self._session.post(endpoint.url, data=payload, headers=headers) as resp:
                await resp.read()
                return resp.status, None
        except (aiohttp.ClientError, TimeoutError) as exc:
            return None, f"{type(exc).__name__}: {exc}"
