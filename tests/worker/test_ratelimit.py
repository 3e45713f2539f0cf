"""The shared limiter against a real Redis: smoothness, shared budgets, leases, adaptation, priority.

Figures measured here are printed (``pytest -s`` shows them) so the report can quote them.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from redis.asyncio import Redis

from devenv.redis_server import PrivateRedis
from tests.worker.ratelimit_load import achieved_rate, hammer, max_in_window
from tests.worker.ratelimit_support import (  # noqa: F401 - fixtures register by import
    book_global_budget_until,
    rl_redis_fixture,
    rl_server_fixture,
)
from worker.gate import CallGate
from worker.ratelimit import LimiterTimeout, Priority, RateBudget, RateLimiter, UnknownEndpoint

REPO_ROOT = Path(__file__).resolve().parents[2]


def budget(
    rate: float = 50.0, *, global_rate: float = 1000.0, max_in_flight: int = 100, **extra: Any
) -> RateBudget:
    """A budget with one ``disconnect`` endpoint and a generous global rate unless told."""
    return RateBudget(
        endpoint_rates={"disconnect": rate, "list": rate},
        global_rate=global_rate,
        max_in_flight=max_in_flight,
        **extra,
    )


async def test_grants_are_smooth_and_use_the_budget(rl_redis: Redis) -> None:
    """At 50/s, 20 eager callers are never booked more than R + burst grants in any sliding
    second, nor a clump in any 100 ms, and still get at least 95 % of the rate (booked slots,
    Redis's clock: a busy test machine delays the callers, not what the limiter granted)."""
    limiter = RateLimiter(rl_redis, budget(50.0))
    times = await hammer(limiter, "disconnect", workers=20, duration=2.0, booked=True)
    per_second, per_100ms = max_in_window(times, 1.0), max_in_window(times, 0.1)
    rate = achieved_rate(times)
    print(f"\nsmooth: {len(times)} grants, {rate:.2f}/s, max/1s={per_second} max/100ms={per_100ms}")
    assert per_second <= 50 + 1
    assert per_100ms <= 5 + 1
    assert rate >= 0.95 * 50


async def test_global_budget_binds_across_endpoints(rl_redis: Redis) -> None:
    """Two endpoints at 50/s each under a 40/s global budget together are booked within 40/s."""
    limiter = RateLimiter(rl_redis, budget(50.0, global_rate=40.0))
    disconnects, lists = await asyncio.gather(
        hammer(limiter, "disconnect", workers=10, duration=1.5, booked=True),
        hammer(limiter, "list", workers=10, duration=1.5, booked=True),
    )
    times = sorted(disconnects + lists)
    print(f"\nglobal: {achieved_rate(times):.2f}/s, max/1s={max_in_window(times, 1.0)}")
    assert max_in_window(times, 1.0) <= 40 + 1
    # A floor, not the figure: how close the clients come to the budget depends on how often
    # this (busy, 2-core) machine lets 20 coroutines ask; ``bench/ratelimit.py`` shows 97.5 %.
    # 75 % still tells a limiter that books the global budget from being one that halves it.
    assert achieved_rate(times) >= 0.75 * 40
    assert disconnects and lists


async def test_two_processes_share_one_budget(rl_server: PrivateRedis, rl_redis: Redis) -> None:
    """Two worker processes hammering one 40/s budget are granted 40/s between them, not 80/s:
    the slots the limiter booked for both (Redis's clock, not the clients') never put more than
    40 + burst into any one-second window, and every grant either got was booked in the shared
    budget. (How fast the clients actually went is ``bench/ratelimit.py``'s business.)"""
    start_at = time.time() + 1.5  # both start together, after interpreter start-up
    args = [rl_server.url, str(start_at), "2.0", "40"]
    processes = [
        await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "tests.worker.ratelimit_load",
            *args,
            cwd=REPO_ROOT,
            stdout=asyncio.subprocess.PIPE,
        )
        for _ in range(2)
    ]
    outputs = [await process.communicate() for process in processes]
    assert [process.returncode for process in processes] == [0, 0]
    per_process = [json.loads(stdout) for stdout, _ in outputs]
    booked = sorted(per_process[0] + per_process[1])
    per_second = max_in_window(booked, 1.0)
    print(f"\ntwo processes: {[len(p) for p in per_process]} grants, max/1s={per_second}")
    assert all(per_process)
    assert per_second <= 40 + 1
    spacing = min(b - a for a, b in itertools.pairwise(booked))
    assert spacing >= 1 / 40 - 1e-6  # GCRA with burst 1: booked slots at least 1/rate apart
    stats = await rl_redis.hgetall("fcd:rl:stats")  # type: ignore[misc]
    assert int(stats[b"grants"]) == len(booked)


async def test_in_flight_never_exceeds_the_cap(rl_redis: Redis) -> None:
    """With max_in_flight=3 and ten callers holding each permit 50 ms, at most three calls
    are ever in flight, and the cap is actually reached."""
    limiter = RateLimiter(rl_redis, budget(200.0, global_rate=200.0, max_in_flight=3))
    in_flight = peak = 0
    stop_at = time.monotonic() + 1.0

    async def caller() -> None:
        nonlocal in_flight, peak
        while time.monotonic() < stop_at:
            async with limiter.slot("disconnect"):
                in_flight += 1
                peak = max(peak, in_flight)
                await asyncio.sleep(0.05)
                in_flight -= 1

    await asyncio.gather(*(caller() for _ in range(10)))
    assert peak == 3
    assert (await limiter.snapshot()).in_flight == 0


async def test_a_dead_holders_lease_expires(rl_redis: Redis) -> None:
    """A permit never released (its worker died) stops counting after lease_seconds."""
    limiter = RateLimiter(rl_redis, budget(max_in_flight=1, lease_seconds=0.5))
    abandoned = await limiter.acquire("disconnect")
    started = time.monotonic()
    async with await limiter.acquire("disconnect"):
        waited = time.monotonic() - started
    assert 0.4 <= waited < 1.5
    assert abandoned.lease_id


async def test_rate_drops_after_a_429_then_recovers(rl_redis: Redis) -> None:
    """report_rate_limited halves the shared rate at once; it climbs back additively."""
    limiter = RateLimiter(rl_redis, budget(40.0, recovery_per_second=0.25))
    assert await limiter.report_rate_limited("disconnect", "endpoint-rate") == pytest.approx(0.5)
    started = time.time()
    slow = await hammer(limiter, "disconnect", workers=10, duration=0.5)
    slow_count = sum(1 for t in slow if t < started + 0.5)
    await asyncio.sleep(max(0.0, started + 2.1 - time.time()))
    assert (await limiter.snapshot()).rate_factor == 1.0
    started = time.time()
    fast = await hammer(limiter, "disconnect", workers=10, duration=0.5)
    fast_count = sum(1 for t in fast if t < started + 0.5)
    print(f"\nadaptive: {slow_count} grants in 0.5 s after a 429, {fast_count} once recovered")
    assert slow_count <= 0.7 * fast_count
    assert fast_count >= 0.9 * 40 * 0.5


async def test_a_burst_of_429s_decreases_once_and_the_floor_holds(rl_redis: Redis) -> None:
    """429s seen by many workers within the cooldown count as one decrease; repeated decreases
    stop at min_rate_factor."""
    limiter = RateLimiter(rl_redis, budget(min_rate_factor=0.2, recovery_per_second=0.0))
    factors = await asyncio.gather(*(limiter.report_rate_limited("list") for _ in range(5)))
    assert sorted(factors) == pytest.approx([0.5] * 5)
    no_cooldown = RateLimiter(rl_redis, budget(min_rate_factor=0.2, decrease_cooldown_seconds=0))
    for _ in range(4):
        await no_cooldown.report_rate_limited("list")
    snapshot = await limiter.snapshot()
    assert snapshot.rate_factor == pytest.approx(0.2)
    assert snapshot.rate_limited_reports == 9
    assert snapshot.effective_endpoint_rates["list"] == pytest.approx(10.0)


async def test_urgent_callers_are_served_before_bulk(rl_redis: Redis) -> None:
    """Bulk callers already waiting yield to urgent callers who arrive later."""
    limiter = RateLimiter(rl_redis, budget(20.0, global_rate=20.0))
    await book_global_budget_until(rl_redis, 0.6)
    served: list[tuple[float, Priority]] = []

    async def caller(priority: Priority) -> None:
        permit = await limiter.acquire("disconnect", priority=priority)
        served.append((time.monotonic(), priority))
        await permit.release()

    bulk = [asyncio.create_task(caller("bulk")) for _ in range(6)]
    await asyncio.sleep(0.1)
    urgent = [asyncio.create_task(caller("urgent")) for _ in range(6)]
    await asyncio.gather(*bulk, *urgent)
    order = [priority for _, priority in sorted(served)]
    assert order == ["urgent"] * 6 + ["bulk"] * 6


async def test_timeout_and_cancellation_leave_nothing_behind(rl_redis: Redis) -> None:
    """A caller that times out or is cancelled holds no lease and no queue place afterwards."""
    limiter = RateLimiter(rl_redis, budget(max_in_flight=1))
    held = await limiter.acquire("disconnect")
    with pytest.raises(LimiterTimeout):
        await limiter.acquire("disconnect", timeout=0.3)
    snapshot = await limiter.snapshot()
    assert (snapshot.in_flight, snapshot.urgent_waiting) == (1, 0)
    await held.release()

    await book_global_budget_until(rl_redis, 0.2)  # the next caller books a slot and sleeps
    sleeper = asyncio.create_task(limiter.acquire("disconnect"))
    await asyncio.sleep(0.05)
    assert (await limiter.snapshot()).in_flight == 1
    sleeper.cancel()
    with pytest.raises(asyncio.CancelledError):
        await sleeper
    assert (await limiter.snapshot()).in_flight == 0


async def test_snapshot_counts_grants_and_waits(rl_redis: Redis) -> None:
    """Every grant and every sleep is counted in Redis for ``fcd queue``."""
    limiter = RateLimiter(rl_redis, budget(20.0))
    for _ in range(3):
        await (await limiter.acquire("disconnect")).release()
    snapshot = await limiter.snapshot()
    assert snapshot.grants == 3
    assert snapshot.waits >= 2
    assert 0.05 < snapshot.wait_seconds < 0.2
    assert snapshot.paused is None


async def test_unknown_endpoint_is_refused(rl_redis: Redis) -> None:
    """An endpoint the budget does not name is a programming error, raised before any wait."""
    limiter = RateLimiter(rl_redis, budget())
    with pytest.raises(UnknownEndpoint):
        await limiter.acquire("refund")
    with pytest.raises(ValueError, match="unknown endpoint"):
        await limiter.report_rate_limited("refund")


async def test_limiter_is_a_call_gate(rl_redis: Redis) -> None:
    """RateLimiter stands wherever the worker expects a ``CallGate``; a slot holds one lease."""
    limiter = RateLimiter(rl_redis, budget())
    gate: CallGate = limiter
    async with gate.slot("disconnect"):
        assert (await limiter.snapshot()).in_flight == 1
    assert (await limiter.snapshot()).in_flight == 0
