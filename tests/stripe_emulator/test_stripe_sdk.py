"""The official stripe SDK, pointed at the emulator, works and gets typed objects back.

The sync SDK runs in a worker thread (`asyncio.to_thread`) while the emulator serves on the
test's event loop; the async SDK runs on the loop itself with its aiohttp client.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import pytest
import stripe

from stripe_emulator import DEFAULT_API_KEY, RunningEmulator
from tests.stripe_emulator.conftest import StripeHttp


@pytest.fixture
def sync_client(emulator: RunningEmulator) -> Iterator[stripe.StripeClient]:
    """A sync StripeClient aimed at the emulator, its HTTP client closed afterwards."""
    http_client = stripe.RequestsClient()
    client = stripe.StripeClient(
        DEFAULT_API_KEY,
        base_addresses={"api": emulator.url},
        http_client=http_client,
        max_network_retries=0,
    )
    yield client
    http_client.close()  # type: ignore[no-untyped-call]  # untyped in the SDK


def _sync_session(client: stripe.StripeClient, customer: str, first_id: str) -> list[str]:
    accounts = client.v1.financial_connections.accounts
    account = accounts.retrieve(first_id)
    assert isinstance(account, stripe.financial_connections.Account)
    assert account.status == "active"
    paged = accounts.list({"limit": 3})
    every = [a.id for a in paged.auto_paging_iter()]
    holder = accounts.list({"account_holder": {"customer": customer}})
    assert all(a.account_holder and a.account_holder.customer == customer for a in holder.data)
    disconnected = accounts.disconnect(first_id)
    assert isinstance(disconnected, stripe.financial_connections.Account)
    assert disconnected.status == "disconnected"
    return every


async def test_sync_sdk_retrieves_lists_and_disconnects(
    sync_client: stripe.StripeClient, stripe_http: StripeHttp
) -> None:
    """retrieve, list with auto-paging, list by customer and disconnect all work via the SDK."""
    active = (await stripe_http.admin("GET", "/accounts?status=active&limit=1"))["data"][0]
    customer = active["account_holder"].get("customer") or "cus_none"
    every = await asyncio.to_thread(_sync_session, sync_client, customer, active["id"])
    assert len(every) == len(set(every)) == 40
    log = (await stripe_http.admin("GET", "/requests"))["data"]
    assert log[-1]["method"] == "POST"
    assert log[-1]["idempotency_key"]  # the SDK sends one on every POST


async def test_sdk_maps_errors_to_its_exceptions(
    sync_client: stripe.StripeClient, stripe_http: StripeHttp
) -> None:
    """The SDK turns the emulator's 404 and 429 into InvalidRequestError and RateLimitError."""
    accounts = sync_client.v1.financial_connections.accounts
    with pytest.raises(stripe.InvalidRequestError) as missing:
        await asyncio.to_thread(accounts.retrieve, "fca_missing")
    assert missing.value.code == "resource_missing"
    account_id = (await stripe_http.account_ids())[0]
    script = {"account_id": account_id, "responses": [{"status": 429}]}
    await stripe_http.admin("POST", "/script", script)
    with pytest.raises(stripe.RateLimitError):
        await asyncio.to_thread(accounts.disconnect, account_id)


async def test_async_sdk_with_aiohttp_client(
    emulator: RunningEmulator, stripe_http: StripeHttp
) -> None:
    """The SDK's async methods over its aiohttp client work against the emulator too."""
    http_client = stripe.AIOHTTPClient()
    client = stripe.StripeClient(
        DEFAULT_API_KEY,
        base_addresses={"api": emulator.url},
        http_client=http_client,
        max_network_retries=0,
    )
    try:
        accounts = client.v1.financial_connections.accounts
        account_id = (await stripe_http.account_ids())[0]
        result = await accounts.disconnect_async(account_id)
        assert result.status == "disconnected"
        page = await accounts.list_async({"limit": 5})
        ids = [a.id async for a in page.auto_paging_iter()]
        assert len(ids) == 40
    finally:
        await http_client.close_async()  # type: ignore[no-untyped-call]  # untyped in the SDK
