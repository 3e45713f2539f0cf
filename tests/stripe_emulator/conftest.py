"""Fixtures for the emulator's tests: an in-process emulator on loopback and an HTTP session.

`emulator` is small (40 accounts, seed 7) with limits off; a test that needs another
configuration starts its own with `run_emulator`. `stripe` is a tiny helper that sends
Stripe-style requests (form bodies, bearer auth) and returns status, headers and JSON.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import aiohttp
import pytest
from multidict import CIMultiDictProxy

from stripe_emulator import DEFAULT_API_KEY, EmulatorConfig, RunningEmulator, run_emulator

LIVE_KEY = "sk_live_fcd_emulator_live"
ACCOUNTS_PATH = "/v1/financial_connections/accounts"


@dataclass
class Reply:
    """One answer: status, headers and the decoded JSON body."""

    status: int
    headers: CIMultiDictProxy[str]
    body: Any


@dataclass
class StripeHttp:
    """Sends requests to one emulator the way Stripe's SDKs do."""

    base: str
    session: aiohttp.ClientSession
    api_key: str = DEFAULT_API_KEY

    async def call(
        self,
        method: str,
        path: str,
        *,
        params: dict[str, str] | None = None,
        form: dict[str, str] | None = None,
        headers: dict[str, str] | None = None,
        api_key: str | None = None,
    ) -> Reply:
        """Send one request; `api_key=""` sends none."""
        key = self.api_key if api_key is None else api_key
        sent = {"Authorization": f"Bearer {key}"} if key else {}
        sent.update(headers or {})
        async with self.session.request(
            method, self.base + path, params=params, data=form, headers=sent
        ) as resp:
            body = await resp.json() if resp.content_type == "application/json" else None
            return Reply(resp.status, resp.headers, body)

    async def disconnect(self, account_id: str, **kwargs: Any) -> Reply:
        """POST the disconnect of `account_id`."""
        return await self.call("POST", f"{ACCOUNTS_PATH}/{account_id}/disconnect", **kwargs)

    async def admin(self, method: str, path: str, body: Any = None) -> Any:
        """Call the admin API and return its JSON (raising on an error status)."""
        async with self.session.request(method, f"{self.base}/_emulator{path}", json=body) as r:
            r.raise_for_status()
            return await r.json()

    async def account_ids(self, status: str = "active", limit: int = 100) -> list[str]:
        """Ids of accounts with `status`, in creation order."""
        found = await self.admin("GET", f"/accounts?status={status}&limit={limit}")
        return [account["id"] for account in found["data"]]


def small_config(**overrides: Any) -> EmulatorConfig:
    """The tests' usual emulator configuration, with `overrides`."""
    base: dict[str, Any] = {"accounts": 40, "seed": 7, "api_keys": (DEFAULT_API_KEY, LIVE_KEY)}
    return EmulatorConfig(**{**base, **overrides})


@pytest.fixture
async def emulator() -> AsyncIterator[RunningEmulator]:
    """A small emulator with limits and faults off."""
    async with run_emulator(small_config()) as running:
        yield running


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    """One HTTP session, closed at the end of the test."""
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as client:
        yield client


@pytest.fixture
def stripe_http(emulator: RunningEmulator, session: aiohttp.ClientSession) -> StripeHttp:
    """A `StripeHttp` for the `emulator` fixture."""
    return StripeHttp(emulator.url, session)
