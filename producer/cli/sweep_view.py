"""How ``fcd sweep`` and ``fcd sweeps`` show a sweep: a live progress bar, then a plain summary.

The progress bar follows the run record in Redis (whoever runs the sweep, this process or a bulk
worker, writes its counters there): listing shows accounts examined and the rate (the total is
unknown until Stripe says ``has_more: false``); submitting shows done of selected, the rate and
the time remaining. Rich draws it on stderr, so stdout carries only the summary.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import time
from collections.abc import Awaitable, Callable
from typing import Any

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    ProgressColumn,
    Task,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.text import Text

from producer.cli.layout import print_block
from retention.runs import (
    HEARTBEAT_TTL_SECONDS,
    RUNNING_SWEEP,
    TERMINAL_SWEEP,
    SweepRun,
    SweepRuns,
    SweepStatus,
)

POLL_SECONDS = 0.2


class RateColumn(ProgressColumn):
    """Items per second, as rich estimates it over its recent samples."""

    def render(self, task: Task) -> Text:
        speed = task.finished_speed or task.speed
        return Text(f"{speed:,.0f}/s" if speed else "-/s", style="progress.data.speed")


def _progress(console: Console) -> Progress:
    return Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        RateColumn(),
        TimeElapsedColumn(),
        TextColumn("eta"),
        TimeRemainingColumn(),
        console=console,
        transient=False,
    )


Explain = Callable[[SweepRun], Awaitable[str | None]]


async def follow(
    runs: SweepRuns,
    run_id: str,
    local: asyncio.Task[Any] | None,
    console: Console,
    explain: Explain,
) -> SweepRun:
    """Show the run's progress until it is terminal (or the local task running it has ended);
    while it waits, the bar's label says why (``explain``: :mod:`producer.sweep_waits`)."""
    with _progress(console) as progress:
        listing = progress.add_task("listing", total=None)
        submitting: TaskID | None = None
        while True:
            run = await runs.get(run_id)
            why = await explain(run)
            progress.update(listing, completed=run.scanned, description=_listing_label(run, why))
            if run.status == SweepStatus.SUBMITTING or run.submitted + run.merged:
                if submitting is None:
                    progress.update(listing, total=run.scanned)
                    submitting = progress.add_task("submitting", total=run.selected)
                label = f"submitting: {why}" if why else "submitting"
                progress.update(submitting, completed=run.submitted + run.merged, description=label)
            if run.status in TERMINAL_SWEEP or (local is not None and local.done()):
                return await runs.get(run_id)
            if local is None and await _lost(runs, run):
                console.print(
                    f"run {run_id} has had no heartbeat for {HEARTBEAT_TTL_SECONDS:.0f}s: its "
                    "worker was lost; the reconciler will record it as failed. Run it again."
                )
                return run
            await asyncio.sleep(POLL_SECONDS)


async def _lost(runs: SweepRuns, run: SweepRun) -> bool:
    """A run some other process is running whose heartbeat has stopped."""
    if run.status not in RUNNING_SWEEP or time.time() - run.started_at < HEARTBEAT_TTL_SECONDS:
        return False
    return not await runs.redis.exists(runs.heartbeat_key(run.run_id))


def _listing_label(run: SweepRun, why: str | None) -> str:
    if run.status == SweepStatus.REQUESTED:
        return why or "waiting for a bulk worker"
    label = f"listing ({run.selected:,} selected)"
    return f"{label}: {why}" if why and run.status == SweepStatus.LISTING else label


def summary_lines(run: SweepRun, sample_size: int) -> list[str]:
    """The end-of-sweep summary: counts, the guard's verdict, breakdowns, a sample."""
    mode = "apply" if run.apply else "dry run"
    lines = [f"sweep {run.run_id}  policy {run.policy}  {mode}  {run.status.value}"]
    summary = run.summary or {}
    if summary:
        lines.append(
            f"  examined {summary['scanned']:,}  selected {summary['selected']:,} "
            f"({summary['fraction']:.1%})  already disconnected {summary['already_disconnected']:,}"
            f"  incomplete rows {summary['incomplete']:,}  invalid ids {summary['invalid_id']:,}"
        )
        lines += _breakdown("by reason", summary["by_reason"])
        lines += _breakdown("by institution", summary["by_institution"])
        lines += _sample(summary["sample"][:sample_size])
    if run.apply and run.status == SweepStatus.FINISHED:
        lines.append(f"  submitted {run.submitted:,}  merged into existing {run.merged:,}")
    lines.append(f"  {run.message}")
    return lines


def _breakdown(title: str, counts: dict[str, int]) -> list[str]:
    if not counts:
        return []
    return [f"  {title}:"] + [f"    {n:>9,}  {label}" for label, n in counts.items()]


def _sample(rows: list[dict[str, Any]]) -> list[str]:
    if not rows:
        return []
    lines = ["  sample:"]
    for row in rows:
        lines.append(
            f"    {row['account_id']:<28} {row['institution']:<26} {row['status'] or '-':<9} "
            f"created {_day(row['created'])}  last ok refresh "
            f"{_day(row['last_successful_refresh'])}  {row['reason']}"
        )
    return lines


def _day(value: Any) -> str:
    if not isinstance(value, int | float):
        return "-"
    return dt.datetime.fromtimestamp(value, dt.UTC).strftime("%Y-%m-%d")


def print_runs(console: Console, runs: list[SweepRun], reasons: dict[str, str | None]) -> None:
    """``fcd sweeps``: one block per run, newest first (ids whole at any width, text wrapped),
    with why a waiting run waits (``reasons`` by run id)."""
    if not runs:
        console.print("no sweep runs yet")
    for run in runs:
        started = dt.datetime.fromtimestamp(run.started_at, dt.UTC).strftime("%Y-%m-%d %H:%M:%S")
        why = reasons.get(run.run_id)
        print_block(
            console,
            [
                f"{run.run_id}  {run.status.value}  {'apply' if run.apply else 'dry run'}",
                f"policy {run.policy} ({run.trigger})  started {started} UTC",
                (
                    f"examined {run.scanned:,}  selected {run.selected:,}  "
                    f"submitted {run.submitted:,}  merged {run.merged:,}"
                ),
                run.message,
                f"why: {why}" if why else "",
            ],
        )
