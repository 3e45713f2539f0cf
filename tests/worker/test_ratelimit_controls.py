"""The limiter's safety controls: fail closed without Redis, the kill switch, the account lock,
and budget validation."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

import pytest
import structlog
from pydantic import SecretStr
from redis.asyncio import Redis

from devenv.redis_server import start_redis
from tests.worker.ratelimit_support import (  # noqa: F401 - fixtures register by import
    rl_redis_fixture,
    rl_server_fixture,
)
from worker.ratelimit import (
    PAUSE_KEY,
    AccountBusy,
    LimiterTimeout,
    PauseState,
    RateBudget,
    RateLimiter,
    account_lock,
    get_pause,
    pause,
    resume,
)
from worker.settings import WorkerSettings

BUDGET = RateBudget(
    endpoint_rates={"disconnect": 25.0, "list": 25.0}, global_rate=50.0, max_in_flight=5
)


async def test_acquire_fails_closed_while_redis_is_down() -> None:
    """With Redis gone, acquire grants nothing and logs limiter.redis_unavailable; once Redis is
    back on the same address, the same call completes."""
    server = start_redis()
    client = Redis.from_url(server.url)
    try:
        limiter = RateLimiter(client, BUDGET, max_backoff_seconds=0.3)
        await (await limiter.acquire("disconnect")).release()
        server.stop()
        with structlog.testing.capture_logs() as logs:
            waiter = asyncio.create_task(limiter.acquire("disconnect"))
            await asyncio.sleep(2.0)
            assert not waiter.done()
            server = start_redis(port=server.port)
            permit = await asyncio.wait_for(waiter, timeout=5.0)
        await permit.release()
        unavailable = [e for e in logs if e["event"] == "limiter.redis_unavailable"]
        assert unavailable
        assert all(e["log_level"] == "warning" for e in unavailable)
    finally:
        await client.aclose()
        server.stop()


async def test_acquire_waits_while_paused_and_proceeds_after_resume(rl_redis: Redis) -> None:
    """No permit is granted while fcd:paused exists; resume releases the waiting caller."""
    limiter = RateLimiter(rl_redis, BUDGET, pause_poll_seconds=0.1)
    state = await pause(rl_redis, "alice", "stripe incident", "cli")
    waiter = asyncio.create_task(limiter.acquire("disconnect"))
    await asyncio.sleep(0.5)
    assert not waiter.done()
    assert (await limiter.snapshot()).paused == state
    assert await resume(rl_redis, "bob", "incident over") == state
    permit = await asyncio.wait_for(waiter, timeout=1.0)
    await permit.release()
    assert await get_pause(rl_redis) is None
    assert await resume(rl_redis, "bob", "again") is None


async def test_exempt_endpoint_runs_while_paused(rl_redis: Redis) -> None:
    """An endpoint listed in pause_exempt_endpoints is granted during a pause; others are not."""
    budget = RateBudget(
        endpoint_rates={"disconnect": 25.0, "list": 25.0},
        global_rate=50.0,
        max_in_flight=5,
        pause_exempt_endpoints=frozenset({"list"}),
    )
    limiter = RateLimiter(rl_redis, budget, pause_poll_seconds=0.1)
    await pause(rl_redis, "alice", "drill", "cli")
    await (await limiter.acquire("list", timeout=1.0)).release()
    with pytest.raises(LimiterTimeout):
        await limiter.acquire("disconnect", timeout=0.3)


async def test_an_unreadable_pause_flag_still_pauses(rl_redis: Redis) -> None:
    """A flag whose JSON is corrupt is still a pause (fail closed), and reads as one."""
    limiter = RateLimiter(rl_redis, BUDGET, pause_poll_seconds=0.1)
    await rl_redis.set(PAUSE_KEY, "not json")
    with pytest.raises(LimiterTimeout):
        await limiter.acquire("disconnect", timeout=0.3)
    state = await get_pause(rl_redis)
    assert state is not None
    assert state.operator == "unknown"
    assert "not json" in state.reason


def test_pause_state_round_trips_through_json() -> None:
    """The stored flag carries operator, reason, time and source unchanged."""
    state = PauseState("alice", "too many 429s", datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC), "cli")
    assert PauseState.from_json(state.to_json()) == state
    assert PauseState.from_json(state.to_json().encode()) == state


async def test_account_lock_admits_one_holder(rl_redis: Redis) -> None:
    """While one worker holds an account's lock, another is refused at once; after release the
    account is free again."""
    async with account_lock(rl_redis, "fca_1"):
        with pytest.raises(AccountBusy) as refused:
            async with account_lock(rl_redis, "fca_1"):
                pass
        assert refused.value.account_id == "fca_1"
        async with account_lock(rl_redis, "fca_2"):
            pass
    async with account_lock(rl_redis, "fca_1"):
        pass


async def test_expired_account_lock_cannot_release_its_successor(rl_redis: Redis) -> None:
    """A holder whose lock expired does not delete the lock a second worker took since."""
    first = account_lock(rl_redis, "fca_1", ttl_seconds=0.1)
    await first.acquire()
    await asyncio.sleep(0.2)
    second = account_lock(rl_redis, "fca_1", ttl_seconds=5.0)
    await second.acquire()
    assert await first.release() is False
    assert await rl_redis.exists(second.key) == 1
    assert await second.release() is True


def test_budget_rejects_impossible_values() -> None:
    """A budget that could never grant, or would grant unboundedly, is refused with every
    problem named."""
    with pytest.raises(ValueError, match=r"global_rate must be > 0.*burst must be >= 1"):
        RateBudget(endpoint_rates={"disconnect": 1.0}, global_rate=0, max_in_flight=1, burst=0.5)
    with pytest.raises(ValueError, match="at least one endpoint"):
        RateBudget(endpoint_rates={}, global_rate=1.0, max_in_flight=1)


def test_stripe_budget_leaves_headroom() -> None:
    """The Stripe preset is Stripe's published limits times the headroom."""
    live = RateBudget.for_stripe(live_mode=True, headroom=0.8)
    test_mode = RateBudget.for_stripe(live_mode=False, headroom=0.8)
    assert live.global_rate == pytest.approx(80.0)
    assert test_mode.global_rate == pytest.approx(20.0)
    assert dict(live.endpoint_rates) == pytest.approx(
        {"disconnect": 20.0, "list": 20.0, "retrieve": 20.0}
    )


def test_worker_budget_uses_a_sandbox_whole_and_leaves_live_headroom() -> None:
    """Unset, the global budget is a sandbox's whole 25/s (so one call per disconnect can run at
    a 24/s setting) and 80 of live mode's shared 100/s; every rate is paced by the margin and
    the disconnect endpoint is the one reads never delay."""
    test_key = WorkerSettings(stripe_api_key=SecretStr("sk_test_x"), stripe_rate_limit=24)
    live_key = WorkerSettings(stripe_api_key=SecretStr("sk_live_x"), stripe_rate_limit=24)
    sandbox, live = test_key.rate_budget(), live_key.rate_budget()
    assert sandbox.global_rate == pytest.approx(25 * 0.975)
    assert live.global_rate == pytest.approx(80 * 0.975)
    assert sandbox.endpoint_rates["disconnect"] == pytest.approx(24 * 0.975)
    assert sandbox.protected_endpoint == live.protected_endpoint == "disconnect"
