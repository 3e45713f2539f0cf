"""The sweep itself, shared by ``fcd sweep`` and the bulk workers' schedule: list, select, guard,
then (only with ``apply``) submit.

:func:`run_sweep` reads every account first and decides on the whole selection before anything is
submitted, so the blast-radius guard sees the real count and fraction: a sweep over the guard
records ``refused`` with the reason and submits nothing unless forced. A dry run stops after the
selection (it writes only its own run record) and its one message says what an apply would do
(submit N, or be refused and why). Submission goes through :func:`ledger.bulk.submit_many`:
pipelined, routed to the bulk queue (``source = retention_policy``), paused while that queue is
deeper than ``max_queue_depth``. Progress counters are written to the run record as the sweep
goes, which is what ``fcd sweep``, ``fcd sweeps`` and the dashboard display.

Only an apply takes the policy's lock (:func:`run_guarded`): a dry run writes nothing but its own
record, so it never makes an apply (or the schedule) wait or fail "already running". An operator
may cancel a run (:meth:`retention.runs.SweepRuns.cancel`); the sweep notices within
:data:`CANCEL_POLL_SECONDS` and stops where it is (requests already submitted stay queued).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any, TypeAlias

from redis.exceptions import RedisError

from ledger.bulk import BulkItem, BulkResult, submit_many
from ledger.detached import run_detached
from ledger.store import Ledger
from retention.policy import RetentionPolicy
from retention.runs import HEARTBEAT_SECONDS, SweepRun, SweepRuns, SweepStatus
from retention.select import Selection, blast_radius_refusal
from retention.sources import Account, ScopedPage

#: What a sweep reads accounts from: pages of accounts, or of (Connect) scoped accounts.
Pages: TypeAlias = AsyncIterator[list[Account]] | AsyncIterator[ScopedPage]
CANCEL_POLL_SECONDS = 0.5


class SweepBusy(RuntimeError):
    """Another sweep of the same policy holds its lock."""


@dataclass(frozen=True)
class SweepOptions:
    """How to run: ``apply`` submits (else a dry run); ``force`` overrides the guard."""

    apply: bool = False
    force: bool = False
    max_queue_depth: int | None = None
    chunk_size: int = 1000


@asynccontextmanager
async def policy_lock(runs: SweepRuns, run: SweepRun, ttl_seconds: float) -> AsyncIterator[None]:
    """One sweep of a policy at a time, across every process; raise :class:`SweepBusy`.

    The lock's token is recorded on the run, so the reconciler can release the lock of a run
    whose process was lost (:func:`retention.runs.recover_runs`).
    """
    token = await runs.lock(run.policy, ttl_seconds)
    if token is None:
        raise SweepBusy(f"a sweep of policy {run.policy!r} is already running")
    try:
        await runs.update(run.run_id, lock_token=token)
        yield
    finally:
        await run_detached(runs.unlock(run.policy, token))


async def run_sweep(
    ledger: Ledger,
    runs: SweepRuns,
    run: SweepRun,
    policy: RetentionPolicy,
    pages: Pages,
    options: SweepOptions,
    *,
    now: float | None = None,
) -> SweepRun:
    """Run ``run`` to a terminal status and return it; an error is recorded, then re-raised.

    While it runs, its heartbeat is refreshed (the reconciler fails a run whose heartbeat
    stops: its process was lost). ``pages`` are lists of the key's own accounts, or
    :class:`ScopedPage` s naming the connected account they were listed as: each selected
    account's request then carries it. A cancel by an operator stops the work and returns the
    cancelled record (no error)."""
    heartbeat = asyncio.create_task(_beat(runs, run.run_id))
    work = asyncio.ensure_future(
        _run(ledger, runs, run, policy, pages, options, now or time.time())
    )
    watcher = asyncio.ensure_future(_stop_when_cancelled(runs, run.run_id, work))
    try:
        return await work
    except asyncio.CancelledError:
        if watcher.done() and not watcher.cancelled() and watcher.result():
            return await runs.get(run.run_id)
        await run_detached(runs.finish(run, SweepStatus.FAILED, "CancelledError"))
        raise
    except Exception as exc:
        message = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
        await run_detached(runs.finish(run, SweepStatus.FAILED, message))
        raise
    finally:
        watcher.cancel()
        heartbeat.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await heartbeat


async def _beat(runs: SweepRuns, run_id: str) -> None:
    """Keep the run's heartbeat alive while it runs; a Redis hiccup only skips one beat."""
    while True:
        with contextlib.suppress(RedisError, OSError):
            await runs.beat(run_id)
        await asyncio.sleep(HEARTBEAT_SECONDS)


async def run_guarded(
    ledger: Ledger,
    runs: SweepRuns,
    run: SweepRun,
    policy: RetentionPolicy,
    pages: Pages,
    options: SweepOptions,
    *,
    lock_seconds: float,
) -> SweepRun:
    """:func:`run_sweep`, under the policy's lock only if it applies; a held lock makes the run
    ``failed`` with the reason (``skipped: …``) instead of running twice at once."""
    if not options.apply:
        return await run_sweep(ledger, runs, run, policy, pages, options)
    try:
        async with policy_lock(runs, run, lock_seconds):
            return await run_sweep(ledger, runs, run, policy, pages, options)
    except SweepBusy as exc:
        return await runs.finish(run, SweepStatus.FAILED, f"skipped: {exc}")


async def _stop_when_cancelled(runs: SweepRuns, run_id: str, work: asyncio.Future[Any]) -> bool:
    """Cancel ``work`` once the run record says ``cancelled``; True if it did."""
    while not work.done():
        if await runs.is_cancelled(run_id):
            work.cancel()
            return True
        await asyncio.sleep(CANCEL_POLL_SECONDS)
    return False


async def _run(
    ledger: Ledger,
    runs: SweepRuns,
    run: SweepRun,
    policy: RetentionPolicy,
    pages: Pages,
    options: SweepOptions,
    now: float,
) -> SweepRun:
    await runs.update(run.run_id, status=SweepStatus.LISTING)
    selection = Selection()
    async for page in pages:
        if isinstance(page, ScopedPage):
            if page.unreachable is not None and page.stripe_account is not None:
                selection.unreachable[page.stripe_account] = page.unreachable
            selection.add_all(policy, page.accounts, now, page.stripe_account, page.listed_at)
        else:
            selection.add_all(policy, page, now)
        await runs.update(run.run_id, scanned=selection.scanned, selected=len(selection.selected))
    refusal = blast_radius_refusal(policy, selection)
    await runs.selected(run, selection.summary(), refusal)
    if options.apply and refusal and not options.force:
        return await runs.finish(run, SweepStatus.REFUSED, refusal)
    missing = (
        f"; not listed (no access): {', '.join(sorted(selection.unreachable))}"
        if selection.unreachable
        else ""
    )
    if not options.apply:
        message = dry_run_message(selection, refusal) + missing
        return await runs.finish(run, SweepStatus.FINISHED, message)
    await runs.update(run.run_id, status=SweepStatus.SUBMITTING)
    result = await _submit(ledger, runs, run, policy, selection, options)
    forced = " (guard overridden with --force)" if refusal else ""
    message = (
        f"{result.submitted} submitted, {result.merged} merged into existing requests, "
        f"of {selection.scanned} accounts examined{forced}{missing}"
    )
    return await runs.finish(run, SweepStatus.FINISHED, message)


def dry_run_message(selection: Selection, refusal: str | None) -> str:
    """The one sentence a dry run ends with: what ``--apply`` would do, then what was done."""
    count, scanned = len(selection.selected), selection.scanned
    if refusal:
        return (
            f"dry run: {count:,} of {scanned:,} accounts selected; --apply would be refused "
            f"({refusal}); nothing was submitted"
        )
    return (
        f"dry run: {count:,} of {scanned:,} accounts selected; --apply would submit them; "
        "nothing was submitted"
    )


async def _submit(
    ledger: Ledger,
    runs: SweepRuns,
    run: SweepRun,
    policy: RetentionPolicy,
    selection: Selection,
    options: SweepOptions,
) -> BulkResult:
    reference = f"{policy.name}/{run.run_id}"
    scoped = selection.stripe_accounts
    items = (
        BulkItem(account_id, reason, reference, scoped.get(account_id), status, listed_at)
        for (account_id, reason), (status, listed_at) in zip(
            selection.selected, selection.listed, strict=True
        )
    )

    async def progress(result: BulkResult) -> None:
        await runs.update(
            run.run_id,
            submitted=result.submitted,
            merged=result.merged,
            waited_seconds=round(result.waited_seconds, 3),
        )

    return await submit_many(
        ledger,
        items,
        chunk_size=options.chunk_size,
        max_queue_depth=options.max_queue_depth,
        on_chunk=progress,
    )
