"""Moving finished requests out of Redis into the archive (issue 17): :func:`archive_pass`.

What moves: every request of every kind in a terminal status whose last change (its status
index score) is older than ``older_than`` seconds. An account request that belongs to a
customer-level parent (``parent_id``) moves only together with its parent, once the parent is
terminal and every child is, so a parent in Redis always finds its children there.

How, per bounded batch (``batch_size`` index entries):

1. Read the batch whole in one script reply (``ledger/lua/archive_read.lua``): each request's
   hash, history and, for parents, children; then its event-id records (``P intake:…``: one
   pipelined round trip per batch), those whose stored result names the request.
2. Write it to the archive store (one committed transaction; an upsert by request id).
3. Remove it from Redis with one script (``ledger/lua/archive_remove.lua``) that removes a
   request (or a parent with its children) only if it is still as read (status, ``updated_at``,
   history length): hash, history, status-index entry, account (or customer) index entry,
   children hash and event-id records.

A crash between 2 and 3 leaves the request in both places; the next pass writes it again (the
upsert leaves one row) and removes it. A request that changed in between (e.g. Stripe's
confirmation note arrived) stays in Redis and is archived again by a later pass. While batch
``n`` is written, batch ``n + 1`` is read.

One pass at a time across all processes: a Redis lock (``P archive:lock``) on top of arq's
``unique`` cron job.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from typing import Any

from redis.exceptions import LockError

from archive import ArchivedEvent, ArchivedRequest, ArchiveStore
from archive.store import iso_seconds
from ledger import lua
from ledger.customer_models import CUSTOMER
from ledger.customers import CustomerLedger
from ledger.detached import run_detached
from ledger.event_ids import EventRegistry
from ledger.kinds import RequestKind
from ledger.machine import StateStore
from ledger.models import ACCOUNT, RequestSource
from ledger.records import archived_history, text
from ledger.store import Ledger

_DELETION_EVENT = RequestSource.DELETION_EVENT.value


@dataclass
class ArchiveReport:
    """What one pass did."""

    archived: int = 0  # requests written to the archive and removed from Redis
    kept: int = 0  # written, but changed meanwhile: still in Redis, archived again later
    waiting: int = 0  # old enough, but a child whose parent (or a parent whose child) is not
    events: int = 0  # event-id records archived
    batches: int = 0
    lock_busy: bool = False
    by_kind: dict[str, int] = field(default_factory=dict)


@dataclass(frozen=True)
class _Read:
    """One request as read from Redis."""

    kind: RequestKind[Any, Any]
    request_id: str
    fields: dict[str, str]
    stored: list[str]
    children: dict[str, str]


@dataclass
class _Batch:
    units: list[list[_Read]]
    requests: list[ArchivedRequest]
    waiting: int


class Archiver:
    """Moves one ledger's (every kind's) old terminal requests into ``store``."""

    def __init__(self, ledger: Ledger, store: ArchiveStore) -> None:
        self.ledger = ledger
        self.customers = CustomerLedger(ledger, ledger.audit)
        self.events = EventRegistry(ledger.redis, ledger.prefix)
        self.store = store
        self.redis = ledger.redis
        self.prefix = ledger.prefix
        self._read = lua.register(ledger.redis, "ledger", "archive_read")
        self._remove = lua.register(ledger.redis, "ledger", "archive_remove")

    def _store(self, kind: RequestKind[Any, Any]) -> StateStore[Any, Any]:
        return self.customers if kind is CUSTOMER else self.ledger

    def _index(self, kind: RequestKind[Any, Any], status: str) -> str:
        return self._store(kind).status_key(kind.statuses(status))

    def _owner(self, kind: RequestKind[Any, Any], fields: dict[str, str]) -> str:
        if kind is CUSTOMER:
            return self.customers.customer_key(fields.get("customer_id", ""))
        return self.ledger.account_requests_key(fields.get("account_id", ""))

    def _event_key(self, reference: str) -> str:
        service, _, event_id = reference.partition(":")
        return self.events.key(service, event_id)

    async def run(
        self, *, older_than: float, batch_size: int = 1000, now: float | None = None
    ) -> ArchiveReport:
        """One pass over every kind (see the module docstring); under the archive lock."""
        report = ArchiveReport()
        lock = self.redis.lock(f"{self.prefix}archive:lock", timeout=600)
        if not await lock.acquire(blocking=False):
            report.lock_busy = True
            return report
        try:
            cutoff = (time.time() if now is None else now) - older_than
            for kind in (CUSTOMER, ACCOUNT):
                for status in sorted(s.value for s in kind.terminal):
                    await self._status(kind, status, cutoff, batch_size, report)
        finally:
            with contextlib.suppress(LockError):
                await run_detached(lock.release())
        return report

    async def _status(
        self,
        kind: RequestKind[Any, Any],
        status: str,
        cutoff: float,
        batch_size: int,
        report: ArchiveReport,
    ) -> None:
        """Every entry of one status index up to ``cutoff``, a batch at a time, the next batch
        read while the current one is written."""
        index = self._index(kind, status)
        cursor: tuple[str, set[str]] = ("-inf", set())
        pending: tuple[_Batch, asyncio.Future[None]] | None = None
        try:
            while True:
                ids, cursor = await self._page(index, cursor, cutoff, batch_size)
                batch = await self._prepare(kind, ids) if ids else None
                if pending is not None:
                    await pending[1]
                    await self._finish(pending[0], report)
                    pending = None
                if batch is None:
                    return
                pending = (batch, asyncio.ensure_future(self.store.put(batch.requests)))
                if len(ids) < batch_size:
                    await pending[1]
                    await self._finish(batch, report)
                    pending = None
                    return
        finally:
            if pending is not None:
                pending[1].cancel()

    async def _page(
        self, index: str, cursor: tuple[str, set[str]], cutoff: float, size: int
    ) -> tuple[list[str], tuple[str, set[str]]]:
        """The next ``size`` ids of ``index`` scored up to ``cutoff``, from ``cursor`` (a score,
        inclusive, and the ids at that score already taken)."""
        start, taken = cursor
        page = await self.redis.zrangebyscore(
            index, start, cutoff, start=0, num=size + len(taken), withscores=True
        )
        scored = [(text(m), float(s)) for m, s in page if text(m) not in taken][:size]
        if not scored:
            return [], cursor
        last = scored[-1][1]
        at_last = {i for i, s in scored if s == last}
        if repr(last) == start:
            at_last |= taken
        return [i for i, _ in scored], (repr(last), at_last)

    async def _prepare(self, kind: RequestKind[Any, Any], ids: list[str]) -> _Batch:
        reads = await self._read_many(kind, ids)
        units: list[list[_Read]] = []
        waiting = 0
        terminal = {s.value for s in kind.terminal}
        for read in reads:
            if read.fields.get("status") not in terminal:
                continue  # moved (or gone) since the index was read
            if kind is ACCOUNT and read.fields.get("parent_id"):
                waiting += 1  # moves with its parent
                continue
            unit = [read]
            if read.children:
                children = await self._read_many(ACCOUNT, sorted(set(read.children.values())))
                account_terminal = {s.value for s in ACCOUNT.terminal}
                if any(c.fields.get("status") not in account_terminal for c in children):
                    waiting += 1
                    continue
                unit += children
            units.append(unit)
        flat = [read for unit in units for read in unit]
        events = await self._events(flat)
        now = time.time()
        requests = [self._archived(read, events.get(read.request_id, ()), now) for read in flat]
        return _Batch(units, requests, waiting)

    async def _read_many(self, kind: RequestKind[Any, Any], ids: Sequence[str]) -> list[_Read]:
        store = self._store(kind)
        reads_spec = []
        for request_id in ids:
            entry = {
                "id": request_id,
                "req": store.request_key(request_id),
                "hist": store.history_key(request_id),
            }
            if kind is CUSTOMER:
                entry["children"] = self.customers.children_key(request_id)
            reads_spec.append(entry)
        raw = json.loads(await self._read(args=[lua.params(reads=reads_spec)]))
        reads = []
        for request_id in ids:
            entry = raw.get(request_id) or {}
            flat = _as_list(entry.get("h"))
            if not flat:
                continue
            children = _as_list(entry.get("c"))
            reads.append(
                _Read(
                    kind,
                    request_id,
                    dict(zip(flat[0::2], flat[1::2], strict=True)),
                    _as_list(entry.get("l")),
                    dict(zip(children[0::2], children[1::2], strict=True)),
                )
            )
        return reads

    async def _events(self, reads: Sequence[_Read]) -> dict[str, list[ArchivedEvent]]:
        """The event-id records of ``reads`` (each names its request in its stored result)."""
        wanted: list[tuple[str, str]] = []
        for read in reads:
            for reference in _event_references(read):
                wanted.append((read.request_id, reference))
        if not wanted:
            return {}
        async with self.redis.pipeline(transaction=False) as pipe:
            for _, reference in wanted:
                pipe.hmget(self._event_key(reference), ["h", "r", "at"])
            answers = await pipe.execute()
        found: dict[str, list[ArchivedEvent]] = {}
        for (request_id, reference), (digest, result, at) in zip(wanted, answers, strict=True):
            if digest is None or result is None:
                continue
            stored = text(result)
            if request_id not in json.loads(stored).get("request_ids", []):
                continue
            event = ArchivedEvent(reference, request_id, text(digest), stored, text(at or b""))
            found.setdefault(request_id, []).append(event)
        return found

    def _archived(
        self, read: _Read, events: Sequence[ArchivedEvent], now: float
    ) -> ArchivedRequest:
        kind, fields = read.kind, read.fields
        created = float(fields["created_at"])
        updated = float(fields.get("updated_at") or created)
        newest = json.loads(read.stored[-1]).get("ts") if read.stored else None
        return ArchivedRequest(
            request_id=read.request_id,
            kind=kind.name,
            subject=fields.get("customer_id" if kind is CUSTOMER else "account_id", ""),
            status=fields["status"],
            created_at=created,
            updated_at=updated,
            fields=fields,
            # The stored records as they are (no decoding): reads restore them (full_history).
            history_json="[" + ",".join(read.stored) + "]",
            last_ts=max(updated, iso_seconds(newest)) if newest else updated,
            archived_at=now,
            parent_id=fields.get("parent_id"),
            children=read.children,
            events=tuple(events),
        )

    async def _finish(self, batch: _Batch, report: ArchiveReport) -> None:
        """Remove a written batch from Redis, unit by unit if still as read."""
        report.batches += 1
        report.waiting += batch.waiting
        report.events += sum(len(r.events) for r in batch.requests)
        by_id = {r.request_id: r for r in batch.requests}
        units = []
        for unit in batch.units:
            events = [
                self._event_key(e.key) for read in unit for e in by_id[read.request_id].events
            ]
            parent = unit[0]
            children = (
                self.customers.children_key(parent.request_id) if parent.kind is CUSTOMER else ""
            )
            units.append({"reqs": [self._expectation(r) for r in unit], "events": events,
                          "children": children})  # fmt: skip
        if not units:
            return
        removed = json.loads(await self._remove(args=[lua.params(units=units)]))
        report.archived += len(removed)
        report.kept += len(batch.requests) - len(removed)
        for request_id in removed:
            kind = by_id[request_id].kind
            report.by_kind[kind] = report.by_kind.get(kind, 0) + 1

    def _expectation(self, read: _Read) -> dict[str, Any]:
        store = self._store(read.kind)
        return {
            "id": read.request_id,
            "req": store.request_key(read.request_id),
            "hist": store.history_key(read.request_id),
            "status": read.fields["status"],
            "updated": read.fields.get("updated_at", ""),
            "hlen": len(read.stored),
            "index": self._index(read.kind, read.fields["status"]),
            "owner": self._owner(read.kind, read.fields),
        }


def _as_list(value: Any) -> list[Any]:
    """A Lua array as cjson encoded it (an empty one is ``{}``)."""
    return value if isinstance(value, list) else []


def _event_references(read: _Read) -> list[str]:
    """``<service>:<event id>`` of every intake submission that named this request: its own
    reference, and those merged into it (``disconnect.merged`` records), when from an event."""
    references = []
    if read.fields.get("source") == _DELETION_EVENT and read.fields.get("reference"):
        references.append(read.fields["reference"])
    for item in read.stored:
        if '"reference"' not in item:
            continue
        record = json.loads(item)
        if record.get("source") == _DELETION_EVENT and record.get("reference"):
            references.append(str(record["reference"]))
    return list(dict.fromkeys(references))


KINDS: dict[str, RequestKind[Any, Any]] = {ACCOUNT.name: ACCOUNT, CUSTOMER.name: CUSTOMER}


async def records_since(store: ArchiveStore, since: float) -> AsyncIterator[dict[str, Any]]:
    """Every archived audit record with ``ts`` at or after ``since`` (unix seconds), every key
    of the audit contract present; one request's records together, requests in the order of
    their newest record (``fcd export``)."""
    async for archived in store.requests_since(since):
        for record in archived_history(KINDS[archived.kind], archived):
            if record.get("ts") and iso_seconds(str(record["ts"])) >= since:
                yield record
