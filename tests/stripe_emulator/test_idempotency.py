"""Idempotency keys on POST: replay, mismatch, in-flight conflict, what is stored, scope, TTL."""

from __future__ import annotations

import asyncio

import aiohttp
import pytest

from stripe_emulator import run_emulator
from stripe_emulator.idempotency import IdempotencyStore, StoredResponse
from tests.stripe_emulator.conftest import LIVE_KEY, StripeHttp, small_config


async def test_replay_returns_stored_answer_with_header(stripe_http: StripeHttp) -> None:
    """The same key again replays the first answer with Idempotent-Replayed: true."""
    account_id = (await stripe_http.account_ids())[0]
    first = await stripe_http.disconnect(account_id, headers={"Idempotency-Key": "k-1"})
    second = await stripe_http.disconnect(account_id, headers={"Idempotency-Key": "k-1"})
    assert first.status == second.status == 200
    assert second.body == first.body
    assert second.headers["Idempotent-Replayed"] == "true"
    assert "Idempotent-Replayed" not in first.headers
    assert second.headers["Original-Request"] == first.headers["Request-Id"]
    log = (await stripe_http.admin("GET", "/requests"))["data"]
    assert [entry["replayed"] for entry in log[-2:]] == [False, True]


async def test_key_reused_on_another_account_is_idempotency_error(stripe_http: StripeHttp) -> None:
    """Reusing a key on another path is a 400 idempotency_error."""
    first, second = (await stripe_http.account_ids())[:2]
    await stripe_http.disconnect(first, headers={"Idempotency-Key": "k-2"})
    reply = await stripe_http.disconnect(second, headers={"Idempotency-Key": "k-2"})
    assert reply.status == 400
    assert reply.body["error"]["type"] == "idempotency_error"


async def test_key_reused_with_other_parameters_is_idempotency_error(
    stripe_http: StripeHttp,
) -> None:
    """Reusing a key with different form parameters is a 400 idempotency_error."""
    account_id = (await stripe_http.account_ids())[0]
    await stripe_http.disconnect(account_id, headers={"Idempotency-Key": "k-3"})
    reply = await stripe_http.disconnect(
        account_id, headers={"Idempotency-Key": "k-3"}, form={"expand[]": "balance"}
    )
    assert reply.status == 400
    assert reply.body["error"]["type"] == "idempotency_error"


async def test_same_key_in_flight_is_409(stripe_http: StripeHttp) -> None:
    """While the first call with a key still runs, the same key gets 409."""
    account_id = (await stripe_http.account_ids())[0]
    await stripe_http.admin(
        "POST", "/script", {"account_id": account_id, "responses": [{"hang_seconds": 0.5}]}
    )
    headers = {"Idempotency-Key": "k-4"}
    slow = asyncio.create_task(stripe_http.disconnect(account_id, headers=headers))
    await asyncio.sleep(0.1)
    reply = await stripe_http.disconnect(account_id, headers=headers)
    assert reply.status == 409
    assert (await slow).status == 200
    replay = await stripe_http.disconnect(account_id, headers=headers)
    assert replay.headers["Idempotent-Replayed"] == "true"


async def test_scripted_500_is_stored_and_replayed(stripe_http: StripeHttp) -> None:
    """A 500 under a key is replayed for that key, while a new key runs the call."""
    account_id = (await stripe_http.account_ids())[0]
    script = {"account_id": account_id, "responses": [{"status": 500}]}
    await stripe_http.admin("POST", "/script", script)
    first = await stripe_http.disconnect(account_id, headers={"Idempotency-Key": "k-5"})
    again = await stripe_http.disconnect(account_id, headers={"Idempotency-Key": "k-5"})
    assert first.status == again.status == 500
    assert again.headers["Idempotent-Replayed"] == "true"
    fresh = await stripe_http.disconnect(account_id, headers={"Idempotency-Key": "k-6"})
    assert fresh.status == 200


async def test_429_is_never_stored(stripe_http: StripeHttp) -> None:
    """A 429 under a key is not kept: the retry with the same key runs the call."""
    account_id = (await stripe_http.account_ids())[0]
    script = {"account_id": account_id, "responses": [{"status": 429}]}
    await stripe_http.admin("POST", "/script", script)
    first = await stripe_http.disconnect(account_id, headers={"Idempotency-Key": "k-7"})
    retry = await stripe_http.disconnect(account_id, headers={"Idempotency-Key": "k-7"})
    assert first.status == 429
    assert retry.status == 200
    assert "Idempotent-Replayed" not in retry.headers


async def test_keys_are_scoped_per_api_key(stripe_http: StripeHttp) -> None:
    """The same idempotency key under another API key is a separate request."""
    first, second = (await stripe_http.account_ids())[:2]
    await stripe_http.disconnect(first, headers={"Idempotency-Key": "shared"})
    reply = await stripe_http.disconnect(
        second, headers={"Idempotency-Key": "shared"}, api_key=LIVE_KEY
    )
    assert reply.status == 200
    assert reply.body["id"] == second


async def test_stored_answer_expires_after_ttl(session: aiohttp.ClientSession) -> None:
    """After the TTL a key is forgotten and the call runs again."""
    async with run_emulator(small_config(idempotency_ttl_seconds=0.2)) as emulator:
        stripe_http = StripeHttp(emulator.url, session)
        account_id = (await stripe_http.account_ids())[0]
        await stripe_http.disconnect(account_id, headers={"Idempotency-Key": "k-8"})
        await asyncio.sleep(0.3)
        reply = await stripe_http.disconnect(account_id, headers={"Idempotency-Key": "k-8"})
        assert "Idempotent-Replayed" not in reply.headers


def test_store_expires_oldest_first_and_abandon_frees_key() -> None:
    """Unit: expiry pops old entries; abandon frees a reserved key; finish makes it replay."""
    store = IdempotencyStore(ttl=-1.0)
    assert store.begin("k", "a", ("POST", "/x", b"")).run
    assert store.begin("k", "b", ("POST", "/x", b"")).run
    assert len(store) == 1  # "a" had already expired when "b" arrived
    store = IdempotencyStore(ttl=60.0)
    fingerprint = ("POST", "/x", b"")
    assert store.begin("k", "a", fingerprint).run
    assert store.begin("k", "a", fingerprint).conflict
    store.abandon("k", "a")
    assert store.begin("k", "a", fingerprint).run
    store.finish("k", "a", StoredResponse(200, b"{}", {}, "req_1"))
    assert store.begin("k", "a", fingerprint).replay is not None
    assert store.begin("k", "a", ("POST", "/y", b"")).mismatch


async def test_a_400_of_an_executing_endpoint_is_stored_and_replayed(
    session: aiohttp.ClientSession,
) -> None:
    """Stripe keeps whatever an executing request produced: the second disconnect of a
    disconnected account (400 mode) is replayed under its key with Idempotent-Replayed."""
    async with run_emulator(small_config(already_disconnected_mode="400")) as emulator:
        stripe_http = StripeHttp(emulator.url, session)
        account_id = (await stripe_http.account_ids(status="disconnected"))[0]
        first = await stripe_http.disconnect(account_id, headers={"Idempotency-Key": "k-40"})
        again = await stripe_http.disconnect(account_id, headers={"Idempotency-Key": "k-40"})
        assert first.status == again.status == 400
        assert "Idempotent-Replayed" not in first.headers
        assert again.headers["Idempotent-Replayed"] == "true"
        assert again.headers["Original-Request"] == first.headers["Request-Id"]
        assert again.body == first.body


@pytest.mark.parametrize("status", [402, 424, 400])
async def test_scripted_errors_of_an_executing_endpoint_are_stored(
    stripe_http: StripeHttp, status: int
) -> None:
    """A 402, 424 or 400 the endpoint produced is replayed for its key; a new key runs again."""
    account_id = (await stripe_http.account_ids())[0]
    script = {"account_id": account_id, "responses": [{"status": status}]}
    await stripe_http.admin("POST", "/script", script)
    key = f"k-s{status}"
    first = await stripe_http.disconnect(account_id, headers={"Idempotency-Key": key})
    again = await stripe_http.disconnect(account_id, headers={"Idempotency-Key": key})
    assert first.status == again.status == status
    assert again.headers["Idempotent-Replayed"] == "true"
    fresh = await stripe_http.disconnect(account_id, headers={"Idempotency-Key": key + "-2"})
    assert fresh.status == 200


async def test_validation_errors_and_lock_timeouts_are_not_stored(stripe_http: StripeHttp) -> None:
    """An unknown parameter (validation before execution) and a lock_timeout (a conflict with a
    request executing concurrently) leave the key free: the same key then runs the call. The
    lock_timeout says Stripe-Should-Retry: true."""
    account_id, other = (await stripe_http.account_ids())[:2]
    bad = await stripe_http.disconnect(
        account_id, headers={"Idempotency-Key": "k-v"}, form={"bogus": "1"}
    )
    assert bad.status == 400 and bad.body["error"]["param"] == "bogus"
    retried = await stripe_http.disconnect(
        account_id, headers={"Idempotency-Key": "k-v"}, form={"bogus": "1"}
    )
    assert "Idempotent-Replayed" not in retried.headers
    script = {"account_id": other, "responses": [{"hang_seconds": 0.5}]}
    await stripe_http.admin("POST", "/script", script)
    slow = asyncio.create_task(stripe_http.disconnect(other, headers={"Idempotency-Key": "k-a"}))
    await asyncio.sleep(0.1)
    locked = await stripe_http.disconnect(other, headers={"Idempotency-Key": "k-b"})
    assert locked.status == 429 and locked.body["error"]["code"] == "lock_timeout"
    assert locked.headers["Stripe-Should-Retry"] == "true"
    assert "Stripe-Rate-Limited-Reason" not in locked.headers
    assert (await slow).status == 200
    after = await stripe_http.disconnect(other, headers={"Idempotency-Key": "k-b"})
    assert after.status == 200 and "Idempotent-Replayed" not in after.headers


async def test_a_500_says_should_retry_false_and_its_replay_too(stripe_http: StripeHttp) -> None:
    """Stripe sends Stripe-Should-Retry: false with most 500s (stripe-python's comment: the
    idempotency layer would replay it anyway); the replay carries the same header."""
    account_id = (await stripe_http.account_ids())[0]
    script = {"account_id": account_id, "responses": [{"status": 500}]}
    await stripe_http.admin("POST", "/script", script)
    first = await stripe_http.disconnect(account_id, headers={"Idempotency-Key": "k-500"})
    again = await stripe_http.disconnect(account_id, headers={"Idempotency-Key": "k-500"})
    assert first.status == again.status == 500
    assert first.headers["Stripe-Should-Retry"] == "false"
    assert again.headers["Stripe-Should-Retry"] == "false"
    assert again.headers["Idempotent-Replayed"] == "true"
