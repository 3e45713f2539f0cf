"""Bulk submission for retention sweeps: batched, pipelined, and bounded by the pending count.

:func:`submit_many` builds each request exactly as :meth:`Ledger.submit` does
(:meth:`Ledger.prepare_submit`), but enqueues one arq *batch job* per ``batch_size`` requests
instead of one job each (see :mod:`ledger.jobs`): one CREATE script call records a batch's
requests with ``job_id`` = the batch's id and writes the batch job, atomically, so no request
exists without the job that will run it, nor the job without its requests (an account's active
request still absorbs a submission as a merge, and the batch job does not list it). A chunk's
calls go in one non-transactional pipeline. Audit records are published per request once the
chunk's answers arrive, shielded from cancellation like :meth:`Ledger.submit`.

Bounded: before each chunk the number of ``queued`` requests (the ledger's own index, every
queue) is read; while it is above ``max_queue_depth`` submission sleeps, so a million-account
sweep never holds more than about ``max_queue_depth + 2 x chunk_size`` pending requests in Redis
at once (workers drain them at Stripe's pace meanwhile).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any, TypeVar

from ledger.jobs import batch_job_template, new_batch_job_id
from ledger.models import RequestSource, RequestStatus
from ledger.store import Ledger
from ledger.submissions import CreateCall, PreparedSubmission, create_call

DEFAULT_CHUNK_SIZE = 1000
#: Requests per batch job: enough that the job's keys cost a few bytes per request, few enough
#: that a batch finishes in minutes at Stripe's pace.
DEFAULT_BATCH_SIZE = 100
#: Two pipelines at once: one chunk is prepared in Python while Redis runs the other's scripts.
PIPELINES_IN_FLIGHT = 2
T = TypeVar("T")


@dataclass(frozen=True)
class BulkItem:
    """One account to submit, with the reason recorded on its request.

    ``listed_status`` and ``listed_at`` are the account's ``status`` in the listing it was
    selected from and when that page was read (unix seconds): the worker decides on them
    (:attr:`ledger.models.DisconnectRequest.listed_status`). Kept on the request's hash, about
    40 bytes more per pending request.
    """

    account_id: str
    reason: str
    reference: str = ""
    stripe_account: str | None = None
    listed_status: str | None = None
    listed_at: int | None = None


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


async def wait_for_room(ledger: Ledger, max_depth: int | None, poll_seconds: float) -> float:
    """Sleep while more than ``max_depth`` requests are ``queued``; return the seconds waited.

    Requests, not jobs: a batch job stands for up to ``batch_size`` of them.
    """
    if max_depth is None:
        return 0.0
    started = time.monotonic()
    queued = ledger.status_key(RequestStatus.QUEUED)
    # Polling is the only way: the count changes in other processes (workers draining it).
    while await ledger.redis.zcard(queued) > max_depth:  # noqa: ASYNC110
        await asyncio.sleep(poll_seconds)
    return time.monotonic() - started


async def submit_many(
    ledger: Ledger,
    items: Iterable[BulkItem],
    *,
    source: RequestSource = RequestSource.RETENTION_POLICY,
    chunk_size: int = DEFAULT_CHUNK_SIZE,
    batch_size: int = DEFAULT_BATCH_SIZE,
    max_queue_depth: int | None = None,
    poll_seconds: float = 0.5,
    on_chunk: ChunkCallback | None = None,
) -> BulkResult:
    """Submit every item (ids already validated), ``chunk_size`` per pipeline round trip and
    ``batch_size`` per arq job.

    ``on_chunk`` is awaited after each chunk with the running totals (progress reporting).
    Batch jobs are run by bulk workers only (``python -m worker --queue bulk``), so ``source``
    must route to the bulk queue; anything else raises ``ValueError`` before writing.
    """
    if ledger.queue_for(source) != ledger.bulk_queue_name:
        raise ValueError(f"submit_many is for bulk sources; {source} routes to the urgent queue")
    result = BulkResult()
    in_flight: set[asyncio.Task[None]] = set()
    try:
        for chunk in chunked(items, chunk_size):
            result.waited_seconds += await wait_for_room(ledger, max_queue_depth, poll_seconds)
            submit = _submit_chunk(ledger, chunk, source, batch_size, result)
            in_flight.add(asyncio.create_task(submit))
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
    ledger: Ledger,
    chunk: list[BulkItem],
    source: RequestSource,
    batch_size: int,
    result: BulkResult,
) -> None:
    prepared = [
        ledger.prepare_submit(
            item.account_id,
            source=source,
            reference=item.reference,
            reason=item.reason,
            stripe_account=item.stripe_account,
            listed_status=item.listed_status,
            listed_at=item.listed_at,
        )
        for item in chunk
    ]
    calls = [_batch_call(ledger, batch) for batch in chunked(prepared, batch_size)]

    async def send() -> list[Any]:
        async with ledger.redis.pipeline(transaction=False) as pipe:
            for call in calls:
                await ledger.run_create(call, client=pipe)
            # Every call's answer, errors included: the calls that succeeded must be audited.
            answers: list[Any] = await pipe.execute(raise_on_error=False)
        return answers

    def publish(answers: list[Any]) -> BaseException | None:
        failure: BaseException | None = None
        for call, answer in zip(calls, answers, strict=True):
            if isinstance(answer, BaseException):
                failure = failure or answer
                continue
            for submission in ledger.finish_create(call, answer):
                if submission.merged:
                    result.merged += 1
                else:
                    result.submitted += 1
        return failure

    failure = await ledger.published(send(), publish)
    if failure is not None:  # each CREATE is all-or-nothing: a failed one wrote nothing
        raise failure


def _batch_call(ledger: Ledger, batch: list[PreparedSubmission]) -> CreateCall:
    """The CREATE call recording ``batch`` under one fresh batch job."""
    return create_call(
        ledger,
        batch,
        job_id=new_batch_job_id(),
        job=batch_job_template(),
        expire_ms=ledger.job_expires_ms,
    )
