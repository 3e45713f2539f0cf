"""Webhook-inbox consumer names with real processes: an intake that stops cleanly leaves the
group and hands back what it held; a worker's reconciler deletes the names of killed intakes
once they own nothing."""

from __future__ import annotations

import asyncio
import json
import socket
import time
from collections.abc import Awaitable, Callable

import pytest
from redis.asyncio import Redis

from devenv.processes import ProcessGroup, worker_env
from devenv.redis_server import free_port
from events.inbox import GROUP, PARKING_CONSUMER, WebhookInbox
from tests.deploy.conftest import service_env

pytestmark = [pytest.mark.integration, pytest.mark.process]


async def _consumers(inbox: WebhookInbox) -> dict[str, int]:
    """Consumer name -> entries it owns ({} before the group exists)."""
    if not await inbox.redis.exists(inbox.stream):
        return {}
    infos = await inbox.redis.xinfo_consumers(inbox.stream, GROUP)
    return {i["name"].decode(): int(i["pending"]) for i in infos}


async def _until(check: Callable[[], Awaitable[bool]], what: str, seconds: float = 60.0) -> None:
    """Poll ``check`` (the state is in Redis and in process logs); fail after ``seconds``."""
    deadline = time.monotonic() + seconds
    while not await check():
        assert time.monotonic() < deadline, what
        await asyncio.sleep(0.1)


def _event(event_id: str) -> str:
    body = {"id": event_id, "type": "ping", "data": {"object": {"id": "fca_none"}}}
    return json.dumps(body)


async def test_an_intake_stopping_cleanly_hands_back_its_entries_and_leaves(
    group: ProcessGroup, redis_url: str, redis: Redis, namespace: str
) -> None:
    """A real intake holds an entry (delivered to its consumer name) when it gets SIGTERM: once
    it exited its name is gone and the entry waits, delivered once, under the parking
    consumer; a second intake applies it at once (its claim threshold is a minute)."""
    env = service_env(redis_url, namespace, "http://127.0.0.1:9")
    inbox = WebhookInbox(redis, f"{namespace}fcd:")
    group.start("intake", ["-m", "producer"], env | {"FCD_HTTP_PORT": str(free_port())})
    group.wait_for_line("intake", "listening on")
    consumer = f"{socket.gethostname()}:{group.processes['intake'].pid}"  # its process_name()

    async def group_created() -> bool:
        return bool(await redis.exists(inbox.stream))

    await _until(group_created, "the intake never created the consumer group")
    # Redis creates a consumer when it first gets an entry. Added and delivered to the intake's
    # name in one transaction, so the intake's own read cannot take it first.
    async with redis.pipeline(transaction=True) as pipe:
        pipe.xadd(inbox.stream, {"event": _event("evt_held")})
        pipe.xreadgroup(GROUP, consumer, {inbox.stream: ">"}, count=1)
        await pipe.execute()
    assert await _consumers(inbox) == {consumer: 1}

    group.stop(["intake"])
    assert group.processes["intake"].returncode == 0
    assert await _consumers(inbox) == {PARKING_CONSUMER: 1}
    [held] = await redis.xpending_range(inbox.stream, GROUP, "-", "+", 10)
    assert int(held["times_delivered"]) == 1
    assert "webhooks.consumer_left" in group.log_text("intake")

    group.start("intake2", ["-m", "producer"], env | {"FCD_HTTP_PORT": str(free_port())})
    group.wait_for_line("intake2", "listening on")

    async def applied() -> bool:
        return await inbox.pending() == 0

    await _until(applied, "the handed-back entry was never applied")
    group.stop(["intake2"])
    assert await _consumers(inbox) == {PARKING_CONSUMER: 0}


async def test_a_workers_reconciler_deletes_killed_consumers_once_they_own_nothing(
    group: ProcessGroup, redis_url: str, redis: Redis, namespace: str
) -> None:
    """Two names of killed intakes, one owning an entry: a real worker's reconciler (every
    second, idle threshold one second) deletes the empty one and keeps the other until its
    entry was claimed away, then deletes it too."""
    inbox = WebhookInbox(redis, f"{namespace}fcd:", claim_idle_ms=0)
    await inbox.ensure_group()
    await redis.xadd(inbox.stream, {"event": _event("evt_owned")})
    await redis.xreadgroup(GROUP, "gone:1", {inbox.stream: ">"}, count=1)
    await redis.xgroup_createconsumer(inbox.stream, GROUP, "gone:2")
    env = service_env(redis_url, namespace, "http://127.0.0.1:9")
    env |= worker_env(
        redis_url,
        "http://127.0.0.1:9",
        reconcile_interval_seconds="1",
        webhook_consumer_idle_seconds="1",
        events_catchup_interval_seconds="0",
    )
    group.start("worker", ["-m", "worker"], env)

    async def empty_one_pruned() -> bool:
        return "gone:2" not in await _consumers(inbox)

    await _until(empty_one_pruned, "the reconciler never pruned the empty consumer")
    log = group.log_text("worker")
    passes = log.count("reconcile.finished")
    assert passes >= 1
    assert await _consumers(inbox) == {"gone:1": 1}

    async def two_more_passes() -> bool:
        return group.log_text("worker").count("reconcile.finished") >= passes + 2

    await _until(two_more_passes, "the reconciler stopped running")
    assert await _consumers(inbox) == {"gone:1": 1}  # it still owns an entry: kept

    async def apply(event: dict[str, object]) -> str:
        return "ok"

    assert await inbox.process_once("alive:3", apply, block_ms=10) == 1

    async def all_pruned() -> bool:
        return await _consumers(inbox) == {}

    await _until(all_pruned, "the consumer whose entry was claimed away was never pruned")
