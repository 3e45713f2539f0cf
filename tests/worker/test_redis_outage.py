"""A worker process outlives Redis refusing writes and dropping its connections (what a Sentinel
fail-over or a restart does to it): arq 0.28 alone ends the process on the first such error
while it records a finished job or polls (worker.arq_worker.ResilientWorker)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from redis.asyncio import Redis

from devenv.processes import ProcessGroup, worker_env
from devenv.redis_server import PrivateRedis, start_redis
from ledger.audit import AuditTrail
from ledger.models import TERMINAL_STATUSES, RequestStatus
from ledger.reconcile import reconcile
from ledger.store import Ledger
from producer.api import Producer
from tests.emulator_admin import EmulatorAdmin

pytestmark = [pytest.mark.process, pytest.mark.timeout(240)]
LEASE_SECONDS = 8.0


@pytest.fixture
def server() -> Iterator[PrivateRedis]:
    running = start_redis()
    yield running
    running.stop()


async def test_a_worker_outlives_refused_writes_and_dropped_connections(
    server: PrivateRedis,
    group: ProcessGroup,
    process_admin: EmulatorAdmin,
    namespace: str,
    tmp_path: Path,
) -> None:
    redis = Redis.from_url(server.url)
    audit = AuditTrail(tmp_path / "audit.jsonl")
    ledger = Ledger(
        redis,
        prefix=f"{namespace}fcd:",
        queue_name=f"{namespace}queue",
        audit=audit,
    )
    try:
        accounts = await process_admin.create_accounts(8)
        for account_id in accounts[:4]:  # in flight when Redis starts refusing writes
            await process_admin.script(account_id, {"hang_seconds": 1.5})
        producer = Producer(ledger)
        submitted = {
            a: (await producer.submit(a, source="operator", reason="gdpr")).request_id
            for a in accounts[:6]
        }
        env = worker_env(
            server.url, process_admin.base, key_prefix=ledger.prefix, queue_name=ledger.queue_name,
            max_jobs="4", job_timeout_seconds="5", stripe_timeout_seconds="3", in_progress_lease_seconds=str(LEASE_SECONDS),
            retry_base_seconds="0.2", retry_cap_seconds="1", reconcile_interval_seconds="0",
        )  # fmt: skip
        group.start("worker", ["-m", "worker"], env)

        async def in_flight() -> int:
            return (await ledger.count_by_status())[RequestStatus.IN_PROGRESS]

        deadline = time.monotonic() + 60
        while await in_flight() < 1:
            assert time.monotonic() < deadline, group.log_text("worker")
            await asyncio.sleep(0.05)
        # writes refused (as on a primary that lost its replica), then every connection dropped
        await redis.config_set("min-replicas-to-write", 1)
        await asyncio.to_thread(group.wait_for_line, "worker", "worker.redis_unavailable", 60)
        await asyncio.sleep(2)
        await redis.execute_command("CLIENT", "KILL", "TYPE", "normal", "SKIPME", "yes")
        await redis.config_set("min-replicas-to-write", 0)
        for account_id in accounts[6:]:  # submitted after: the same worker takes them
            submitted[account_id] = (await producer.submit(account_id, source="operator", reason="gdpr")).request_id  # fmt: skip

        deadline = time.monotonic() + 120
        while True:
            statuses = {a: (await ledger.get(r)).status for a, r in submitted.items()}
            waiting = {a: s for a, s in statuses.items() if s not in TERMINAL_STATUSES}
            if not waiting:
                break
            assert time.monotonic() < deadline, (waiting, group.log_text("worker")[-3000:])
            await reconcile(ledger, lease_seconds=LEASE_SECONDS)
            await asyncio.sleep(0.5)
        assert group.processes["worker"].poll() is None, group.log_text("worker")[-3000:]
        for account_id, status in statuses.items():
            assert status == RequestStatus.DISCONNECTED, (account_id, status)
            assert (await process_admin.account(account_id))["status"] == "disconnected"
    finally:
        await redis.aclose()
        audit.close()
