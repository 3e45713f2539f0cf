"""Rate and concurrency limiters, and the per-account lock: the 429s a client must tell apart."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import aiohttp

from stripe_emulator import LatencyConfig, LimitsConfig, run_emulator
from stripe_emulator.config import FaultsConfig
from stripe_emulator.limits import Limiter, LimitReason, TokenBucket
from tests.stripe_emulator.conftest import ACCOUNTS_PATH, LIVE_KEY, Reply, StripeHttp, small_config

GENEROUS = {"endpoint_rate": 1000.0, "global_rate_test": 1000.0, "global_rate_live": 1000.0}


async def _burst(stripe_http: StripeHttp, count: int, **kwargs: Any) -> list[Reply]:
    return [await stripe_http.call("GET", ACCOUNTS_PATH, **kwargs) for _ in range(count)]


async def test_endpoint_rate_limit(session: aiohttp.ClientSession) -> None:
    """Past the endpoint's budget calls get 429 rate_limit with reason endpoint-rate."""
    # capacity 5, refilled at 1/s: robust to a slow machine
    limits = LimitsConfig(**{**GENEROUS, "endpoint_rate": 1.0, "burst_seconds": 5.0})
    async with run_emulator(small_config(limits=limits)) as emulator:
        stripe_http = StripeHttp(emulator.url, session)
        replies = await _burst(stripe_http, 8)
        assert [r.status for r in replies][:5] == [200] * 5
        limited = [r for r in replies if r.status == 429]
        assert len(limited) >= 2
        assert limited[0].body["error"]["code"] == "rate_limit"
        assert limited[0].headers["Stripe-Rate-Limited-Reason"] == "endpoint-rate"
        other = await stripe_http.call("GET", f"{ACCOUNTS_PATH}/fca_x")
        assert other.status == 404  # another endpoint has its own budget
        log = (await stripe_http.admin("GET", "/requests"))["data"]
        assert "endpoint-rate" in {entry["limiter"] for entry in log}


async def test_global_rate_limit_per_mode(session: aiohttp.ClientSession) -> None:
    """The global budget is shared by all endpoints, with separate test and live buckets."""
    limits = LimitsConfig(
        **{**GENEROUS, "global_rate_test": 0.5, "global_rate_live": 1.0, "burst_seconds": 6.0}
    )
    async with run_emulator(small_config(limits=limits)) as emulator:
        stripe_http = StripeHttp(emulator.url, session)
        replies = await _burst(stripe_http, 5)
        assert [r.status for r in replies][:3] == [200] * 3
        assert replies[-1].headers["Stripe-Rate-Limited-Reason"] == "global-rate"
        live = await _burst(stripe_http, 6, api_key=LIVE_KEY)
        assert [r.status for r in live][:5] == [200] * 5


async def _concurrent(stripe_http: StripeHttp, count: int) -> list[Reply]:
    return await asyncio.gather(*(stripe_http.call("GET", ACCOUNTS_PATH) for _ in range(count)))


async def test_global_concurrency_limit(session: aiohttp.ClientSession) -> None:
    """More calls in flight than max_concurrency get 429 global-concurrency."""
    limits = LimitsConfig(**GENEROUS, max_concurrency=2)
    faults = FaultsConfig(latency=LatencyConfig(kind="fixed", fixed_ms=300))
    async with run_emulator(small_config(limits=limits, faults=faults)) as emulator:
        replies = await _concurrent(StripeHttp(emulator.url, session), 5)
        assert sorted(r.status for r in replies) == [200, 200, 429, 429, 429]
        reasons = {r.headers.get("Stripe-Rate-Limited-Reason") for r in replies if r.status == 429}
        assert reasons == {"global-concurrency"}


async def test_endpoint_concurrency_limit(session: aiohttp.ClientSession) -> None:
    """An endpoint concurrency cap answers 429 endpoint-concurrency."""
    limits = LimitsConfig(**GENEROUS, endpoint_max_concurrency=1)
    faults = FaultsConfig(latency=LatencyConfig(kind="fixed", fixed_ms=300))
    async with run_emulator(small_config(limits=limits, faults=faults)) as emulator:
        replies = await _concurrent(StripeHttp(emulator.url, session), 3)
        assert sorted(r.status for r in replies) == [200, 429, 429]
        limited = [r for r in replies if r.status == 429]
        assert limited[0].headers["Stripe-Rate-Limited-Reason"] == "endpoint-concurrency"


async def test_overlapping_disconnects_of_one_account_get_lock_timeout(
    stripe_http: StripeHttp,
) -> None:
    """A second disconnect while the first runs gets 429 lock_timeout, should-retry, no reason."""
    account_id = (await stripe_http.account_ids())[0]
    script = {"account_id": account_id, "responses": [{"hang_seconds": 0.4}]}
    await stripe_http.admin("POST", "/script", script)
    first = asyncio.create_task(stripe_http.disconnect(account_id))
    await asyncio.sleep(0.1)
    second = await stripe_http.disconnect(account_id)
    assert second.status == 429
    assert second.body["error"]["code"] == "lock_timeout"
    assert second.headers["Stripe-Should-Retry"] == "true"
    assert "Stripe-Rate-Limited-Reason" not in second.headers
    assert (await first).status == 200


def test_token_bucket_refills_continuously() -> None:
    """Unit: a drained bucket admits again after 1/rate seconds, not at a window edge."""
    bucket = TokenBucket(rate=20.0, capacity=2.0)
    assert bucket.take() and bucket.take()
    assert not bucket.take()
    time.sleep(0.06)
    assert bucket.take()
    assert not bucket.take()


def test_limiter_release_frees_a_concurrency_slot() -> None:
    """Unit: a released call frees its slot for the next one."""
    limiter = Limiter(LimitsConfig(**GENEROUS, max_concurrency=1))
    assert limiter.admit("list", False) is None
    assert limiter.admit("list", False) is LimitReason.GLOBAL_CONCURRENCY
    limiter.release("list")
    assert limiter.admit("list", False) is None
