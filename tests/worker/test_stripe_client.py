"""The Stripe client at its boundary: headers sent, and every failure mapped to our errors."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from pydantic import SecretStr

from devenv.redis_server import free_port
from stripe_emulator import DEFAULT_API_KEY, RunningEmulator
from tests.emulator_admin import EmulatorAdmin
from worker.stripe_client import (
    StripeAPIError,
    StripeClient,
    StripeError,
    StripeTimeout,
    StripeTransportError,
)

pytestmark = pytest.mark.integration
VERSION = "2026-06-24.dahlia"


def client_for(http: aiohttp.ClientSession, base: str, key: str = DEFAULT_API_KEY) -> StripeClient:
    return StripeClient(http, base, SecretStr(key), VERSION)


async def test_disconnect_sends_auth_version_key_and_account_headers(
    http: aiohttp.ClientSession, emulator: RunningEmulator, admin: EmulatorAdmin
) -> None:
    """Bearer auth, Stripe-Version, Idempotency-Key and Stripe-Account reach Stripe; Request-Id
    comes back."""
    [connected] = await admin.connect_accounts(1)
    [account] = await admin.create_accounts(1, stripe_account=connected)
    result = await client_for(http, emulator.url).disconnect_account(
        account, idempotency_key="fcd-k-0", stripe_account=connected
    )
    assert result.body["status"] == "disconnected"
    assert (result.meta.request_id or "").startswith("req_")
    [call] = [r for r in await admin.requests() if r["method"] == "POST"]
    assert call["idempotency_key"] == "fcd-k-0"
    assert call["stripe_account"] == connected
    assert call["api_key_suffix"] == DEFAULT_API_KEY[-4:]


async def test_list_and_retrieve(
    http: aiohttp.ClientSession, emulator: RunningEmulator, admin: EmulatorAdmin
) -> None:
    """list_accounts returns Stripe's list envelope; retrieve returns the account."""
    client = client_for(http, emulator.url)
    listed = await client.list_accounts(limit=3)
    assert listed.body["object"] == "list" and len(listed.body["data"]) == 3
    first = listed.body["data"][0]["id"]
    assert (await client.retrieve_account(first)).body["id"] == first


async def test_api_error_carries_context_but_never_the_key(
    http: aiohttp.ClientSession, emulator: RunningEmulator
) -> None:
    """A 401 becomes StripeAPIError with status, type and Request-Id; the key is nowhere in it."""
    key = "sk_test_notTheRightOne42"
    with pytest.raises(StripeAPIError) as caught:
        await client_for(http, emulator.url, key).retrieve_account("fca_x")
    error = caught.value
    assert error.http_status == 401 and error.type == "invalid_request_error"
    assert error.stripe_request_id
    assert key not in str(error) and key not in repr(error) and key not in repr(error.meta)
    assert key not in repr(client_for(http, emulator.url, key))


async def test_connection_refused_is_a_transport_error(http: aiohttp.ClientSession) -> None:
    """Nothing listening: StripeTransportError, not an aiohttp exception."""
    with pytest.raises(StripeTransportError):
        await client_for(http, f"http://127.0.0.1:{free_port()}").retrieve_account("fca_x")


async def test_timeout_and_reset_are_mapped(
    http: aiohttp.ClientSession, emulator: RunningEmulator, admin: EmulatorAdmin
) -> None:
    """A hang past the client timeout is StripeTimeout; a reset is StripeTransportError."""
    hanging, resetting = await admin.create_accounts(2)
    await admin.script(hanging, {"hang_seconds": 3.0})
    await admin.script(resetting, {"reset": True})
    client = client_for(http, emulator.url)
    with pytest.raises(StripeTimeout):
        await client.disconnect_account(hanging, idempotency_key="k1")
    with pytest.raises(StripeTransportError) as caught:
        await client.disconnect_account(resetting, idempotency_key="k2")
    assert not isinstance(caught.value, StripeTimeout)


@pytest.fixture
async def garbage_server() -> AsyncIterator[str]:
    """A server that answers 502 with an HTML body, as a broken proxy would."""

    async def handler(_: web.Request) -> web.Response:
        return web.Response(status=502, text="<html>bad gateway</html>", content_type="text/html")

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", handler)
    runner = web.AppRunner(app)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    yield f"http://127.0.0.1:{port}"
    await runner.cleanup()


async def test_non_json_body_is_a_transport_error(
    http: aiohttp.ClientSession, garbage_server: str
) -> None:
    """An HTML 502 from a proxy is StripeTransportError with the status kept."""
    with pytest.raises(StripeTransportError) as caught:
        await client_for(http, garbage_server).retrieve_account("fca_x")
    assert caught.value.http_status == 502


class _RaisingSession:
    """Stands in for aiohttp.ClientSession where a real error cannot be provoked on loopback."""

    def __init__(self, error: BaseException) -> None:
        self.error = error

    def request(self, *_: Any, **__: Any) -> Any:
        raise self.error


def _all_client_errors() -> list[type[BaseException]]:
    found: list[type[BaseException]] = []
    pending: list[type[BaseException]] = [aiohttp.ClientError]
    while pending:
        cls = pending.pop()
        found.append(cls)
        pending.extend(cls.__subclasses__())
    return [c for c in found if c.__module__.startswith("aiohttp")]


@pytest.mark.parametrize("error_cls", _all_client_errors(), ids=lambda c: c.__name__)
async def test_every_aiohttp_error_is_mapped(error_cls: type[BaseException]) -> None:
    """Each aiohttp.ClientError subclass (and TimeoutError) surfaces as a StripeError subclass."""
    error = error_cls.__new__(error_cls)
    session: Any = _RaisingSession(error)
    client = StripeClient(session, "http://127.0.0.1:1", SecretStr("sk_test_x"), VERSION)
    with pytest.raises(StripeError) as caught:
        await client.retrieve_account("fca_x")
    expected = StripeTimeout if issubclass(error_cls, TimeoutError) else StripeTransportError
    assert isinstance(caught.value, expected)
