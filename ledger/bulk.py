"""Bulk submission for retention sweeps: pipelined, and bounded by the bulk queue's depth.

:func:`submit_many` builds each request exactly as :meth:`Ledger.submit` does
(:meth:`Ledger.prepare_submit`) and sends the ledger's CREATE script for a whole chunk in one
non-transactional pipeline (EVALSHA per request, so each request is still recorded and enqueued
atomically, and still merges into an account's active request). Audit records are published per
request after the chunk's answers arrive, as :meth:`Ledger.submit` would.

Bounded: before each chunk, the depth of the destination queue is read; while it is above
``max_queue_depth`` submission sleeps, so a million-account sweep never holds more than about
``max_queue_depth + 2 x chunk_size`` pending jobs in Redis at once (workers drain the queue at
Stripe's pace meanwhile).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import TypeVar

from ledger.models import RequestSource
from ledger.store import Ledger

DEFAULT_CHUNK_SIZE = 1000
#: Two pipelines at once: one chunk is prepared in Python while Redis runs the other's scripts.
PIPELINES_IN_FLIGHT = 2
T = TypeVar("T")


@dataclass(frozen=True)
class BulkItem:
    """One account to submit, with the reason recorded on its request."""

    account_id: str
    reason: str
    reference: str = ""
    stripe_account: str | None = None


@dataclass
class BulkResult:
    """What a bulk submission has done so far."""

    submitted: int = 0  # new requests recorded and enqueued
    merged: int = 0  # folded into an account's existing active request
    waited_seconds: float = 0.0  # time spent waiting for the queue to drain below the bound

    @property
    def done(self) -> int:
        return self.submitted + self.merged


ChunkCallback = Callable[[BulkResult], Awaitable[None]]


def chunked(items: Iterable[T], size: int) -> Iterator[list[T]]:
    """``items`` in lists of ``size`` (the last one shorter)."""
    chunk: list[T] = []
    for item in items:
        chunk.append(item)
        if len(chunk) >= size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


async def wait_for_room(
    ledger: Ledger, queue: str, max_depth: int | None, poll_seconds: float
) -> float:
    """Sleep while ``queue`` holds more than ``max_depth`` jobs; return the seconds waited."""
    if max_depth is None:
        return 0.0
    started = time.monotonic()
    # Polling is the only way: the depth changes in other processes (workers draining it).
    while await ledger.redis.zcard(queue) > max_depth:  # noqa: ASYNC110
        await asyncio.sleep(poll_seconds)
    return time.monotonic() - started


async def submit_many(
    ledger: Ledger,
    items: Iterable[BulkItem],
    *,
    source: RequestSource = RequestSource.RETENTION_POLICY,
    chunk_size: int = DEFAULT_CHUNK_SIZE,
    max_queue_depth: int | None = None,
    poll_seconds: float = 0.5,
    on_chunk: ChunkCallback | None = None,
) -> BulkResult:
    """Submit every item (ids already validated), ``chunk_size`` per pipeline round trip.

    ``on_chunk`` is awaited after each chunk with the running totals (progress reporting).
    """
    result = BulkResult()
    queue = ledger.queue_for(source)
    in_flight: set[asyncio.Task[None]] = set()
    try:
        for chunk in chunked(items, chunk_size):
            result.waited_seconds += await wait_for_room(
                ledger, queue, max_queue_depth, poll_seconds
            )
            in_flight.add(asyncio.create_task(_submit_chunk(ledger, chunk, source, result)))
            if len(in_flight) >= PIPELINES_IN_FLIGHT:
                in_flight = await _first_done(in_flight, result, on_chunk)
        while in_flight:
            in_flight = await _first_done(in_flight, result, on_chunk)
    finally:
        for task in in_flight:
            task.cancel()
    return result


async def _first_done(
    tasks: set[asyncio.Task[None]], result: BulkResult, on_chunk: ChunkCallback | None
) -> set[asyncio.Task[None]]:
    done, pending = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
    for task in done:
        task.result()  # re-raise a chunk's error
        if on_chunk is not None:
            await on_chunk(result)
    return pending


async def _submit_chunk(
    ledger: Ledger, chunk: list[BulkItem], source: RequestSource, result: BulkResult
) -> None:
    prepared = [
        ledger.prepare_submit(
            item.account_id,
            source=source,
            reference=item.reference,
            reason=item.reason,
            stripe_account=item.stripe_account,
        )
        for item in chunk
    ]
    async with ledger.redis.pipeline(transaction=False) as pipe:
        for call in prepared:
            await ledger.run_create(call, client=pipe)
        answers = await pipe.execute()
    for call, (flag, request_id) in zip(prepared, answers, strict=True):
        if ledger.finish_submit(call, flag, request_id).merged:
            result.merged += 1
        else:
            result.submitted += 1
