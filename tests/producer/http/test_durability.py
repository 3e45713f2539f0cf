"""FCD_DURABILITY=fsync at the intake and in ``fcd submit``: an acknowledgement means the write
reached a replica (WAIT 1, the method Redis 7.0 offers); when that cannot be confirmed in time
the caller gets 503 / exit 1 with the request ids, and a resubmission merges into them."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from typing import Any

import pytest
import redis as sync_redis
from aiohttp.test_utils import TestClient, TestServer
from redis.asyncio import Redis

from devenv.redis_server import PrivateRedis, free_port, start_redis
from producer.http.app import create_app
from tests.producer.http.conftest import BILLING, account_body, make_settings

pytestmark = pytest.mark.integration


def wait_for_replicas(primary: PrivateRedis, count: int) -> None:
    """Until the primary has ``count`` replicas online (a failure bound, not a timing)."""
    client = sync_redis.Redis.from_url(primary.url)
    try:
        for _ in range(400):
            info: dict[str, Any] = client.info("replication")  # type: ignore[assignment]
            online = [v for k, v in info.items() if k.startswith("slave") and isinstance(v, dict)]
            if sum(v.get("state") == "online" for v in online) == count:
                return
            time.sleep(0.05)
        raise AssertionError(f"primary never had {count} replicas online")
    finally:
        client.close()


@pytest.fixture
def pair() -> Iterator[tuple[PrivateRedis, PrivateRedis]]:
    """A primary and its replica, in sync."""
    primary = start_redis()
    replica = start_redis(extra_args=["--replicaof", "127.0.0.1", str(primary.port)])
    try:
        wait_for_replicas(primary, 1)
        yield primary, replica
    finally:
        replica.stop()
        primary.stop()


async def test_intake_answers_202_once_a_replica_has_it_and_503_with_ids_when_not(
    pair: tuple[PrivateRedis, PrivateRedis], namespace: str
) -> None:
    primary, replica = pair
    settings = make_settings(
        primary.url, namespace, durability="fsync", durability_timeout_seconds=0.5
    )
    async with TestClient(TestServer(create_app(settings), host="127.0.0.1")) as intake:
        ready = await (await intake.get("/readyz")).json()
        assert ready["durability"] == {"mode": "fsync", "method": "wait"}
        first = await intake.post(
            "/v1/disconnect-requests", json=account_body("fca_dur1", "evt_1"), headers=BILLING
        )
        assert first.status == 202
        replica.stop()
        second = await intake.post(
            "/v1/disconnect-requests", json=account_body("fca_dur2", "evt_2"), headers=BILLING
        )
        assert second.status == 503 and second.headers["Retry-After"] == "1"
        error = (await second.json())["error"]
        assert error["code"] == "not_durable"
        (request_id,) = error["request_ids"]
        assert request_id.startswith("dr_") and request_id in error["message"]
        batch = await intake.post(
            "/v1/disconnect-requests/batch",
            json={"items": [account_body("fca_dur3", "evt_3")]},
            headers=BILLING,
        )
        assert batch.status == 503
        assert len((await batch.json())["error"]["request_ids"]) == 1
        # the retry (same event) is answered with the same request once it can be confirmed
        redis = Redis.from_url(primary.url)
        try:
            await redis.config_set("appendonly", "yes")
            await redis.config_set("appendfsync", "always")
        finally:
            await redis.aclose()
    # a new intake on the now appendfsync-always server confirms without a replica
    async with TestClient(TestServer(create_app(settings), host="127.0.0.1")) as intake:
        ready = await (await intake.get("/readyz")).json()
        assert ready["durability"] == {"mode": "fsync", "method": "appendfsync-always"}
        retry = await intake.post(
            "/v1/disconnect-requests", json=account_body("fca_dur2", "evt_2"), headers=BILLING
        )
        assert retry.status == 202
        assert (await retry.json())["request_ids"] == [request_id]


def fcd_submit(url: str, namespace: str, *ids: str) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("FCD_")}
    env: dict[str, Any] = {
        **clean,
        "FCD_REDIS_URL": url,
        "FCD_KEY_PREFIX": f"{namespace}fcd:",
        "FCD_QUEUE_NAME": f"{namespace}queue",
        "FCD_LOG_FORMAT": "json",
        "FCD_DURABILITY": "fsync",
        "FCD_DURABILITY_TIMEOUT_SECONDS": "0.5",
    }
    return subprocess.run(
        [sys.executable, "-c", "from producer.cli import main; raise SystemExit(main())",
         "submit", *ids, "--reason", "gdpr"],
        env=env, capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip


@pytest.mark.process
async def test_fcd_submit_exits_1_with_the_ids_when_not_confirmed(
    pair: tuple[PrivateRedis, PrivateRedis], namespace: str
) -> None:
    primary, replica = pair
    done = await asyncio.to_thread(fcd_submit, primary.url, namespace, "fca_cli1")
    assert done.returncode == 0, done.stderr
    assert '"event": "redis.durability"' in done.stderr and '"method": "wait"' in done.stderr
    os.kill(replica.process.pid, signal.SIGSTOP)  # a stalled replica: attached, never acks
    try:
        failed = await asyncio.to_thread(fcd_submit, primary.url, namespace, "fca_cli2")
    finally:
        os.kill(replica.process.pid, signal.SIGCONT)
    assert failed.returncode == 1
    assert failed.stdout.startswith("fca_cli2"), (failed.stdout, failed.stderr)
    line = failed.stdout.splitlines()[0]
    _account, verdict, request_id = line.split("\t")
    assert verdict == "unconfirmed" and request_id.startswith("dr_")
    assert request_id in failed.stderr and "not confirmed durable" in failed.stderr
    # without a way to confirm at all, fcd submit refuses before submitting anything
    replica.stop()
    await asyncio.to_thread(wait_for_replicas, primary, 0)
    refused = await asyncio.to_thread(fcd_submit, primary.url, namespace, "fca_cli3")
    assert refused.returncode == 1 and "FCD_DURABILITY=fsync" in refused.stderr
    assert "fca_cli3" not in refused.stdout


async def test_an_intake_started_while_redis_is_away_checks_it_before_the_first_write(
    namespace: str,
) -> None:
    """Redis unreachable at start-up: the intake starts (readyz 503) and checks Redis at the
    first submission instead; an evicting Redis found then is refused before anything is
    written (503 redis_refused)."""
    port = free_port()
    settings = make_settings(f"redis://127.0.0.1:{port}/0", namespace)
    async with TestClient(TestServer(create_app(settings), host="127.0.0.1")) as intake:
        assert (await intake.get("/readyz")).status == 503
        server = start_redis(port, extra_args=["--maxmemory-policy", "allkeys-lru"])
        try:
            ready = await (await intake.get("/readyz")).json()
            assert ready["durability"] == {"mode": "everysec", "method": "unchecked"}
            refused = await intake.post(
                "/v1/disconnect-requests", json=account_body("fca_lru1", "evt_1"), headers=BILLING
            )
            assert refused.status == 503
            error = (await refused.json())["error"]
            assert error["code"] == "redis_refused" and "allkeys-lru" in error["message"]
            redis = Redis.from_url(server.url)
            try:
                assert await redis.keys(f"{namespace}fcd:req:*") == []  # nothing submitted
                assert await redis.zcard(f"{namespace}queue") == 0
            finally:
                await redis.aclose()
        finally:
            server.stop()
