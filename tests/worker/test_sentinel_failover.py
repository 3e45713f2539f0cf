"""Issue 12: a real Sentinel fail-over (SENTINEL FAILOVER, the replica promoted) while real
worker processes run a batch of requests against the emulator process. Afterwards every request
is terminal, nothing submitted is missing, every account is disconnected at the emulator, and
the workers and the producer carry on against the new primary."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from redis.exceptions import RedisError

from devenv.processes import ProcessGroup, worker_env
from devenv.sentinel import SentinelCluster, sentinel_cluster
from ledger.audit import AuditTrail
from ledger.connection import redis_client
from ledger.durability import DurableWrites, NotDurable, check_redis
from ledger.models import TERMINAL_STATUSES, RequestStatus
from ledger.reconcile import reconcile
from ledger.settings import BaseServiceSettings, Durability
from ledger.store import Ledger
from producer.api import Producer
from tests.emulator_admin import EmulatorAdmin

pytestmark = [pytest.mark.process, pytest.mark.timeout(300)]

BEFORE, DURING = 40, 20
LEASE_SECONDS = 8.0


@pytest.fixture
def cluster() -> Iterator[SentinelCluster]:
    with sentinel_cluster() as running:
        yield running


@pytest.fixture
def sentinel_settings(cluster: SentinelCluster, namespace: str) -> BaseServiceSettings:
    return BaseServiceSettings(
        redis_url="",
        redis_sentinels=cluster.sentinel_addresses,
        redis_sentinel_master=cluster.master_name,
        key_prefix=f"{namespace}fcd:",
        queue_name=f"{namespace}queue",
        durability=Durability.FSYNC,  # as the intake and fcd submit run in Sentinel mode
        durability_timeout_seconds=1.0,
    )


@pytest.fixture
async def sentinel_ledger(
    sentinel_settings: BaseServiceSettings, tmp_path: Path
) -> AsyncIterator[Ledger]:
    settings = sentinel_settings
    redis = redis_client(settings)
    audit = AuditTrail(tmp_path / "producer-audit.jsonl")
    try:
        yield Ledger.from_settings(redis, settings, audit)
    finally:
        await redis.aclose()
        audit.close()


async def submit_retrying(producer: Producer, durable: DurableWrites, account_id: str) -> str:
    """What the intake and fcd submit do with FCD_DURABILITY=fsync, and their callers: submit,
    wait until a replica has it (WAIT 1), and retry (the resubmission merges) on an error or an
    unconfirmed write. Without the WAIT a write acknowledged by the primary just before its
    replica is promoted can be lost: asynchronous replication (this test caught one)."""
    for _ in range(600):
        try:
            submission = await producer.submit(account_id, source="operator", reason="gdpr")
            await durable.confirm(producer.ledger.redis, [submission.request_id])
            return submission.request_id
        except (RedisError, OSError, NotDurable):
            await asyncio.sleep(0.1)
    raise AssertionError(f"{account_id} was never accepted")


async def wait_for_quiescence(ledger: Ledger, submitted: dict[str, str]) -> None:
    """Every request terminal; the reconciler (short lease) re-queues what was cut off."""
    deadline = time.monotonic() + 180
    while True:
        statuses = {a: (await ledger.get(r)).status for a, r in submitted.items()}
        waiting = {a: s for a, s in statuses.items() if s not in TERMINAL_STATUSES}
        if not waiting:
            return
        assert time.monotonic() < deadline, waiting
        await reconcile(ledger, lease_seconds=LEASE_SECONDS)
        await asyncio.sleep(0.5)


async def assert_all_disconnected(
    ledger: Ledger, admin: EmulatorAdmin, submitted: dict[str, str]
) -> None:
    """Nothing lost, nothing failed: each request is its account's, and disconnected it."""
    done = (RequestStatus.DISCONNECTED, RequestStatus.ALREADY_DISCONNECTED)
    for account_id, request_id in submitted.items():
        request = await ledger.get(request_id)
        assert request.account_id == account_id
        assert request.status in done, (account_id, request.status)
        assert (await admin.account(account_id))["status"] == "disconnected"


async def test_nothing_is_lost_or_stuck_across_a_sentinel_fail_over(
    cluster: SentinelCluster,
    sentinel_ledger: Ledger,
    sentinel_settings: BaseServiceSettings,
    group: ProcessGroup,
    process_admin: EmulatorAdmin,
    tmp_path: Path,
) -> None:
    ledger = sentinel_ledger
    producer = Producer(ledger)
    durable = await check_redis(ledger.redis, sentinel_settings, "test-producer", eviction=False)
    assert durable.method == "wait"
    accounts = await process_admin.create_accounts(BEFORE + DURING)
    submitted = {a: await submit_retrying(producer, durable, a) for a in accounts[:BEFORE]}
    env = worker_env(
        "",
        process_admin.base,
        key_prefix=ledger.prefix,
        queue_name=ledger.queue_name,
        max_jobs="3",
        stripe_rate_limit="6",  # about 7 s of work before the fail-over's pause
        job_timeout_seconds="5",
        in_progress_lease_seconds=str(LEASE_SECONDS),
        retry_base_seconds="0.2",
        retry_cap_seconds="2",
        reconcile_interval_seconds="0",
    )
    env.update(cluster.env())  # Sentinel mode: FCD_REDIS_URL emptied
    for n in range(2):
        group.start(f"worker{n}", ["-m", "worker"], {**env, "FCD_AUDIT_LOG_PATH": str(tmp_path / f"w{n}.jsonl")})  # fmt: skip
    for n in range(2):
        group.wait_for_line(f"worker{n}", "worker.started", timeout=60)

    async def terminal_count() -> int:
        counts = await ledger.count_by_status()
        return sum(counts[s] for s in TERMINAL_STATUSES)

    deadline = time.monotonic() + 60
    while await terminal_count() < 5:  # the workers are running the batch
        assert time.monotonic() < deadline, "workers never started on the batch"
        await asyncio.sleep(0.1)
    old_primary = cluster.primary_port()

    failover = asyncio.create_task(asyncio.to_thread(cluster.failover))
    for account_id in accounts[BEFORE:]:  # the producer keeps submitting through it
        submitted[account_id] = await submit_retrying(producer, durable, account_id)
        await asyncio.sleep(0.2)
    new_primary = await failover
    assert new_primary != old_primary
    assert len(set(submitted.values())) == BEFORE + DURING

    await wait_for_quiescence(ledger, submitted)
    await assert_all_disconnected(ledger, process_admin, submitted)
    # the workers survived the fail-over and run against the new primary
    for n in range(2):
        assert group.processes[f"worker{n}"].poll() is None, group.log_text(f"worker{n}")
    direct = redis_client(BaseServiceSettings(redis_url=cluster.server_url(new_primary)))
    try:
        beats = [k async for k in direct.scan_iter(f"{ledger.prefix}worker:*")]
        assert len(beats) == 2, beats
        late = accounts[-1]
        assert await direct.exists(f"{ledger.prefix}req:{submitted[late]}")
    finally:
        await direct.aclose()
