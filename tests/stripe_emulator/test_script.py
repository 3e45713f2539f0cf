"""Scripted outcomes (`POST /_emulator/script`): the worker's outcome tests depend on these."""

from __future__ import annotations

import asyncio
from typing import Any

import aiohttp
import pytest

from stripe_emulator import RunningEmulator
from tests.stripe_emulator.conftest import StripeHttp


async def _script(stripe_http: StripeHttp, account_id: str, *responses: dict[str, Any]) -> None:
    await stripe_http.admin("POST", "/script", {"account_id": account_id, "responses": responses})


async def test_outcomes_are_consumed_in_order_then_normal(stripe_http: StripeHttp) -> None:
    """Each scripted outcome is used by one disconnect, in order; then calls run normally."""
    account_id = (await stripe_http.account_ids())[0]
    await _script(
        stripe_http,
        account_id,
        {"status": 500},
        {"status": 429, "code": "rate_limit", "rate_limited_reason": "endpoint-rate"},
        {"status": 409},
        {"status": 503, "should_retry": False},
        {"status": 400, "should_retry": True},
    )
    replies = [await stripe_http.disconnect(account_id) for _ in range(6)]
    assert [r.status for r in replies] == [500, 429, 409, 503, 400, 200]
    assert replies[0].body["error"]["type"] == "api_error"
    assert replies[1].body["error"]["code"] == "rate_limit"
    assert replies[1].headers["Stripe-Rate-Limited-Reason"] == "endpoint-rate"
    assert replies[3].headers["Stripe-Should-Retry"] == "false"
    assert replies[4].headers["Stripe-Should-Retry"] == "true"
    assert replies[0].headers["Stripe-Should-Retry"] == "false"  # Stripe's usual 500
    assert "Stripe-Should-Retry" not in replies[2].headers
    assert replies[5].body["status"] == "disconnected"


async def test_scripted_error_does_not_disconnect(stripe_http: StripeHttp) -> None:
    """A scripted error leaves the account as it was, unless `execute` is set."""
    first, second = (await stripe_http.account_ids())[:2]
    await _script(stripe_http, first, {"status": 500})
    await _script(stripe_http, second, {"status": 500, "execute": True})
    await stripe_http.disconnect(first)
    await stripe_http.disconnect(second)
    assert (await stripe_http.admin("GET", f"/accounts/{first}"))["status"] == "active"
    assert (await stripe_http.admin("GET", f"/accounts/{second}"))["status"] == "disconnected"


async def test_custom_error_fields_are_sent(stripe_http: StripeHttp) -> None:
    """type, code, message and param given in the script appear in the error body."""
    account_id = (await stripe_http.account_ids())[0]
    outcome = {"status": 402, "type": "card_error", "code": "x", "message": "m", "param": "p"}
    await _script(stripe_http, account_id, outcome)
    reply = await stripe_http.disconnect(account_id)
    assert reply.status == 402
    error = reply.body["error"]
    assert [error[k] for k in ("type", "code", "message", "param")] == ["card_error", "x", "m", "p"]


async def test_hang_outlives_client_timeout_then_executes(
    emulator: RunningEmulator, stripe_http: StripeHttp
) -> None:
    """A hang longer than the client's timeout times the client out; the disconnect still runs."""
    account_id = (await stripe_http.account_ids())[0]
    await _script(stripe_http, account_id, {"hang_seconds": 0.6})
    with pytest.raises(TimeoutError):
        await asyncio.wait_for(stripe_http.disconnect(account_id), timeout=0.2)
    await asyncio.sleep(0.7)
    assert (await stripe_http.admin("GET", f"/accounts/{account_id}"))["status"] == "disconnected"


async def test_reset_drops_connection_without_executing(stripe_http: StripeHttp) -> None:
    """`reset` closes the connection with no answer and leaves the account untouched."""
    account_id = (await stripe_http.account_ids())[0]
    await _script(stripe_http, account_id, {"reset": True})
    with pytest.raises(aiohttp.ClientError):
        await stripe_http.disconnect(account_id)
    assert (await stripe_http.admin("GET", f"/accounts/{account_id}"))["status"] == "active"
    assert (await stripe_http.disconnect(account_id)).status == 200


async def test_reset_after_executing(stripe_http: StripeHttp) -> None:
    """`reset` with `execute: true` disconnects, then drops the answer."""
    account_id = (await stripe_http.account_ids())[0]
    await _script(stripe_http, account_id, {"reset": True, "execute": True})
    with pytest.raises(aiohttp.ClientError):
        await stripe_http.disconnect(account_id)
    assert (await stripe_http.admin("GET", f"/accounts/{account_id}"))["status"] == "disconnected"


async def test_script_for_unknown_account_is_404(stripe_http: StripeHttp) -> None:
    """Scripting an unknown account is refused, and pending scripts can be listed and cleared."""
    with pytest.raises(aiohttp.ClientResponseError) as raised:
        await _script(stripe_http, "fca_missing", {"status": 500})
    assert raised.value.status == 404
    account_id = (await stripe_http.account_ids())[0]
    await _script(stripe_http, account_id, {"status": 500}, {"status": 500})
    assert (await stripe_http.admin("GET", "/script"))["pending"] == {account_id: 2}
    await stripe_http.admin("DELETE", "/script")
    assert (await stripe_http.disconnect(account_id)).status == 200


async def test_bad_script_is_400(stripe_http: StripeHttp) -> None:
    """An outcome with an unknown field is rejected with 400."""
    account_id = (await stripe_http.account_ids())[0]
    with pytest.raises(aiohttp.ClientResponseError) as raised:
        await _script(stripe_http, account_id, {"status": 500, "bogus": 1})
    assert raised.value.status == 400


async def test_reset_after_executing_replays_under_the_key(stripe_http: StripeHttp) -> None:
    """After an executed-then-reset call, a retry with the same key replays the 200; log shows 0."""
    account_id = (await stripe_http.account_ids())[0]
    await _script(stripe_http, account_id, {"reset": True, "execute": True})
    with pytest.raises(aiohttp.ClientError):
        await stripe_http.disconnect(account_id, headers={"Idempotency-Key": "r-1"})
    retry = await stripe_http.disconnect(account_id, headers={"Idempotency-Key": "r-1"})
    assert retry.status == 200
    assert retry.headers["Idempotent-Replayed"] == "true"
    log = (await stripe_http.admin("GET", "/requests"))["data"]
    assert [entry["status"] for entry in log[-2:]] == [0, 200]
