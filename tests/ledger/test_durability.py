"""Start-up refusals and FCD_DURABILITY (ledger.durability) against private redis-servers
configured the way production ones go wrong: an evicting maxmemory-policy, CONFIG GET refused,
no way to confirm a write, a replica that goes away."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from collections.abc import Iterator
from typing import Any

import pytest
from redis.asyncio import Redis
from structlog.testing import capture_logs

from devenv.redis_server import PrivateRedis, start_redis
from ledger.durability import (
    METHOD_ALWAYS,
    METHOD_NONE,
    METHOD_WAIT,
    METHOD_WAITAOF,
    NotDurable,
    RedisRefused,
    check_redis,
    choose_method,
)
from ledger.settings import BaseServiceSettings, Durability


@pytest.fixture
def servers() -> Iterator[list[PrivateRedis]]:
    """Servers a test starts; all stopped afterwards."""
    started: list[PrivateRedis] = []
    yield started
    for server in started:
        server.stop()


def start(servers: list[PrivateRedis], *args: str) -> PrivateRedis:
    server = start_redis(extra_args=args)
    servers.append(server)
    return server


def settings_for(url: str, **extra: Any) -> BaseServiceSettings:
    return BaseServiceSettings(redis_url=url, **extra)


def test_choose_method_prefers_waitaof_then_wait_then_always() -> None:
    """The order in the README: WAITAOF (7.2+, AOF on), WAIT (a replica), appendfsync always."""
    assert choose_method("7.2.4", "yes", "everysec", 0) == METHOD_WAITAOF
    assert choose_method("7.2.4", "no", "everysec", 1) == METHOD_WAIT
    assert choose_method("7.0.15", "yes", "everysec", 1) == METHOD_WAIT
    assert choose_method("7.0.15", "yes", "always", 0) == METHOD_ALWAYS
    assert choose_method("7.0.15", "yes", "everysec", 0) is None
    assert choose_method("6.2.14", "no", "always", 0) is None


@pytest.mark.integration
async def test_an_evicting_redis_is_refused_naming_the_setting(
    servers: list[PrivateRedis],
) -> None:
    """allkeys-lru may evict a ledger key: refused, with the setting and the fix."""
    server = start(servers, "--maxmemory-policy", "allkeys-lru")
    redis = Redis.from_url(server.url)
    try:
        with pytest.raises(RedisRefused) as caught:
            await check_redis(redis, settings_for(server.url), "worker:urgent")
        assert "maxmemory-policy is allkeys-lru" in str(caught.value)
        assert "noeviction" in str(caught.value)
        # fcd submit does not check eviction (it only submits)
        plan = await check_redis(redis, settings_for(server.url), "cli", eviction=False)
        assert plan.method == METHOD_NONE
    finally:
        await redis.aclose()


@pytest.mark.integration
async def test_config_get_refused_falls_back_to_info_then_warns(
    servers: list[PrivateRedis],
) -> None:
    """Where CONFIG is not permitted the policy comes from INFO memory; where neither answers
    the process starts with a warning instead of refusing."""
    server = start(servers, "--maxmemory-policy", "volatile-lru")
    admin = Redis.from_url(server.url)
    try:
        await admin.execute_command("ACL", "SETUSER", "noconfig", "on", ">pw-noconfig", "~*", "&*", "+@all", "-config")  # fmt: skip
        await admin.execute_command("ACL", "SETUSER", "noinfo", "on", ">pw-noinfo", "~*", "&*", "+@all", "-config", "-info")  # fmt: skip
        url = f"redis://noconfig:pw-noconfig@127.0.0.1:{server.port}/0"
        limited = Redis.from_url(url)
        try:
            with pytest.raises(RedisRefused) as caught:
                await check_redis(limited, settings_for(url), "intake")
            assert "volatile-lru (read with INFO memory)" in str(caught.value)
            assert "pw-noconfig" not in str(caught.value)
        finally:
            await limited.aclose()
        url = f"redis://noinfo:pw-noinfo@127.0.0.1:{server.port}/0"
        blind = Redis.from_url(url)
        try:
            with capture_logs() as logs:
                plan = await check_redis(blind, settings_for(url), "intake")
            assert plan.method == METHOD_NONE
            assert [e["event"] for e in logs if e["log_level"] == "warning"] == [
                "redis.maxmemory_policy_unknown"
            ]
        finally:
            await blind.aclose()
    finally:
        await admin.aclose()


@pytest.mark.integration
async def test_fsync_without_a_way_to_confirm_is_refused_then_accepted_with_always(
    servers: list[PrivateRedis],
) -> None:
    """Redis 7.0 without a replica and with appendfsync everysec cannot confirm a write on disk:
    FCD_DURABILITY=fsync refuses to start and says what to change; appendfsync always is
    accepted (Redis fsyncs before it replies)."""
    server = start(servers, "--appendonly", "yes", "--appendfsync", "everysec")
    redis = Redis.from_url(server.url)
    try:
        fsync = settings_for(server.url, durability=Durability.FSYNC)
        with pytest.raises(RedisRefused) as caught:
            await check_redis(redis, fsync, "intake")
        message = str(caught.value)
        assert "FCD_DURABILITY=fsync" in message and "appendfsync always" in message
        await redis.config_set("appendfsync", "always")
        with capture_logs() as logs:
            plan = await check_redis(redis, fsync, "intake")
        assert plan.method == METHOD_ALWAYS
        started = [e for e in logs if e["event"] == "redis.durability"]
        assert started == [
            {"event": "redis.durability", "role": "intake", "mode": "fsync",
             "method": METHOD_ALWAYS, "log_level": "info"}
        ]  # fmt: skip
        await plan.confirm(redis, ["dr_x"])  # nothing to wait for
    finally:
        await redis.aclose()


@pytest.mark.integration
async def test_fsync_waits_for_the_replica_and_fails_when_it_is_gone(
    servers: list[PrivateRedis],
) -> None:
    """With a replica attached, fsync mode confirms with WAIT 1 on the probe's connection; with
    the replica gone the confirmation times out as NotDurable naming the request ids."""
    primary = start(servers)
    replica = start(servers, "--replicaof", "127.0.0.1", str(primary.port))
    redis = Redis.from_url(primary.url)
    try:
        for _ in range(200):
            info = await redis.info("replication")
            if (
                info.get("connected_slaves", 0) >= 1
                and info.get("slave0", {}).get("state") == "online"
            ):
                break
            await asyncio.sleep(0.05)
        settings = settings_for(
            primary.url, durability=Durability.FSYNC, durability_timeout_seconds=0.5
        )
        plan = await check_redis(redis, settings, "intake")
        assert plan.method == METHOD_WAIT
        await redis.set("fcd-test:written", "1")
        await plan.confirm(redis, ["dr_1"])
        replica.stop()
        await redis.set("fcd-test:unconfirmed", "1")
        with pytest.raises(NotDurable) as caught:
            await plan.confirm(redis, ["dr_2", "dr_3"])
        assert caught.value.request_ids == ["dr_2", "dr_3"]
        assert "dr_2, dr_3" in str(caught.value)
    finally:
        await redis.aclose()


@pytest.mark.process
def test_worker_and_intake_processes_refuse_an_evicting_redis(
    servers: list[PrivateRedis],
) -> None:
    """The worker and the intake exit 1 with the setting and the fix, and no traceback."""
    server = start(servers, "--maxmemory-policy", "allkeys-lru")
    clean = {k: v for k, v in os.environ.items() if not k.startswith("FCD_")}
    env = {
        **clean,
        "FCD_REDIS_URL": server.url,
        "FCD_STRIPE_API_KEY": "sk_test_never_used",
        "FCD_API_TOKENS": '{"billing": "tok_billing_0123456789abcdef"}',
        "FCD_STRIPE_WEBHOOK_SECRETS": "whsec_0123456789",
        "FCD_HTTP_PORT": "0",
        "FCD_METRICS_PORT": "0",
        "FCD_LOG_FORMAT": "json",
    }
    for args in (["-m", "worker", "--burst"], ["-m", "producer"]):
        done = subprocess.run(
            [sys.executable, *args], env=env, capture_output=True, text=True, timeout=60,
            check=False,
        )  # fmt: skip
        assert done.returncode == 1, (args, done.stdout, done.stderr)
        assert "maxmemory-policy is allkeys-lru" in done.stderr, done.stderr
        assert "noeviction" in done.stderr
        assert "Traceback" not in done.stderr
