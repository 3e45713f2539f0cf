"""``fcd queue``: which Redis, depth per queue, in flight, retries, oldest pending, failures,
limiter, pause; ``--watch`` refreshes a per-queue table with drain rate and ETA.

``--watch`` reads the overview every interval. Per queue it shows the pending requests (urgent:
the urgent queue's jobs, one per request; bulk: the other non-terminal requests, whose batch jobs
hold up to 100 each), requests finished per second (from the completion counters every process
flushes, by source: ``retention_policy`` is bulk), the net change of pending per second, and the
ETA at that net rate (``-`` while the queue does not shrink).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time
from collections import deque
from dataclasses import dataclass
from typing import Any

from rich.console import Console
from rich.live import Live
from rich.table import Table

from control.metrics import read_counters
from control.overview import QueueOverview, queue_overview
from ledger.durations import format_age
from ledger.models import RequestSource
from ledger.store import Ledger
from producer.cli.context import open_ledger

RATE_WINDOW = 15


def register(sub: Any) -> None:
    parser: argparse.ArgumentParser = sub.add_parser(
        "queue", help="queue depths, in flight, retries, failures, limiter rate and pause state"
    )
    parser.add_argument("--json", action="store_true", help="machine-readable output")
    parser.add_argument(
        "--watch",
        nargs="?",
        const=2.0,
        type=float,
        metavar="SECONDS",
        help="refresh every SECONDS (default 2) with rate and ETA per queue; Ctrl-C stops",
    )
    parser.add_argument("--count", type=int, default=0, help="with --watch: stop after N")
    parser.set_defaults(handler=run)


async def run(args: argparse.Namespace) -> int:
    async with open_ledger() as ledger:
        if args.watch is not None:
            await watch(ledger, max(args.watch, 0.1), args.count, Console())
            return 0
        overview = await queue_overview(ledger)
    if args.json:
        print(json.dumps(overview.as_json()))
    else:
        print("\n".join(render_lines(overview)))
    return 0


def render_lines(overview: QueueOverview) -> list[str]:
    """The overview as short lines, most urgent facts first."""
    lines = [f"redis: {overview.redis}", f"paused: {pause_text(overview.paused)}"]
    for queue in overview.queues:
        oldest = format_age(queue.oldest_pending_age_seconds)
        lines.append(
            f"queue {queue.kind} ({queue.name}): {queue.total} jobs ({queue.due} due now, "
            f"{queue.deferred} deferred), oldest pending {oldest}, {queue.workers} workers"
        )
    queued_age = overview.oldest_pending_age_seconds
    lines.append(
        f"in flight: {overview.in_flight}  retry scheduled: {overview.retry_scheduled}  "
        f"oldest queued: {'-' if queued_age is None else format_age(queued_age)}"
    )
    lines.append(f"failed in the last hour: {overview.failed_last_hour}")
    lines.append(f"limiter: {limiter_text(overview.limiter)}")
    counts = ", ".join(f"{status} {count}" for status, count in overview.counts.items())
    lines.append(f"requests by status: {counts}")
    return lines


def pause_text(paused: dict[str, Any] | None) -> str:
    if paused is None:
        return "no"
    who = paused.get("operator", "?")
    return f"YES, by {who} at {paused.get('at', '?')}: {paused.get('reason', '')}"


def limiter_text(limiter: dict[str, Any] | None) -> str:
    if limiter is None:
        return "no snapshot (no running worker has published one in the last 10 minutes)"
    return (
        f"rate {float(limiter.get('effective_global_rate', 0.0)):.1f}/s "
        f"(factor {float(limiter.get('rate_factor', 1.0)):.2f}), "
        f"in flight {limiter.get('in_flight', '?')}, "
        f"waiting {limiter.get('urgent_waiting', 0)} urgent / {limiter.get('bulk_waiting', 0)} bulk, "
        f"waits {limiter.get('waits', 0)} ({float(limiter.get('wait_seconds', 0.0)):.1f}s total), "
        f"429s reported {limiter.get('rate_limited_reports', 0)} "
        f"(as of {format_age(float(limiter.get('age_seconds', 0.0)))} ago)"
    )


@dataclass(frozen=True)
class QueueSample:
    """One queue at one moment: pending requests and requests finished so far."""

    at: float
    pending: int
    finished: int


async def sample_queues(ledger: Ledger, overview: QueueOverview) -> dict[str, QueueSample]:
    """Pending and finished-so-far per queue kind (see the module docstring)."""
    now = time.monotonic()
    active = overview.counts["queued"] + overview.in_flight + overview.retry_scheduled
    urgent_jobs = sum(q.total for q in overview.queues if q.kind == "urgent")
    finished = {"urgent": 0, "bulk": 0}
    for field, value in (await read_counters(ledger.redis, ledger.prefix))["completion"].items():
        _, source, tail = field.split("|")
        if tail.startswith("le:"):
            bulk = source == RequestSource.RETENTION_POLICY.value
            finished["bulk" if bulk else "urgent"] += value
    kinds = [q.kind for q in overview.queues]
    if kinds == ["urgent"]:
        return {"urgent": QueueSample(now, active, sum(finished.values()))}
    pending = {"urgent": min(urgent_jobs, active), "bulk": max(active - urgent_jobs, 0)}
    return {kind: QueueSample(now, pending[kind], finished[kind]) for kind in kinds}


def watch_table(
    overview: QueueOverview,
    now: dict[str, QueueSample],
    before: dict[str, QueueSample] | None,
) -> Table:
    """The per-queue table ``--watch`` redraws."""
    paused = "  PAUSED" if overview.paused else ""
    table = Table(
        "queue", "pending", "due", "later", "workers", "done/s", "net/s", "eta", "oldest",
        title=f"redis {overview.redis}{paused}", title_justify="left",
    )  # fmt: skip
    for queue in overview.queues:
        sample, done_rate, net_rate = now[queue.kind], "-", "-"
        eta = "-"
        if before is not None and queue.kind in before:
            prior = before[queue.kind]
            elapsed = max(sample.at - prior.at, 1e-6)
            done = (sample.finished - prior.finished) / elapsed
            net = (sample.pending - prior.pending) / elapsed
            done_rate, net_rate = f"{done:.1f}", f"{net:+.1f}"
            if net < 0 and sample.pending:
                eta = format_age(sample.pending / -net)
        table.add_row(
            queue.kind, str(sample.pending), str(queue.due), str(queue.deferred),
            str(queue.workers), done_rate, net_rate, eta,
            format_age(queue.oldest_pending_age_seconds),
        )  # fmt: skip
    return table


async def watch(ledger: Ledger, seconds: float, count: int, console: Console) -> None:
    """Redraw the table every ``seconds`` (``count`` times, or until interrupted); piped, each
    refresh prints a new table. Rates are over the last :data:`RATE_WINDOW` samples."""
    window: deque[dict[str, QueueSample]] = deque(maxlen=RATE_WINDOW)
    shown = 0
    with Live(console=console, auto_refresh=False, transient=False) as live:
        while True:
            overview = await queue_overview(ledger)
            sample = await sample_queues(ledger, overview)
            table = watch_table(overview, sample, window[0] if window else None)
            if console.is_terminal:
                live.update(table, refresh=True)
            else:
                console.print(table)
            window.append(sample)
            shown += 1
            if count and shown >= count:
                return
            await asyncio.sleep(seconds)
