"""Retention sweeps with real ``python -m worker`` processes: the schedule runs once per time
across two bulk workers, and urgent deletions are served ahead of a sweep's backlog."""

from __future__ import annotations

import asyncio
import json
import time
from collections import Counter
from pathlib import Path

import pytest

from devenv.processes import ProcessGroup, worker_env
from ledger.audit import AuditTrail
from ledger.bulk import BulkItem, submit_many
from ledger.models import RequestSource
from ledger.store import Ledger
from retention.runs import SweepRuns, SweepStatus
from tests.emulator_admin import EmulatorAdmin

pytestmark = pytest.mark.process


def env(ledger: Ledger, redis_url: str, emulator: str, **extra: str) -> dict[str, str]:
    return worker_env(
        redis_url,
        emulator,
        key_prefix=ledger.prefix,
        queue_name=ledger.queue_name,
        bulk_queue_name=ledger.bulk_queue_name,
        reconcile_interval_seconds="0",
        log_level="WARNING",
        **extra,
    )


async def test_scheduled_sweep_runs_once_per_time_across_two_workers(
    group: ProcessGroup,
    bulk_ledger: Ledger,
    process_admin: EmulatorAdmin,
    redis_url: str,
    tmp_path: Path,
) -> None:
    """Two bulk workers share a two-second schedule: each scheduled time yields exactly one run."""
    accounts = tmp_path / "accounts.jsonl"
    accounts.write_text("".join(json.dumps({"id": f"fca_cron{n}"}) + "\n" for n in range(5)))
    policies = tmp_path / "policies.toml"
    policies.write_text(
        '[policies.every-two]\nsource = "file"\nfile = "accounts.jsonl"\n'
        'schedule = "*/2 * * * * *"\nscheduled_apply = true\nmax_disconnects = 10\n'
        "max_fraction = 1.0\n"
        '[[policies.every-two.rules]]\nreason = "cron test"\nselect_all = true\n'
    )
    settings = env(bulk_ledger, redis_url, process_admin.base, retention_policies=str(policies))
    for n in range(2):
        group.start(f"bulk{n}", ["-m", "worker", "--queue", "bulk"], settings)
    runs = SweepRuns(bulk_ledger.redis, bulk_ledger.prefix, AuditTrail())
    deadline = time.monotonic() + 30
    while len(await runs.recent(50)) < 3:
        assert time.monotonic() < deadline, group.log_text("bulk0")
        await asyncio.sleep(0.2)
    group.stop(["bulk0", "bulk1"])
    recorded = await runs.recent(50)
    per_slot = Counter(run.scheduled_at for run in recorded)
    assert all(n == 1 for n in per_slot.values()), per_slot
    assert {run.trigger for run in recorded} == {"schedule"}
    finished = [r for r in recorded if r.status == SweepStatus.FINISHED]
    assert finished and all(r.scanned == 5 and r.apply for r in finished)
    assert sum(r.submitted + r.merged for r in finished) == 5 * len(finished)


async def test_urgent_deletions_are_served_before_the_sweep_backlog(
    group: ProcessGroup, bulk_ledger: Ledger, process_admin: EmulatorAdmin, redis_url: str
) -> None:
    """With a bulk backlog and 5 calls/s, user deletions are disconnected within about a second,
    ahead of sweep requests queued long before them."""
    sweep_accounts = await process_admin.create_accounts(30)
    items = [BulkItem(a, "retention test") for a in sweep_accounts]
    await submit_many(bulk_ledger, items)
    settings = env(
        bulk_ledger,
        redis_url,
        process_admin.base,
        precheck_account="false",
        stripe_rate_limit="5",
        stripe_global_rate_limit="5",
    )
    group.start("urgent", ["-m", "worker"], settings)
    group.start("bulk", ["-m", "worker", "--queue", "bulk"], settings)
    started = time.monotonic()
    while len(await process_admin.requests()) < 3:  # the sweep backlog is being worked on
        assert time.monotonic() - started < 20, group.log_text("bulk")
        await asyncio.sleep(0.1)
    submitted_at = {}
    for account in await process_admin.create_accounts(3):
        submitted_at[account] = time.time()
        await bulk_ledger.submit(account, source=RequestSource.DELETION_EVENT)
        await asyncio.sleep(0.3)
    deadline = time.monotonic() + 20
    while True:
        calls = {
            r["account_id"]: r["ts"]
            for r in await process_admin.requests()
            if r["method"] == "POST"
        }
        if all(a in calls for a in submitted_at):
            break
        assert time.monotonic() < deadline, group.log_text("urgent")
        await asyncio.sleep(0.1)
    latencies = [calls[a] - t for a, t in submitted_at.items()]
    assert max(latencies) < 1.2, latencies
    last_urgent = max(calls[a] for a in submitted_at)
    bulk_done_by_then = sum(1 for a in sweep_accounts if calls.get(a, 1e18) <= last_urgent)
    assert bulk_done_by_then < 20  # most of the earlier-queued sweep was still waiting
