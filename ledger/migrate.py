"""Bring a ledger written by an older version up to this version's layout (``fcd migrate``).

The layout version is ``P schema`` (absent: 1, the layout before the state machines were merged).

- **1 -> 2**: customer-level parents get their status index (``P cust:status:<status>``, scored
  by the time of their last change), so the reconciler finds a parent lost mid-listing and every
  later transition keeps the index. Account requests, histories, event ids and arq jobs written
  by version 1 are read as they are.

Migrating is idempotent and safe while workers run (it only adds index entries a transition would
write anyway). Workers migrate on start-up if the ledger is older (:func:`ensure_migrated`), so a
rolling deploy needs no manual step; ``fcd migrate`` does it by hand and says what it did.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass

import structlog
from redis.exceptions import LockError

from ledger.customer_models import CustomerStatus
from ledger.customers import CustomerLedger
from ledger.detached import run_detached
from ledger.records import text
from ledger.store import Ledger

SCHEMA_VERSION = 2
log = structlog.get_logger("fcd.ledger")


@dataclass(frozen=True)
class MigrationReport:
    """What :func:`migrate` found and did."""

    from_version: int
    to_version: int
    indexed_parents: int  # customer-level parents given a status index entry
    dry_run: bool = False
    lock_busy: bool = False  # another migration was running; this one did nothing

    @property
    def changed(self) -> bool:
        return self.from_version != self.to_version or self.indexed_parents > 0


def schema_key(ledger: Ledger) -> str:
    return f"{ledger.prefix}schema"


async def schema_version(ledger: Ledger) -> int:
    raw = await ledger.redis.get(schema_key(ledger))
    return 1 if raw is None else int(text(raw))


async def migrate(ledger: Ledger, *, dry_run: bool = False) -> MigrationReport:
    """Migrate to :data:`SCHEMA_VERSION` (see the module docstring); one migration at a time."""
    current = await schema_version(ledger)
    lock = ledger.redis.lock(f"{ledger.prefix}schema:lock", timeout=600)
    if not await lock.acquire(blocking=False):
        return MigrationReport(current, current, 0, dry_run, lock_busy=True)
    try:
        indexed = await _index_parents(ledger, dry_run)
        if not dry_run:
            await ledger.redis.set(schema_key(ledger), SCHEMA_VERSION)
    finally:
        with contextlib.suppress(LockError):
            await run_detached(lock.release())
    return MigrationReport(current, current if dry_run else SCHEMA_VERSION, indexed, dry_run)


async def ensure_migrated(ledger: Ledger) -> MigrationReport | None:
    """Migrate if the ledger is older than this version; ``None`` if it was current."""
    if await schema_version(ledger) >= SCHEMA_VERSION:
        return None
    report = await migrate(ledger)
    log.warning(
        "ledger.migrated",
        from_version=report.from_version,
        to_version=report.to_version,
        indexed_parents=report.indexed_parents,
        lock_busy=report.lock_busy,
    )
    return report


async def _index_parents(ledger: Ledger, dry_run: bool) -> int:
    """Add every customer-level parent missing from its status index; return how many."""
    customers = CustomerLedger(ledger, ledger.audit)
    pattern = f"{ledger.prefix}cust:cr_*"
    indexed = 0
    batch: list[str] = []
    async for raw_key in ledger.redis.scan_iter(match=pattern, count=1000):
        key = text(raw_key)
        if ":" in key[len(ledger.prefix) + len("cust:") :]:
            continue  # a parent's history or children, not the parent itself
        batch.append(key)
        if len(batch) >= 500:
            indexed += await _index_batch(customers, batch, dry_run)
            batch = []
    if batch:
        indexed += await _index_batch(customers, batch, dry_run)
    return indexed


async def _index_batch(customers: CustomerLedger, keys: list[str], dry_run: bool) -> int:
    redis = customers.redis
    async with redis.pipeline(transaction=False) as pipe:
        for key in keys:
            pipe.hmget(key, ["status", "updated_at", "created_at"])
        fields = await pipe.execute()
    missing: list[tuple[str, CustomerStatus, float]] = []
    async with redis.pipeline(transaction=False) as pipe:
        for key, (status, updated, created) in zip(keys, fields, strict=True):
            if status is None:
                continue
            parent_id = key.rpartition(":")[2]
            state = CustomerStatus(text(status))
            missing.append((parent_id, state, float(text(updated or created or 0))))
            pipe.zscore(customers.status_key(state), parent_id)
        scores = await pipe.execute()
    todo = [entry for entry, score in zip(missing, scores, strict=True) if score is None]
    if todo and not dry_run:
        async with redis.pipeline(transaction=False) as pipe:
            for parent_id, state, at in todo:
                pipe.zadd(customers.status_key(state), {parent_id: at})
            await pipe.execute()
    return len(todo)
