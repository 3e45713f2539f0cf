"""Circuit breaker and kill switch across real worker processes and the real ``fcd`` CLI."""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path

import pytest

from control.pause import get_pause
from devenv.processes import ProcessGroup, worker_env
from ledger.models import RequestSource, RequestStatus
from ledger.store import Ledger
from tests.emulator_admin import EmulatorAdmin
from tests.producer.test_cli import fcd

pytestmark = pytest.mark.process


def start_workers(
    group: ProcessGroup,
    ledger: Ledger,
    redis_url: str,
    process_admin: EmulatorAdmin,
    tmp_path: Path,
    names: list[str],
    **overrides: str,
) -> None:
    for name in names:
        env = worker_env(
            redis_url,
            process_admin.base,
            key_prefix=ledger.prefix,
            queue_name=ledger.queue_name,
            audit_log_path=str(tmp_path / f"{name}.jsonl"),
            paused_recheck_seconds="0.5",
            **overrides,
        )
        group.start(name, ["-m", "worker"], env)


async def submit_all(ledger: Ledger, accounts: list[str]) -> list[str]:
    ids = []
    for account in accounts:
        submitted = await ledger.submit(account, source=RequestSource.OPERATOR, reference="t")
        ids.append(submitted.request_id)
    return ids


async def wait_all(ledger: Ledger, ids: list[str], status: RequestStatus, seconds: float) -> None:
    deadline = time.monotonic() + seconds
    while True:
        found = [(await ledger.get(i)).status for i in ids]
        if all(s == status for s in found):
            return
        assert time.monotonic() < deadline, found
        await asyncio.sleep(0.1)


async def test_401_pauses_every_worker_once_and_fails_nothing(
    group: ProcessGroup,
    ledger: Ledger,
    process_admin: EmulatorAdmin,
    redis_url: str,
    tmp_path: Path,
    namespace: str,
) -> None:
    """Two workers with a revoked key: one service.paused event in all, requests stay queued;
    after `fcd resume` and a fixed key, every request is disconnected."""
    accounts = await process_admin.create_accounts(6)
    ids = await submit_all(ledger, accounts)
    start_workers(
        group,
        ledger,
        redis_url,
        process_admin,
        tmp_path,
        ["w0", "w1"],
        stripe_api_key="sk_test_revoked",
    )
    deadline = time.monotonic() + 20
    while await get_pause(ledger.redis, key=ledger.pause_key) is None:
        assert time.monotonic() < deadline
        await asyncio.sleep(0.1)
    await asyncio.sleep(1.5)  # both workers keep running; nothing more may happen
    statuses = {(await ledger.get(i)).status for i in ids}
    assert statuses == {RequestStatus.QUEUED}
    events = [
        json.loads(line)["event"]
        for name in ("w0", "w1")
        for line in (tmp_path / f"{name}.jsonl").read_text().splitlines()
    ]
    assert events.count("service.paused") == 1
    group.stop(["w0", "w1"])
    resumed = fcd(
        ["resume", "--reason", "key rotated", "--operator", "carol"], redis_url, namespace
    )
    assert resumed.returncode == 0 and "paused by" in resumed.stdout, resumed.stderr
    start_workers(group, ledger, redis_url, process_admin, tmp_path, ["w2"])
    await wait_all(ledger, ids, RequestStatus.DISCONNECTED, 20)
    assert all(r.attempts == 1 for r in [await ledger.get(i) for i in ids])


async def test_fcd_pause_stops_stripe_calls_until_resume(
    group: ProcessGroup,
    ledger: Ledger,
    process_admin: EmulatorAdmin,
    redis_url: str,
    tmp_path: Path,
    namespace: str,
) -> None:
    """While paused by hand no Stripe call is made and requests stay queued; resume drains them."""
    paused = fcd(["pause", "--reason", "incident 42", "--operator", "dave"], redis_url, namespace)
    assert paused.returncode == 0, paused.stderr
    accounts = await process_admin.create_accounts(4)
    ids = await submit_all(ledger, accounts)
    start_workers(group, ledger, redis_url, process_admin, tmp_path, ["w0"])
    group.wait_for_line("w0", "worker.started")
    await asyncio.sleep(2.0)
    assert [r for r in await process_admin.requests() if r["path"].startswith("/v1/")] == []
    assert {(await ledger.get(i)).status for i in ids} == {RequestStatus.QUEUED}
    fcd(["resume", "--reason", "incident over"], redis_url, namespace)
    await wait_all(ledger, ids, RequestStatus.DISCONNECTED, 20)
