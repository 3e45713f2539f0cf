"""Real ``python -m worker`` processes against real Redis and the emulator process."""

from __future__ import annotations

import asyncio
import json
import signal
import time
from pathlib import Path

import pytest

from devenv.processes import ProcessGroup, worker_env
from ledger.audit import STATUS_CHANGED
from ledger.models import RequestSource, RequestStatus
from ledger.store import Ledger
from tests.emulator_admin import EmulatorAdmin

pytestmark = pytest.mark.process


def env_for(ledger: Ledger, redis_url: str, emulator_url: str, audit: Path) -> dict[str, str]:
    return worker_env(
        redis_url,
        emulator_url,
        key_prefix=ledger.prefix,
        queue_name=ledger.queue_name,
        audit_log_path=str(audit),
        retry_base_seconds="0.05",
        retry_cap_seconds="0.2",
    )


async def wait_for_exit(group: ProcessGroup, names: list[str], seconds: float) -> None:
    deadline = time.monotonic() + seconds
    while any(group.processes[n].poll() is None for n in names):
        assert time.monotonic() < deadline, "workers did not finish"
        await asyncio.sleep(0.1)


async def test_two_burst_workers_finish_every_request(
    group: ProcessGroup,
    ledger: Ledger,
    process_admin: EmulatorAdmin,
    redis_url: str,
    tmp_path: Path,
) -> None:
    """Two worker processes drain 40 requests to the right terminal statuses, fully audited,
    one POST each. The emulator process answers 200 to an already-disconnected account (one of
    Stripe's two undocumented answers), so those are recorded ``disconnected`` on Stripe's
    answer: only Stripe's event could tell, and no transition makes none (README, "Worker
    outcomes")."""
    active = await process_admin.create_accounts(30)
    gone = await process_admin.create_accounts(5, status="disconnected")
    unknown = [f"fca_missing{i}" for i in range(5)]
    ids = {}
    for account in active + gone + unknown:
        submitted = await ledger.submit(account, source=RequestSource.OPERATOR, reference="t")
        ids[account] = submitted.request_id
    for n in range(2):
        env = env_for(ledger, redis_url, process_admin.base, tmp_path / f"worker{n}.jsonl")
        group.start(f"worker{n}", ["-m", "worker", "--burst"], env)
    await wait_for_exit(group, ["worker0", "worker1"], seconds=60)
    expected = {a: RequestStatus.DISCONNECTED for a in active}
    expected |= {a: RequestStatus.DISCONNECTED for a in gone}
    expected |= {a: RequestStatus.NOT_FOUND for a in unknown}
    transitions = 0
    for account, request_id in ids.items():
        assert (await ledger.get(request_id)).status == expected[account], account
        transitions += len(await ledger.history(request_id))
    for account in active:
        assert (await process_admin.account(account))["status"] == "disconnected"
    log = await process_admin.requests()
    assert sorted(r["account_id"] for r in log) == sorted(active + gone + unknown)
    assert all(r["method"] == "POST" for r in log)
    for account in gone:
        assert (await ledger.history(ids[account]))[-1]["evidence"] == "answer"
    lines = [
        json.loads(line) | {"_file": path.name}
        for path in tmp_path.glob("worker*.jsonl")
        for line in path.read_text().splitlines()
    ]
    worker_changes = [rec for rec in lines if rec["event"] == STATUS_CHANGED]
    assert len(worker_changes) == transitions - len(ids)  # the producer wrote each "queued"
    # Which of the two takes how many is the scheduler's choice (on a busy machine the first
    # to start may drain all 40 before the second has connected), so what is asserted is the
    # audit's attribution: each process's changes name that process, and no other.
    names_by_file = [
        {rec["worker"] for rec in worker_changes if rec["_file"] == path}
        for path in {rec["_file"] for rec in worker_changes}
    ]
    assert all(len(names) == 1 for names in names_by_file)
    assert len(set().union(*names_by_file)) == len(names_by_file)


async def test_sigterm_mid_call_requeues_and_next_worker_finishes(
    group: ProcessGroup,
    ledger: Ledger,
    process_admin: EmulatorAdmin,
    redis_url: str,
    tmp_path: Path,
) -> None:
    """SIGTERM while a call hangs: the request goes back to queued (attempt not spent); a new
    worker process picks it up and disconnects the account (once the account lock, kept until
    the cut-off call's client timeout, 5 s here, has expired)."""
    [account] = await process_admin.create_accounts(1)
    await process_admin.script(account, {"hang_seconds": 2.0})
    submitted = await ledger.submit(account, source=RequestSource.OPERATOR, reference="t")
    env = env_for(ledger, redis_url, process_admin.base, tmp_path / "audit.jsonl")
    env["FCD_STRIPE_TIMEOUT_SECONDS"] = "5"
    group.start("first", ["-m", "worker"], env)
    deadline = time.monotonic() + 20
    while (await ledger.get(submitted.request_id)).status != RequestStatus.IN_PROGRESS:
        assert time.monotonic() < deadline
        await asyncio.sleep(0.05)
    await asyncio.sleep(0.3)
    group.signal("first", signal.SIGTERM)
    await wait_for_exit(group, ["first"], seconds=20)
    requeued = await ledger.get(submitted.request_id)
    assert requeued.status == RequestStatus.QUEUED
    assert requeued.attempts == 0
    group.start("second", ["-m", "worker", "--burst"], env)
    await wait_for_exit(group, ["second"], seconds=30)
    done = await ledger.get(submitted.request_id)
    assert done.status == RequestStatus.DISCONNECTED
    history = [h["to"] for h in await ledger.history(submitted.request_id)]
    assert history[:4] == ["queued", "in_progress", "queued", "in_progress"]
