"""A SIGKILLed bulk worker's batch, against real arq: real Redis, real worker processes and the
emulator process."""

from __future__ import annotations

import asyncio
import signal
import time
from pathlib import Path

import pytest

from devenv.processes import ProcessGroup, worker_env
from ledger.bulk import BulkItem, submit_many
from ledger.jobs import ARQ_IN_PROGRESS_KEY_PREFIX, batch_heartbeat_key
from ledger.models import RequestStatus
from ledger.reconcile import reconcile
from ledger.store import Ledger
from tests.emulator_admin import EmulatorAdmin

pytestmark = pytest.mark.process


async def wait_until(check: object, what: str, seconds: float = 60.0) -> None:
    deadline = time.monotonic() + seconds
    while not await check():  # type: ignore[operator]
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.05)


async def test_a_killed_bulk_workers_batch_is_rescued_once_its_heartbeat_stops(
    group: ProcessGroup,
    bulk_ledger: Ledger,
    process_admin: EmulatorAdmin,
    redis_url: str,
    tmp_path: Path,
) -> None:
    """Issue 16.2: a bulk worker is SIGKILLed while its batch runs (two attempts in flight, four
    waiting under the batch's job id). arq leaves the batch in the queue and its in-progress key
    for a day; once the batch's heartbeat has stopped, the reconciler gives each waiting request
    a job of its own, and a new bulk worker finishes all six."""
    ledger = bulk_ledger
    accounts = await process_admin.create_accounts(6)
    for account_id in accounts:  # every first disconnect hangs: attempts stay in flight
        await process_admin.script(account_id, {"hang_seconds": 2})
    await submit_many(ledger, [BulkItem(a, "stale") for a in accounts])
    batch_id = str((await ledger.resolve(accounts[0])).job_id)
    env = worker_env(
        redis_url,
        process_admin.base,
        key_prefix=ledger.prefix,
        queue_name=ledger.queue_name,
        bulk_queue_name=ledger.bulk_queue_name,
        max_jobs="2",
        stripe_timeout_seconds="3",  # a killed worker's account lock lives 2 x 3 + 10 s
        retry_base_seconds="0.05",
        retry_cap_seconds="0.5",
        audit_log_path=str(tmp_path / "audit.jsonl"),
    )
    group.start("bulk", ["-m", "worker", "--queue", "bulk"], env)

    async def two_in_flight() -> bool:
        return (await ledger.count_by_status())[RequestStatus.IN_PROGRESS] == 2

    await wait_until(two_in_flight, "two attempts of the batch in flight")
    group.signal("bulk", signal.SIGKILL)
    group.processes["bulk"].wait()
    redis = ledger.redis
    assert await redis.zscore(ledger.bulk_queue_name, batch_id) is not None  # arq left it there
    assert await redis.exists(ARQ_IN_PROGRESS_KEY_PREFIX + batch_id)  # ...held for a day
    await redis.delete(batch_heartbeat_key(ledger.prefix, batch_id))  # its TTL ran out

    report = await reconcile(ledger, lease_seconds=3600)
    waiting = [r for r in report.repairs if r.status == RequestStatus.QUEUED]
    assert len(waiting) == 4, report.repairs
    assert all("heartbeat stopped" in r.problem for r in waiting)
    await asyncio.sleep(1.1)
    stuck = await reconcile(ledger, lease_seconds=1.0)  # the two attempts the kill cut off
    assert len([r for r in stuck.repairs if r.status == RequestStatus.IN_PROGRESS]) == 2

    await process_admin._json("DELETE", "/_emulator/script")
    group.start("bulk2", ["-m", "worker", "--queue", "bulk", "--burst"], env)

    async def all_done() -> bool:
        statuses = [(await ledger.resolve(a)).status for a in accounts]
        return all(s == RequestStatus.DISCONNECTED for s in statuses)

    await wait_until(all_done, "all six disconnected", seconds=90)
    for account_id in accounts:
        assert (await process_admin.account(account_id))["status"] == "disconnected"
