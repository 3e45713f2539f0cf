"""``fcd failed``: what failed, why, and the Stripe Request-Id to quote to Stripe support."""

from __future__ import annotations

import argparse
import json
import time
from typing import Any

from rich.console import Console
from rich.table import Table

from ledger.models import DisconnectRequest
from ledger.operator import find_failed
from producer.cli.context import EXIT_BAD_INPUT, CliError, open_ledger
from producer.durations import format_age, parse_duration


def register(sub: Any) -> None:
    parser: argparse.ArgumentParser = sub.add_parser(
        "failed", help="list failed requests, newest first, with the last error and Request-Id"
    )
    add_filters(parser)
    parser.add_argument("--json", action="store_true", help="one JSON object per line")
    parser.set_defaults(handler=run)


def add_filters(parser: argparse.ArgumentParser) -> None:
    """``--since``/``--code``/``--limit``, shared with ``fcd requeue --all-failed``."""
    parser.add_argument("--since", metavar="DURATION", help="failed within, e.g. 30m, 2h, 7d")
    parser.add_argument(
        "--code", help="last error code: a Stripe code (api_key_expired) or an HTTP status (403)"
    )
    parser.add_argument("--limit", type=int, default=500, help="at most this many (default 500)")


def since_seconds(args: argparse.Namespace) -> float | None:
    if args.since is None:
        return None
    try:
        return parse_duration(args.since)
    except ValueError as exc:
        raise CliError(f"--since: {exc}", EXIT_BAD_INPUT) from exc


def failed_row(request: DisconnectRequest, now: float) -> dict[str, Any]:
    """The fields an operator needs about one failure (``--json`` prints exactly these)."""
    return {
        "request_id": request.request_id,
        "account_id": request.account_id,
        "attempts": request.attempts,
        "last_error_code": request.last_error_code,
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
        failed = await find_failed(ledger, since_seconds=window, code=args.code, limit=args.limit)
    now = time.time()
    rows = [failed_row(request, now) for request in failed]
    if args.json:
        for row in rows:
            print(json.dumps(row))
        return 0
    table = Table("request", "account", "tries", "code", "last error", "Stripe Request-Id", "age")
    for row in rows:
        table.add_row(
            row["request_id"],
            row["account_id"],
            str(row["attempts"]),
            row["last_error_code"] or "",
            row["last_error"] or "",
            row["last_stripe_request_id"] or "",
            format_age(row["age_seconds"]),
        )
    console = Console()
    console.print(table)
    console.print(
        f"{len(rows)} failed"
        + (f" (limit {args.limit} reached)" if len(rows) >= args.limit else "")
    )
    return 0
