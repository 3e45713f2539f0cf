"""A worker process outlives a Redis restart (found by the chaos harness: every arq worker of the
fleet exited on one Redis restart, its poll loop letting the connection error escape; refused
writes and dropped connections: ``test_redis_outage.py``). Both are served by
``worker.arq_worker.ResilientWorker``."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator

import pytest
from redis.asyncio import Redis

from devenv.processes import ProcessGroup, worker_env
from devenv.redis_server import PrivateRedis, start_redis
from ledger.audit import AuditTrail
from ledger.models import RequestSource, RequestStatus
from ledger.store import Ledger
from producer.settings import ProducerSettings
from tests.emulator_admin import EmulatorAdmin

pytestmark = pytest.mark.process


@pytest.fixture
def own_redis() -> Iterator[PrivateRedis]:
    """A Redis of this test alone: it is stopped and started again on the same port."""
    server = start_redis()
    yield server
    server.stop()


async def disconnect_one(url: str, admin: EmulatorAdmin) -> RequestStatus:
    """Submit one account on a fresh connection and wait (bounded) until it is terminal."""
    (account,) = await admin.create_accounts(1)
    redis = Redis.from_url(url)
    try:
        ledger = Ledger.from_settings(redis, ProducerSettings(redis_url=url), AuditTrail())
        submitted = await ledger.submit(account, source=RequestSource.OPERATOR, reference="t")
        deadline = time.monotonic() + 30
        while not (request := await ledger.get(submitted.request_id)).status.is_terminal:
            assert time.monotonic() < deadline, f"still {request.status}"
            await asyncio.sleep(0.1)
        return request.status
    finally:
        await redis.aclose()


async def test_worker_survives_a_redis_restart(
    group: ProcessGroup, own_redis: PrivateRedis, process_admin: EmulatorAdmin
) -> None:
    """Redis stops (the worker's polls fail) and starts again on the same port: the worker is
    still running, says so in its log, and disconnects a request submitted afterwards."""
    env = worker_env(own_redis.url, process_admin.base, reconcile_interval_seconds="0")
    group.start("worker", ["-m", "worker"], env)
    group.wait_for_line("worker", "worker.started")
    assert await disconnect_one(own_redis.url, process_admin) == RequestStatus.DISCONNECTED
    port = own_redis.port
    own_redis.stop()
    group.wait_for_line("worker", "worker.redis_unavailable")
    restarted = start_redis(port=port)
    try:
        assert await disconnect_one(restarted.url, process_admin) == RequestStatus.DISCONNECTED
        assert group.processes["worker"].poll() is None
        group.wait_for_line("worker", "worker.redis_back")
    finally:
        restarted.stop()
