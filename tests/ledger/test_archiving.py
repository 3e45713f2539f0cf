"""Moving old terminal requests from Redis to the archive (ledger.archiving), on a real Redis and
both archive backends: what moves, that nothing is lost or doubled by a crash between the archive
write and the Redis removal, and that a request changed meanwhile stays."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Sequence
from pathlib import Path
from typing import Any

import pytest
from redis.asyncio import Redis

from archive import ArchivedRequest, ArchiveStore, open_archive
from ledger.archiving import Archiver
from ledger.audit import CONFIRMED, AuditTrail
from ledger.customer_models import CustomerRequest, CustomerStatus, new_customer_request_id
from ledger.customers import CustomerLedger
from ledger.event_ids import EventRegistry, body_hash
from ledger.machine import FROM_ARCHIVE, FROM_REDIS
from ledger.models import RequestNotFound, RequestSource, RequestStatus
from ledger.store import Ledger

DAY = 86_400.0


@pytest.fixture(params=["sqlite", "postgresql"])
async def store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[ArchiveStore]:
    dsn = request.getfixturevalue("archive_dsn") if request.param == "postgresql" else None
    archive = open_archive(tmp_path / "archive", dsn)
    yield archive
    await archive.close()


@pytest.fixture
async def sqlite_store(tmp_path: Path) -> AsyncIterator[ArchiveStore]:
    archive = open_archive(tmp_path / "archive", None)
    yield archive
    await archive.close()


async def ledger_keys(redis: Redis, ledger: Ledger) -> list[str]:
    return sorted([k.decode() async for k in redis.scan_iter(match=f"{ledger.prefix}*")])


async def finished(ledger: Ledger, account: str, *, reference: str = "alice",
                   source: RequestSource = RequestSource.OPERATOR) -> str:  # fmt: skip
    submission = await ledger.submit(account, source=source, reference=reference)
    request = await ledger.get(submission.request_id)
    request = await ledger.transition(request, RequestStatus.IN_PROGRESS, attempts_delta=1)
    await ledger.transition(request, RequestStatus.DISCONNECTED)
    return submission.request_id


async def test_old_terminal_requests_move_whole_and_redis_is_clean(
    ledger: Ledger, redis: Redis, store: ArchiveStore
) -> None:
    ledger.archive = store
    ids = [await finished(ledger, f"fca_arch{n}") for n in range(7)]
    before = {i: await ledger.history(i) for i in ids}
    pending = await ledger.submit("fca_still", source=RequestSource.OPERATOR)
    report = await Archiver(ledger, store).run(
        older_than=DAY, batch_size=3, now=time.time() + 2 * DAY
    )
    assert (report.archived, report.kept, report.batches) == (7, 0, 3)
    keys = await ledger_keys(redis, ledger)
    assert all(pending.request_id in k or "fca_still" in k or ":status:queued" in k for k in keys)
    for request_id in ids:
        located = await ledger.locate(request_id)
        assert located.stored_in == FROM_ARCHIVE
        assert located.history == before[request_id]
        assert located.request.status == RequestStatus.DISCONNECTED
    assert (await ledger.locate(pending.request_id)).stored_in == FROM_REDIS
    assert (await ledger.locate_ref("fca_arch3")).request.request_id == ids[3]
    counts = await store.counts()
    assert (counts.requests, counts.records) == (7, sum(len(h) for h in before.values()))


async def test_recent_terminal_requests_stay(ledger: Ledger, store: ArchiveStore) -> None:
    request_id = await finished(ledger, "fca_recent")
    report = await Archiver(ledger, store).run(older_than=DAY)
    assert report.archived == 0
    assert (await ledger.get(request_id)).status == RequestStatus.DISCONNECTED


class Killed(Exception):
    """Stands for the process dying."""


class CrashAfterWrite:
    """An archive whose process "dies" right after its write committed (before the removal)."""

    def __init__(self, inner: ArchiveStore) -> None:
        self.inner = inner

    async def put(self, requests: Sequence[ArchivedRequest]) -> None:
        await self.inner.put(requests)
        raise Killed("killed after the archive commit")

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


async def test_a_crash_between_archive_write_and_redis_removal_loses_and_doubles_nothing(
    ledger: Ledger, redis: Redis, store: ArchiveStore
) -> None:
    ids = [await finished(ledger, f"fca_crash{n}") for n in range(3)]
    later = time.time() + 2 * DAY
    with pytest.raises(Killed):
        await Archiver(ledger, CrashAfterWrite(store)).run(older_than=DAY, now=later)
    assert (await store.counts()).requests == 3  # written ...
    for request_id in ids:  # ... and still in Redis
        assert (await ledger.get(request_id)).status == RequestStatus.DISCONNECTED
    await redis.delete(f"{ledger.prefix}archive:lock")  # the dead process's lock, expired
    report = await Archiver(ledger, store).run(older_than=DAY, now=later)
    assert report.archived == 3
    assert (await store.counts()).requests == 3
    assert await ledger_keys(redis, ledger) == []


class NoteDuringWrite:
    """Stripe's confirmation lands on a request while its batch is being written."""

    def __init__(self, inner: ArchiveStore, ledger: Ledger, request_id: str) -> None:
        self.inner, self.ledger, self.request_id = inner, ledger, request_id

    async def put(self, requests: Sequence[ArchivedRequest]) -> None:
        await self.inner.put(requests)
        await self.ledger.note(await self.ledger.get(self.request_id), CONFIRMED)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


async def test_a_request_changed_meanwhile_stays_and_moves_later_with_the_change(
    ledger: Ledger, redis: Redis, sqlite_store: ArchiveStore
) -> None:
    ledger.archive = sqlite_store
    request_id = await finished(ledger, "fca_note")
    later = time.time() + 2 * DAY
    racing = NoteDuringWrite(sqlite_store, ledger, request_id)
    report = await Archiver(ledger, racing).run(older_than=DAY, now=later)
    assert (report.archived, report.kept) == (0, 1)
    assert (await ledger.locate(request_id)).stored_in == FROM_REDIS
    report = await Archiver(ledger, sqlite_store).run(older_than=DAY, now=later)
    assert report.archived == 1
    located = await ledger.locate(request_id)
    assert located.stored_in == FROM_ARCHIVE and located.history[-1]["event"] == CONFIRMED
    assert (await sqlite_store.counts()).requests == 1


async def test_event_id_records_move_with_their_request(
    ledger: Ledger, redis: Redis, sqlite_store: ArchiveStore
) -> None:
    """The request's own event and one merged into it; another request's event stays."""
    events = EventRegistry(redis, ledger.prefix)
    digest = body_hash({"account_id": "fca_ev"})
    first = await ledger.submit("fca_ev", source=RequestSource.DELETION_EVENT, reference="crm:e1")
    merged = await ledger.submit("fca_ev", source=RequestSource.DELETION_EVENT, reference="crm:e2")
    assert merged.merged
    for event_id in ("e1", "e2"):
        await events.claim("crm", event_id, digest)
        await events.finish("crm", event_id, digest, {"request_ids": [first.request_id]})
    other = await ledger.submit(
        "fca_other", source=RequestSource.DELETION_EVENT, reference="crm:e3"
    )
    await events.claim("crm", "e3", digest)
    await events.finish("crm", "e3", digest, {"request_ids": [other.request_id]})
    request = await ledger.transition(await ledger.get(first.request_id), RequestStatus.CANCELLED)
    report = await Archiver(ledger, sqlite_store).run(older_than=DAY, now=time.time() + 2 * DAY)
    assert (report.archived, report.events) == (1, 2)
    assert not await redis.exists(events.key("crm", "e1"), events.key("crm", "e2"))
    assert await redis.exists(events.key("crm", "e3"))
    archived = await sqlite_store.event("crm:e2")
    assert archived is not None and archived.request_id == request.request_id
    assert archived.digest == digest


async def test_a_customer_parent_moves_with_its_children_once_all_are_terminal(
    ledger: Ledger, redis: Redis, sqlite_store: ArchiveStore
) -> None:
    ledger.archive = sqlite_store
    customers = CustomerLedger(ledger, AuditTrail())
    now = time.time()
    parent = CustomerRequest(
        request_id=new_customer_request_id(), customer_id="cus_arch", status=CustomerStatus.QUEUED,
        source=RequestSource.DELETION_EVENT, reference="crm:c1", reason="gone",
        created_at=now, updated_at=now,
    )  # fmt: skip
    event_key = f"{ledger.prefix}intake:crm:c1"
    result = {"request_ids": [parent.request_id]}
    await customers.create(parent, event_key=event_key, digest="d", result=result)
    parent = await customers.transition(
        await customers.get(parent.request_id), CustomerStatus.LISTING
    )
    children = []
    for n in range(3):
        child = await ledger.submit(
            f"fca_child{n}", source=RequestSource.DELETION_EVENT, reference="crm:c1",
            parent_id=parent.request_id, children_key=customers.children_key(parent.request_id),
        )  # fmt: skip
        children.append(child.request_id)
    await customers.transition(parent, CustomerStatus.LISTED)
    for request_id in children[:2]:
        await ledger.transition(await ledger.get(request_id), RequestStatus.CANCELLED)
    later = time.time() + 2 * DAY
    report = await Archiver(ledger, sqlite_store).run(older_than=DAY, now=later)
    assert report.archived == 0 and report.waiting == 3  # the parent, and two finished children
    await ledger.transition(await ledger.get(children[2]), RequestStatus.CANCELLED)
    report = await Archiver(ledger, sqlite_store).run(older_than=DAY, now=later)
    assert report.archived == 4 and report.by_kind == {"customer": 1, "account": 3}
    assert await ledger_keys(redis, ledger) == []
    located = await customers.locate(parent.request_id)
    assert located.stored_in == FROM_ARCHIVE and located.archived is not None
    summary = await customers.summary(located.request, located.archived)
    assert summary["state"] == "done" and summary["children"]["total"] == 3
    assert (await sqlite_store.event("crm:c1")) is not None
    with pytest.raises(RequestNotFound):
        await ledger.locate(parent.request_id)  # not an account request


async def test_one_pass_at_a_time(ledger: Ledger, redis: Redis, sqlite_store: ArchiveStore) -> None:
    await finished(ledger, "fca_lock")
    lock = redis.lock(f"{ledger.prefix}archive:lock", timeout=30)
    assert await lock.acquire(blocking=False)
    report = await Archiver(ledger, sqlite_store).run(older_than=DAY, now=time.time() + 2 * DAY)
    assert report.lock_busy and report.archived == 0
    await lock.release()


async def test_an_account_disconnected_by_an_archived_request_is_still_known(
    ledger: Ledger, sqlite_store: ArchiveStore
) -> None:
    """A later request for the account ends without a Stripe call, as before archiving."""
    ledger.archive = sqlite_store
    first = await finished(ledger, "fca_known")
    await Archiver(ledger, sqlite_store).run(older_than=DAY, now=time.time() + 2 * DAY)
    later = await ledger.submit("fca_known", source=RequestSource.OPERATOR)
    known = await ledger.known_disconnected("fca_known", besides=later.request_id)
    assert known is not None and first in known.reason
    assert await ledger.known_disconnected("fca_other", besides="") is None
