"""A ledger written by the previous version (before the state machines were merged) is migrated
and finished by today's code: real Redis, real worker processes, the emulator process.

``data/ledger_v1.jsonl`` was written by commit a8c9e1d (see ``data/README.md``): queued single and
batch requests with a merged duplicate, a request stuck ``in_progress`` under a dead worker, one
``retry_scheduled``, one finished, a customer-level parent waiting and one stuck ``listing``
whose job is gone (that version never indexed parents, so nothing would ever have found it).
"""

from __future__ import annotations

import asyncio
import json
import re
import time
from pathlib import Path
from typing import Any

import pytest
from redis.asyncio import Redis

from devenv.processes import ProcessGroup, worker_env
from ledger.customer_models import CUSTOMER, CustomerStatus
from ledger.customers import CustomerLedger
from ledger.migrate import SCHEMA_VERSION, migrate, schema_version
from ledger.models import ACCOUNT, TERMINAL_STATUSES, RequestStatus, new_request_id
from ledger.reconcile import reconcile
from ledger.store import Ledger
from tests.emulator_admin import EmulatorAdmin

pytestmark = pytest.mark.process

FIXTURE = Path(__file__).parent / "data" / "ledger_v1.jsonl"
_IDS = re.compile(r"\b(?:dr|cr)_[0-9a-z]{26}\b|\bb_[0-9a-f]{16}\b")


def _fresh_ids(text: str) -> str:
    """Give every request and batch id of the fixture a new one (ids are global in arq's keys)."""
    mapping: dict[str, str] = {}

    def fresh(match: re.Match[str]) -> str:
        old = match.group(0)
        if old not in mapping:
            if old.startswith("b_"):
                mapping[old] = "b_" + new_request_id("")[-16:].replace("z", "a")
            else:
                mapping[old] = new_request_id(old[:3])
        return mapping[old]

    return _IDS.sub(fresh, text)


async def load_v1(redis: Redis, ledger: Ledger, accounts: list[str], customers: list[str]) -> None:
    """Write the fixture's keys into the test's namespace, placeholders mapped to real ids."""
    text = FIXTURE.read_text()
    for i, account_id in enumerate(accounts):
        text = re.sub(rf"fca_PLACEHOLDER{i}\b", account_id, text)
    for i, customer_id in enumerate(customers, start=1):
        text = re.sub(rf"cus_PLACEHOLDER{i}\b", customer_id, text)
    text = text.replace("v1fix:queue:urgent", ledger.queue_name)
    text = text.replace("v1fix:queue:bulk", ledger.bulk_queue_name)
    text = _fresh_ids(text.replace("v1fix:", ledger.prefix))
    for line in text.splitlines():
        entry: dict[str, Any] = json.loads(line)
        key, value = entry["key"], entry["value"]
        if entry["type"] == "string":
            await redis.set(key, value)
        elif entry["type"] == "hash":
            await redis.hset(key, mapping=value)  # type: ignore[misc]
        elif entry["type"] == "list":
            await redis.rpush(key, *value)  # type: ignore[misc]
        elif entry["type"] == "zset":
            await redis.zadd(key, {member: score for member, score in value})
        if entry["pttl"] > 0:
            await redis.pexpire(key, entry["pttl"])


async def test_a_version_1_ledger_is_migrated_and_finished(
    group: ProcessGroup,
    bulk_ledger: Ledger,
    redis: Redis,
    process_admin: EmulatorAdmin,
    redis_url: str,
    tmp_path: Path,
) -> None:
    """Migration indexes both parents; the reconciler repairs the lost attempt and the lost
    listing; burst workers of both queues then bring every request of every kind to a terminal
    status with a legal history, and every account is disconnected at the emulator."""
    ledger = bulk_ledger
    accounts = await process_admin.create_accounts(7)
    customers = ["cus_compatA", "cus_compatB"]
    for customer in customers:
        await process_admin._json("POST", "/_emulator/accounts", {"count": 2, "customer": customer})
    await load_v1(redis, ledger, accounts, customers)
    assert await schema_version(ledger) == 1

    report = await migrate(ledger)
    assert (report.from_version, report.to_version) == (1, SCHEMA_VERSION)
    assert report.indexed_parents == 2
    assert (await migrate(ledger)).indexed_parents == 0  # idempotent

    repaired = await reconcile(ledger, lease_seconds=600)
    problems = {r.kind: r.problem for r in repaired.repairs}
    assert set(problems) == {"account", "customer"}, problems
    assert "in_progress for" in problems["account"]
    assert "listing for" in problems["customer"]

    env = worker_env(
        redis_url,
        process_admin.base,
        key_prefix=ledger.prefix,
        queue_name=ledger.queue_name,
        bulk_queue_name=ledger.bulk_queue_name,
        audit_log_path=str(tmp_path / "audit.jsonl"),
    )
    for round_ in range(3):  # children of a listing are enqueued while the workers run
        group.start(f"urgent{round_}", ["-m", "worker", "--burst"], env)
        group.start(f"bulk{round_}", ["-m", "worker", "--burst", "--queue", "bulk"], env)
        for name in (f"urgent{round_}", f"bulk{round_}"):
            deadline = time.monotonic() + 90
            while group.processes[name].poll() is None:
                assert time.monotonic() < deadline, group.log_text(name)
                await asyncio.sleep(0.1)

    parents = CustomerLedger(ledger, ledger.audit)
    for status in CustomerStatus:
        for parent_id in await parents.ids_in_status(status):
            parent = await parents.get(parent_id)
            assert parent.status == CustomerStatus.LISTED, parent
            summary = await parents.summary(parent)
            assert summary["state"] == "done" and summary["children"]["total"] == 2
            assert CUSTOMER.follows_table(await parents.history(parent_id))
    for account_id in accounts[:6]:
        request = await ledger.resolve(account_id)
        assert request.status in TERMINAL_STATUSES
        assert request.status == RequestStatus.DISCONNECTED, await ledger.history(
            request.request_id
        )
        assert ACCOUNT.follows_table(await ledger.history(request.request_id))
    for account_id in accounts[:6]:
        assert (await process_admin.account(account_id))["status"] == "disconnected"
    for waiting in (RequestStatus.QUEUED, RequestStatus.IN_PROGRESS, RequestStatus.RETRY_SCHEDULED):
        assert await ledger.ids_in_status(waiting) == []
