"""Retention sweeps over connected accounts (issue 10, point 5), in process against the emulator.

An unfiltered list covers the key's own account only, so a policy names connected accounts
(``stripe_accounts``) or asks for ``"all"`` (``GET /v1/accounts`` paged); each selected account's
request carries its ``Stripe-Account``, every list call waits at the shared limiter's ``list``
budget with priority ``bulk``, and a connected account whose platform access was revoked is
skipped and named, not fatal.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest
from pydantic import SecretStr

from ledger.audit import AuditTrail
from ledger.store import Ledger
from retention.policy import RetentionPolicy, Rule
from retention.runs import SweepRun, SweepRuns, SweepStatus, new_sweep_id
from stripe_emulator import EmulatorConfig, RunningEmulator, run_emulator
from tests.emulator_admin import EmulatorAdmin
from tests.worker.test_disconnect import run_current_job
from tests.worker_deps import build_test_deps
from worker.retention import SweepDeps, execute
from worker.settings import WorkerSettings
from worker.stripe_client import client_timeout

pytestmark = pytest.mark.integration


@pytest.fixture
async def connect_emulator() -> AsyncIterator[RunningEmulator]:
    """A small emulator with three connected accounts."""
    async with run_emulator(EmulatorConfig(accounts=30, seed=5, connected_accounts=3)) as running:
        yield running


async def arrange(admin: EmulatorAdmin) -> tuple[list[str], dict[str, list[str]]]:
    """Three connected accounts with two inactive FC accounts each; the third revoked."""
    connected = [a["id"] for a in await admin.get("/_emulator/connected-accounts")]
    owned = {}
    for acct in connected:
        body = {"count": 2, "status": "inactive", "stripe_account": acct}
        created = await admin.post("/_emulator/accounts", body)
        owned[acct] = [a["id"] for a in created["data"]]
    await admin.post(f"/_emulator/connected-accounts/{connected[2]}/revoke", {})
    return connected, owned


def policy(stripe_accounts: Any) -> RetentionPolicy:
    return RetentionPolicy(
        name="inactive-everywhere",
        max_disconnects=1000,
        max_fraction=1.0,
        rules=(Rule(reason="inactive", status=("inactive",)),),
        stripe_accounts=stripe_accounts,
    )


async def sweep(
    bulk_ledger: Ledger, url: str, http: aiohttp.ClientSession, chosen: RetentionPolicy
) -> SweepRun:
    deps = build_test_deps(bulk_ledger, url, http)
    runs = SweepRuns(bulk_ledger.redis, bulk_ledger.prefix, AuditTrail())
    settings = WorkerSettings(stripe_api_key=SecretStr("sk_test_x"))
    run = await runs.create(
        SweepRun(
            run_id=new_sweep_id(),
            policy=chosen.name,
            policy_digest=chosen.digest,
            trigger="cli",
            apply=True,
            source="stripe",
            status=SweepStatus.REQUESTED,
            started_at=time.time(),
        )
    )
    assert await execute(SweepDeps(deps, runs, settings), run, chosen, force=False) == "finished"
    return await runs.get(run.run_id)


async def test_all_connected_accounts_are_swept_with_their_stripe_account(
    connect_emulator: RunningEmulator, bulk_ledger: Ledger
) -> None:
    """``stripe_accounts = "all"``: the platform's inactive accounts and those of both connected
    accounts ``GET /v1/accounts`` lists (the revoked one is no longer connected) are submitted,
    each request with the right Stripe-Account (None for the platform's) and the status and
    time its page was listed with; every list call was granted by the shared limiter; a
    connected account's request then disconnects with its header (one POST, no retrieve)."""
    started = int(time.time())
    async with aiohttp.ClientSession(timeout=client_timeout(2.0, 5.0)) as http:
        admin = EmulatorAdmin(connect_emulator.url, http)
        connected, owned = await arrange(admin)
        platform_inactive = {
            a["id"] for a in await admin.get("/_emulator/accounts?status=inactive&limit=0")
        } - {i for ids in owned.values() for i in ids}
        done = await sweep(bulk_ledger, connect_emulator.url, http, policy("all"))
        assert done.summary is not None
        assert done.summary["unreachable_stripe_accounts"] == {}
        assert done.summary["by_stripe_account"] == {connected[0]: 2, connected[1]: 2}
        expected: dict[str, str | None] = dict.fromkeys(platform_inactive)
        expected.update({i: acct for acct in connected[:2] for i in owned[acct]})
        carried = {}
        for account_id in expected:
            request = await bulk_ledger.resolve(account_id)
            carried[account_id] = request.stripe_account
            assert request.listed_status == "inactive"
            assert request.listed_at is not None and started <= request.listed_at <= time.time()
        assert carried == expected
        assert done.submitted == len(expected)
        log = await admin.requests()
        lists = [e for e in log if e["method"] == "GET"]
        assert {e["path"] for e in lists} == {"/v1/accounts", "/v1/financial_connections/accounts"}
        assert {e["stripe_account"] for e in lists} == {None, *connected[:2]}
        stats = await bulk_ledger.redis.hgetall(f"{bulk_ledger.prefix}rl:stats")  # type: ignore[misc]
        assert int(stats[b"grants"]) == len(lists)
        acct = connected[0]
        request = await bulk_ledger.resolve(owned[acct][0])
        finished = await run_current_job(
            build_test_deps(bulk_ledger, connect_emulator.url, http), request.request_id
        )
        assert finished.status.value == "disconnected"
        account = await admin.account(owned[acct][0])
        assert account["status"] == "disconnected"
        [post] = [e for e in await admin.requests() if e["method"] == "POST"]
        assert post["stripe_account"] == acct
        assert [e for e in await admin.requests() if e["account_id"] == owned[acct][0]] == [post]


async def test_named_connected_accounts_only(
    connect_emulator: RunningEmulator, bulk_ledger: Ledger
) -> None:
    """``stripe_accounts = [two]`` sweeps the platform and those accounts, not the others, and
    never lists ``/v1/accounts``; the named account whose platform access was revoked answers
    403 and is skipped and named in the summary and the run's message."""
    async with aiohttp.ClientSession(timeout=client_timeout(2.0, 5.0)) as http:
        admin = EmulatorAdmin(connect_emulator.url, http)
        connected, _ = await arrange(admin)
        named = (connected[1], connected[2])
        done = await sweep(bulk_ledger, connect_emulator.url, http, policy(named))
        assert done.summary is not None
        assert done.summary["by_stripe_account"] == {connected[1]: 2}
        unreachable = done.summary["unreachable_stripe_accounts"]
        assert unreachable.keys() == {connected[2]} and "403" in unreachable[connected[2]]
        assert connected[2] in done.message
        paths = {(e["path"], e["stripe_account"]) for e in await admin.requests()}
        assert ("/v1/accounts", None) not in paths
        assert ("/v1/financial_connections/accounts", connected[0]) not in paths
