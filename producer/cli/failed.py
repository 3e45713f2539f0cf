"""``fcd failed``: what failed, why, and the Stripe Request-Id to quote to Stripe support.

``--code`` matches the Stripe error code or the HTTP status (both are shown); ``--by cause``
prints counts per cause instead of the list. Ids are never cut (:mod:`producer.cli.layout`).
"""

from __future__ import annotations

import argparse
import json
import time
from typing import Any

from rich.console import Console
from rich.table import Table

from ledger.durations import format_age, parse_duration
from ledger.operator import Failure, count_causes, find_failures
from producer.cli.context import EXIT_BAD_INPUT, CliError, open_ledger
from producer.cli.layout import id_column, print_block, table_fits


def register(sub: Any) -> None:
    parser: argparse.ArgumentParser = sub.add_parser(
        "failed", help="list failed requests, newest first, with the last error and Request-Id"
    )
    add_filters(parser)
    parser.add_argument(
        "--by", choices=["cause"], help="counts per cause (HTTP status and Stripe code) instead"
    )
    parser.add_argument("--json", action="store_true", help="one JSON object per line")
    parser.set_defaults(handler=run)


def add_filters(parser: argparse.ArgumentParser) -> None:
    """``--since``/``--code``/``--limit``, shared with ``fcd requeue --all-failed``."""
    parser.add_argument("--since", metavar="DURATION", help="failed within, e.g. 30m, 2h, 7d")
    parser.add_argument(
        "--code", help="a Stripe error code (idempotency_key_in_use) or an HTTP status (409)"
    )
    parser.add_argument("--limit", type=int, default=500, help="at most this many (default 500)")


def since_seconds(args: argparse.Namespace) -> float | None:
    if args.since is None:
        return None
    try:
        return parse_duration(args.since)
    except ValueError as exc:
        raise CliError(f"--since: {exc}", EXIT_BAD_INPUT) from exc


def failed_row(failure: Failure, now: float) -> dict[str, Any]:
    """The fields an operator needs about one failure (``--json`` prints exactly these)."""
    request = failure.request
    return {
        "request_id": request.request_id,
        "account_id": request.account_id,
        "attempts": request.attempts,
        "http_status": failure.http_status,
        "last_error_code": request.last_error_code,
        "cause": failure.cause,
        "last_error": request.last_error,
        "last_stripe_request_id": request.last_stripe_request_id,
        "failed_at": request.updated_at,
        "age_seconds": round(now - request.updated_at, 1),
        "source": request.source.value,
        "reference": request.reference,
    }


async def run(args: argparse.Namespace) -> int:
    window = since_seconds(args)
    async with open_ledger() as ledger:
        failures = await find_failures(
            ledger, since_seconds=window, code=args.code, limit=args.limit
        )
    if args.by == "cause":
        return _print_causes(failures, args)
    now = time.time()
    rows = [failed_row(failure, now) for failure in failures]
    if args.json:
        for row in rows:
            print(json.dumps(row), flush=True)
        return 0
    console = Console()
    print_rows(console, rows)
    limit = f" (limit {args.limit} reached)" if len(rows) >= args.limit else ""
    console.print(f"{len(rows)} failed{limit}", highlight=False)
    return 0


def print_rows(console: Console, rows: list[dict[str, Any]]) -> None:
    """A table when every id fits whole, else one block per failure."""
    ids = [[r[k] or "" for r in rows] for k in ("request_id", "account_id")]
    stripe_ids = [r["last_stripe_request_id"] or "" for r in rows]
    if table_fits(console, *ids, stripe_ids, rest=70):
        table = Table(
            id_column("request", ids[0]),
            id_column("account", ids[1]),
            "tries",
            "cause",
            "last error",
            id_column("Stripe Request-Id", stripe_ids),
            "age",
        )
        for row in rows:
            table.add_row(
                row["request_id"], row["account_id"], str(row["attempts"]), row["cause"],
                row["last_error"] or "", row["last_stripe_request_id"] or "",
                format_age(row["age_seconds"]),
            )  # fmt: skip
        console.print(table)
        return
    for row in rows:
        print_block(
            console,
            [
                f"{row['request_id']}  {row['cause']}",
                (
                    f"account {row['account_id']}  tries {row['attempts']}  "
                    f"failed {format_age(row['age_seconds'])} ago"
                ),
                f"Stripe Request-Id {row['last_stripe_request_id'] or '-'}",
                row["last_error"] or "",
            ],
        )


def _print_causes(failures: list[Failure], args: argparse.Namespace) -> int:
    causes = count_causes(failures)
    if args.json:
        for cause, count in causes:
            print(json.dumps({"cause": cause, "count": count}), flush=True)
        return 0
    console = Console()
    table = Table("count", "cause (HTTP status and Stripe code)")
    for cause, count in causes:
        table.add_row(str(count), cause)
    console.print(table)
    console.print(f"{len(failures)} failed, {len(causes)} causes", highlight=False)
    return 0
