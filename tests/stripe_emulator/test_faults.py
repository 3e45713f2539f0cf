"""Random faults, latency and outages, at start or switched on at run time."""

from __future__ import annotations

import asyncio
import random
import statistics
import time

import aiohttp
import pytest

from stripe_emulator import FaultsConfig, LatencyConfig, OutageWindow, run_emulator
from stripe_emulator.config import LATENCY_PRESETS
from stripe_emulator.faults import FaultInjector
from tests.stripe_emulator.conftest import ACCOUNTS_PATH, StripeHttp, small_config


async def test_error_rate_one_fails_every_call(stripe_http: StripeHttp) -> None:
    """With a 500 rate of 1 every call is a 500 api_error, and it replays under its key."""
    await stripe_http.admin("POST", "/config", {"faults": {"error_rates": {"500": 1.0}}})
    account_id = (await stripe_http.account_ids())[0]
    first = await stripe_http.disconnect(account_id, headers={"Idempotency-Key": "f-1"})
    assert first.status == 500
    assert first.body["error"]["type"] == "api_error"
    await stripe_http.admin("POST", "/config", {"faults": {}})
    replay = await stripe_http.disconnect(account_id, headers={"Idempotency-Key": "f-1"})
    assert replay.status == 500
    assert replay.headers["Idempotent-Replayed"] == "true"
    assert (await stripe_http.admin("GET", f"/accounts/{account_id}"))["status"] == "active"


async def test_injected_503_is_not_stored(stripe_http: StripeHttp) -> None:
    """An injected 503 is not kept: the retry with the same key runs."""
    await stripe_http.admin("POST", "/config", {"faults": {"error_rates": {"503": 1.0}}})
    account_id = (await stripe_http.account_ids())[0]
    assert (
        await stripe_http.disconnect(account_id, headers={"Idempotency-Key": "f-2"})
    ).status == 503
    await stripe_http.admin("POST", "/config", {"faults": {}})
    assert (
        await stripe_http.disconnect(account_id, headers={"Idempotency-Key": "f-2"})
    ).status == 200


async def test_fixed_latency_delays_answers(session: aiohttp.ClientSession) -> None:
    """A fixed latency of 150 ms makes each call take at least that long."""
    faults = FaultsConfig(latency=LatencyConfig(kind="fixed", fixed_ms=150))
    async with run_emulator(small_config(faults=faults)) as emulator:
        stripe_http = StripeHttp(emulator.url, session)
        started = time.monotonic()
        assert (await stripe_http.call("GET", ACCOUNTS_PATH)).status == 200
        assert time.monotonic() - started >= 0.15


async def test_outage_for_seconds_then_recovery(stripe_http: StripeHttp) -> None:
    """During an outage every call answers 503; afterwards calls succeed again."""
    await stripe_http.admin("POST", "/config", {"outage_for_seconds": 0.3})
    reply = await stripe_http.call("GET", ACCOUNTS_PATH)
    assert reply.status == 503
    assert reply.body["error"]["type"] == "api_error"
    await asyncio.sleep(0.35)
    assert (await stripe_http.call("GET", ACCOUNTS_PATH)).status == 200


async def test_outage_window_from_config(session: aiohttp.ClientSession) -> None:
    """An outage window given at start applies between its start and end."""
    now = time.time()
    faults = FaultsConfig(outage=OutageWindow(start=now - 1, end=now + 60))
    async with run_emulator(small_config(faults=faults)) as emulator:
        reply = await StripeHttp(emulator.url, session).call("GET", ACCOUNTS_PATH)
        assert reply.status == 503


async def test_reset_rate_drops_connections(stripe_http: StripeHttp) -> None:
    """With a reset rate of 1 the client sees a connection error, not an answer."""
    await stripe_http.admin("POST", "/config", {"faults": {"reset_rate": 1.0}})
    with pytest.raises(aiohttp.ClientError):
        await stripe_http.call("GET", ACCOUNTS_PATH)


async def test_random_hang_wakes_on_shutdown(session: aiohttp.ClientSession) -> None:
    """A hung call does not hold up stopping the emulator."""
    faults = FaultsConfig(hang_rate=1.0, hang_seconds=30)
    started = time.monotonic()
    async with run_emulator(small_config(faults=faults)) as emulator:
        call = StripeHttp(emulator.url, session).call("GET", ACCOUNTS_PATH)
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(call, timeout=0.3)
    assert time.monotonic() - started < 5


def test_realistic_latency_has_stripe_like_percentiles() -> None:
    """Unit: the `realistic` preset draws p50 about 300 ms and p99 about 1.5 s."""
    injector = FaultInjector(FaultsConfig(latency=LATENCY_PRESETS["realistic"]), random.Random(1))
    samples = sorted(injector.latency() for _ in range(50_000))
    assert statistics.median(samples) == pytest.approx(0.3, rel=0.05)
    assert samples[int(0.99 * len(samples))] == pytest.approx(1.5, rel=0.1)


def test_draws_are_seeded() -> None:
    """Unit: two injectors with the same seed draw the same faults."""
    config = FaultsConfig(error_rates={"500": 0.3, "503": 0.2}, reset_rate=0.1)
    first = FaultInjector(config, random.Random(5))
    second = FaultInjector(config, random.Random(5))
    assert [first.draw() for _ in range(200)] == [second.draw() for _ in range(200)]
    assert any(first.draw() is None for _ in range(50))


async def test_refused_connections_window_then_listening_again(stripe_http: StripeHttp) -> None:
    """`refuse-connections`: the port refuses new connections (and an open keep-alive one is
    dropped) for the window, then the same address answers again."""
    account_id = (await stripe_http.account_ids())[0]
    assert (await stripe_http.call("GET", f"{ACCOUNTS_PATH}/{account_id}")).status == 200
    answer = await stripe_http.admin("POST", "/refuse-connections", {"seconds": 0.6})
    assert answer["until"] > time.time()
    await asyncio.sleep(0.2)
    with pytest.raises(aiohttp.ClientConnectionError):
        await stripe_http.call("GET", f"{ACCOUNTS_PATH}/{account_id}")
    deadline = time.monotonic() + 10
    while True:
        try:
            reply = await stripe_http.call("GET", f"{ACCOUNTS_PATH}/{account_id}")
            break
        except aiohttp.ClientConnectionError:
            assert time.monotonic() < deadline, "the emulator never listened again"
            await asyncio.sleep(0.1)
    assert reply.status == 200


async def test_request_log_names_the_forced_fault(stripe_http: StripeHttp) -> None:
    """A call that met a random fault is logged with it (`fault`: "500"), a normal one with none."""
    account_id = (await stripe_http.account_ids())[0]
    await stripe_http.call("GET", f"{ACCOUNTS_PATH}/{account_id}")
    await stripe_http.admin("POST", "/config", {"faults": {"error_rates": {"500": 1.0}}})
    failed = await stripe_http.call("GET", f"{ACCOUNTS_PATH}/{account_id}")
    assert failed.status == 500
    assert failed.headers["Stripe-Should-Retry"] == "false"
    log = (await stripe_http.admin("GET", "/requests"))["data"]
    assert [entry["fault"] for entry in log[-2:]] == [None, "500"]
