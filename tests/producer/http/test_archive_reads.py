"""Requests moved to the archive, through real HTTP: status and history fall through to it and
say so, and a very late replay of an event answers the archived result instead of creating a
second request."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer
from redis.asyncio import Redis

from archive import ArchiveStore, open_archive
from ledger.archiving import Archiver
from ledger.audit import AuditTrail
from ledger.customer_models import CustomerStatus
from ledger.customers import CustomerLedger
from ledger.models import RequestSource, RequestStatus
from ledger.store import Ledger
from producer.http.app import create_app
from tests.producer.http.conftest import BILLING, CRM, account_body, make_settings

DAY = 86_400.0


@pytest.fixture
async def archive_dir(tmp_path: Path) -> Path:
    return tmp_path / "archive"


@pytest.fixture
async def client(
    redis_url: str, namespace: str, archive_dir: Path
) -> AsyncIterator[TestClient[Any, Any]]:
    settings = make_settings(redis_url, namespace, archive_dir=archive_dir)
    async with TestClient(TestServer(create_app(settings), host="127.0.0.1")) as client:
        yield client


@pytest.fixture
async def store(archive_dir: Path) -> AsyncIterator[ArchiveStore]:
    archive = open_archive(archive_dir, None)
    yield archive
    await archive.close()


@pytest.fixture
def writer(redis: Redis, namespace: str, store: ArchiveStore) -> Ledger:
    """The ledger as a worker sees it (same namespace as the app)."""
    return Ledger(
        redis, queue_name=f"{namespace}queue", audit=AuditTrail(), prefix=f"{namespace}fcd:",
        archive=store,
    )  # fmt: skip


async def finish_and_archive(writer: Ledger, store: ArchiveStore, request_id: str) -> None:
    request = await writer.get(request_id)
    request = await writer.transition(request, RequestStatus.IN_PROGRESS, attempts_delta=1)
    await writer.transition(request, RequestStatus.DISCONNECTED)
    report = await Archiver(writer, store).run(older_than=DAY, now=time.time() + 2 * DAY)
    assert report.archived == 1


async def test_status_and_history_come_from_the_archive_and_say_so(
    client: TestClient[Any, Any], writer: Ledger, store: ArchiveStore
) -> None:
    resp = await client.post("/v1/disconnect-requests", json=account_body("fca_old"), headers=CRM)
    assert resp.status == 202
    (request_id,) = (await resp.json())["request_ids"]
    live = await (await client.get(f"/v1/disconnect-requests/{request_id}", headers=CRM)).json()
    assert live["stored_in"] == "redis"
    await finish_and_archive(writer, store, request_id)
    assert not await writer.redis.exists(writer.request_key(request_id))

    resp = await client.get(f"/v1/disconnect-requests/{request_id}", headers=CRM)
    assert resp.status == 200
    body = await resp.json()
    assert (body["stored_in"], body["status"], body["account_id"]) == (
        "archive", "disconnected", "fca_old",
    )  # fmt: skip
    assert [r["to"] for r in body["history"]] == ["queued", "in_progress", "disconnected"]
    other = await client.get(f"/v1/disconnect-requests/{request_id}", headers=BILLING)
    assert other.status == 404  # still only the submitting service's

    resp = await client.get("/v1/accounts/fca_old/history", headers=CRM)
    body = await resp.json()
    assert body["request_ids"] == [request_id]
    assert body["stored_in"] == {request_id: "archive"}
    assert len(body["history"]) == 3


async def test_a_late_replay_is_answered_from_the_archive(
    client: TestClient[Any, Any], writer: Ledger, store: ArchiveStore
) -> None:
    body = account_body("fca_replay", event_id="evt_late")
    first = await client.post("/v1/disconnect-requests", json=body, headers=CRM)
    answer = await first.json()
    await finish_and_archive(writer, store, answer["request_ids"][0])
    event_key = f"{writer.prefix}intake:crm:evt_late"
    assert not await writer.redis.exists(event_key)

    replay = await client.post("/v1/disconnect-requests", json=body, headers=CRM)
    assert replay.status == 202
    assert replay.headers["Idempotent-Replayed"] == "true"
    assert await replay.json() == answer
    assert await writer.requests_for_account("fca_replay") == []  # no second request
    assert await writer.active_request("fca_replay") is None
    assert not await writer.redis.exists(event_key)  # the claim was dropped again

    changed = await client.post(
        "/v1/disconnect-requests", json={**body, "reason": "another"}, headers=CRM
    )
    assert changed.status == 409
    assert not await writer.redis.exists(event_key)
    fresh = await client.post(
        "/v1/disconnect-requests", json=account_body("fca_replay", event_id="evt_new"), headers=CRM
    )
    assert (await fresh.json())["request_ids"] != answer["request_ids"]


async def test_a_customer_request_reads_from_the_archive_with_its_children(
    client: TestClient[Any, Any], writer: Ledger, store: ArchiveStore
) -> None:
    """GET of an archived ``cr_…`` parent: its summary is derived from its archived children."""
    resp = await client.post(
        "/v1/disconnect-requests",
        json={"customer_id": "cus_gone", "event_id": "evt_cus", "reason": "closed"},
        headers=CRM,
    )
    assert resp.status == 202
    (parent_id,) = (await resp.json())["request_ids"]
    customers = CustomerLedger(writer, writer.audit)
    parent = await customers.transition(await customers.get(parent_id), CustomerStatus.LISTING)
    for n in range(2):
        child = await writer.submit(
            f"fca_kid{n}", source=RequestSource.DELETION_EVENT, reference="crm:evt_cus",
            parent_id=parent_id, children_key=customers.children_key(parent_id),
        )  # fmt: skip
        await writer.transition(await writer.get(child.request_id), RequestStatus.CANCELLED)
    await customers.transition(parent, CustomerStatus.LISTED)
    report = await Archiver(writer, store).run(older_than=DAY, now=time.time() + 2 * DAY)
    assert report.archived == 3

    body = await (await client.get(f"/v1/disconnect-requests/{parent_id}", headers=CRM)).json()
    assert (body["kind"], body["stored_in"], body["state"]) == ("customer", "archive", "done")
    assert body["children"] == {"total": 2, "by_status": {"cancelled": 2}}
    replay = await client.post(
        "/v1/disconnect-requests",
        json={"customer_id": "cus_gone", "event_id": "evt_cus", "reason": "closed"},
        headers=CRM,
    )
    assert replay.status == 202 and (await replay.json())["request_ids"] == [parent_id]
    assert not await writer.redis.exists(customers.key(parent_id))  # no second parent
