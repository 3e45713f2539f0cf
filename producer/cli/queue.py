"""``fcd queue``: depth per queue, in flight, retries, oldest pending, failures, limiter, pause."""

from __future__ import annotations

import argparse
import json
from typing import Any

from control.overview import QueueOverview, queue_overview
from producer.cli.context import open_ledger
from producer.durations import format_age


def register(sub: Any) -> None:
    parser: argparse.ArgumentParser = sub.add_parser(
        "queue", help="queue depths, in flight, retries, failures, limiter rate and pause state"
    )
    parser.add_argument("--json", action="store_true", help="machine-readable output")
    parser.set_defaults(handler=run)


async def run(args: argparse.Namespace) -> int:
    async with open_ledger() as ledger:
        overview = await queue_overview(ledger)
    if args.json:
        print(json.dumps(overview.as_json()))
    else:
        print("\n".join(render_lines(overview)))
    return 0


def render_lines(overview: QueueOverview) -> list[str]:
    """The overview as short lines, most urgent facts first."""
    lines = [f"paused: {pause_text(overview.paused)}"]
    for queue in overview.queues:
        lines.append(
            f"queue {queue.name}: {queue.total} jobs ({queue.due} due now, "
            f"{queue.deferred} deferred)"
        )
    oldest = overview.oldest_pending_age_seconds
    lines.append(
        f"in flight: {overview.in_flight}  retry scheduled: {overview.retry_scheduled}  "
        f"oldest pending: {'-' if oldest is None else format_age(oldest)}"
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
