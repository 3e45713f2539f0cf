"""The reconciler as an arq cron job: schedule, uniqueness, and a real worker process using it."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from redis.asyncio import Redis

from archive import open_archive
from control.overview import queue_overview
from devenv.processes import ProcessGroup, worker_env
from ledger.jobs import ARQ_JOB_KEY_PREFIX
from ledger.machine import FROM_ARCHIVE
from ledger.models import RequestSource, RequestStatus
from ledger.reconcile import REENQUEUED
from ledger.store import Ledger
from tests.emulator_admin import EmulatorAdmin
from tests.producer.process_helpers import wait_for_status
from worker.app import build_worker
from worker.events_catchup import EVENTS_CATCHUP_JOB
from worker.operations import (
    ARCHIVE_JOB,
    RECONCILE_JOB,
    cron_schedule,
    housekeeping_cron_jobs,
    publish_limiter,
)
from worker.ratelimit import RateBudget, RateLimiter
from worker.settings import WorkerSettings


def _settings(**overrides: object) -> WorkerSettings:
    return WorkerSettings(stripe_api_key="sk_test_x", **overrides)  # type: ignore[arg-type]


def test_cron_schedule_accepts_divisors_and_rejects_others() -> None:
    """Intervals map to arq cron fields; ones that do not divide a minute or an hour are refused."""
    assert cron_schedule(15) == {"second": {0, 15, 30, 45}}
    assert cron_schedule(600) == {"minute": set(range(0, 60, 10)), "second": 0}
    for bad in (7, 90, 420):
        with pytest.raises(ValueError, match="must divide"):
            cron_schedule(bad)


async def test_long_running_worker_registers_unique_reconcile_cron_burst_does_not() -> None:
    """A normal worker runs the reconciler and the webhook catch-up as unique cron jobs (once
    per schedule across workers, and at startup); a burst worker only drains, and an interval
    of 0 turns each off."""
    reconcile_cron, catchup_cron, archive_cron = housekeeping_cron_jobs(_settings())
    assert (archive_cron.name, archive_cron.unique) == (ARCHIVE_JOB, True)
    assert (reconcile_cron.name, reconcile_cron.unique, reconcile_cron.run_at_startup) == (
        RECONCILE_JOB,
        True,
        True,
    )
    assert (catchup_cron.name, catchup_cron.unique) == (EVENTS_CATCHUP_JOB, True)
    assert housekeeping_cron_jobs(_settings(), burst=True) == []
    only_catchup = housekeeping_cron_jobs(
        _settings(reconcile_interval_seconds=0, archive_interval_seconds=0)
    )
    assert [job.name for job in only_catchup] == [EVENTS_CATCHUP_JOB]
    none = _settings(
        reconcile_interval_seconds=0, events_catchup_interval_seconds=0, archive_interval_seconds=0
    )
    assert housekeeping_cron_jobs(none) == []
    worker = build_worker(_settings())
    assert [cron.name for cron in worker.cron_jobs] == [
        RECONCILE_JOB,
        EVENTS_CATCHUP_JOB,
        ARCHIVE_JOB,
    ]


async def test_limiter_snapshot_is_published_for_producers(ledger: Ledger, redis: Redis) -> None:
    """The worker publishes the shared limiter's snapshot; the overview producers read shows
    its rate, waits and age."""
    budget = RateBudget.for_stripe(live_mode=False)
    limiter = RateLimiter(
        redis, budget, key_prefix=f"{ledger.prefix}rl:", pause_key=ledger.pause_key
    )
    async with limiter.slot("disconnect"):
        pass
    await publish_limiter(ledger, limiter)
    overview = await queue_overview(ledger)
    assert overview.limiter is not None
    assert overview.limiter["effective_global_rate"] == pytest.approx(20.0)
    assert overview.limiter["grants"] == 1 and overview.limiter["age_seconds"] < 5


@pytest.mark.process
async def test_worker_cron_brings_back_request_whose_job_was_lost(
    group: ProcessGroup, ledger: Ledger, redis: Redis, process_admin: EmulatorAdmin, redis_url: str
) -> None:
    """A request whose arq job was deleted by hand is found by a running worker's reconciler
    cron, re-enqueued with an audit record, and disconnected, with no operator involved."""
    [account] = await process_admin.create_accounts(1)
    submitted = await ledger.submit(account, source=RequestSource.OPERATOR, reference="t")
    request = await ledger.get(submitted.request_id)
    await redis.delete(ARQ_JOB_KEY_PREFIX + str(request.job_id))
    env = worker_env(
        redis_url,
        process_admin.base,
        key_prefix=ledger.prefix,
        queue_name=ledger.queue_name,
        reconcile_interval_seconds="1",
    )
    group.start("worker", ["-m", "worker"], env)
    await wait_for_status(ledger, request.request_id, RequestStatus.DISCONNECTED)
    events = [h["event"] for h in await ledger.history(request.request_id)]
    assert events.count(REENQUEUED) == 1
    assert "reconcile.finished" in group.log_text("worker")


async def test_worker_cron_archives_finished_requests(
    group: ProcessGroup,
    ledger: Ledger,
    redis: Redis,
    process_admin: EmulatorAdmin,
    redis_url: str,
    tmp_path: Path,
) -> None:
    """A running worker's archive cron moves a disconnected request older than
    FCD_ARCHIVE_AFTER into the SQLite archive and out of Redis; reads then come from there."""
    [account] = await process_admin.create_accounts(1)
    submitted = await ledger.submit(account, source=RequestSource.OPERATOR, reference="t")
    env = worker_env(
        redis_url,
        process_admin.base,
        key_prefix=ledger.prefix,
        queue_name=ledger.queue_name,
        archive_dir=str(tmp_path / "archive"),
        archive_after="1s",
        archive_interval_seconds="1",
    )
    group.start("worker", ["-m", "worker"], env)
    await wait_for_status(ledger, submitted.request_id, RequestStatus.DISCONNECTED)
    ledger.archive = open_archive(tmp_path / "archive", None)
    deadline = asyncio.get_running_loop().time() + 60
    while await redis.exists(ledger.request_key(submitted.request_id)):
        assert asyncio.get_running_loop().time() < deadline, group.log_text("worker")
        await asyncio.sleep(0.2)
    located = await ledger.locate(submitted.request_id)
    assert located.stored_in == FROM_ARCHIVE
    assert located.request.status == RequestStatus.DISCONNECTED
    assert [r["to"] for r in located.history][-1] == "disconnected"
    assert "archive.finished" in group.log_text("worker")
    await ledger.close_archive()
