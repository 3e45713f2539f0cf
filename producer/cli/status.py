"""``fcd status``: one request's timeline, by request id or account id."""

from __future__ import annotations

import argparse
import json
from datetime import UTC, datetime
from typing import Any

from rich.console import Console
from rich.table import Table

from ledger.models import RequestNotFound
from producer.cli.context import CliError, open_ledger


def register(sub: Any) -> None:
    parser: argparse.ArgumentParser = sub.add_parser(
        "status", help="show a request's timeline (by dr_… request id or fca_… account id)"
    )
    parser.add_argument("ref", metavar="REQUEST_ID|ACCOUNT_ID")
    parser.add_argument("--json", action="store_true", help="machine-readable output")
    parser.set_defaults(handler=run)


async def run(args: argparse.Namespace) -> int:
    async with open_ledger() as ledger:
        try:
            request = await ledger.resolve(args.ref)
        except RequestNotFound as exc:
            raise CliError(f"no request found for {args.ref}") from exc
        history = await ledger.history(request.request_id)
    if args.json:
        print(json.dumps({"request": request.model_dump(mode="json"), "history": history}))
        return 0
    render_timeline(request.model_dump(mode="json"), history, Console())
    return 0


def render_timeline(
    request: dict[str, Any], history: list[dict[str, Any]], console: Console
) -> None:
    """Print a request's summary line and its history as a table."""
    console.print(
        f"[bold]{request['request_id']}[/] {request['account_id']} "
        f"status=[bold]{request['status']}[/] attempts={request['attempts']} "
        f"source={request['source']}:{request['reference']} reason={request.get('reason', '')!r}"
    )
    table = Table(
        "time (UTC)", "event", "from", "to", "try", "HTTP", "Stripe Request-Id", "message"
    )
    for record in history:
        table.add_row(
            str(record.get("ts", ""))[11:23],
            str(record["event"]).rpartition(".")[2],
            record.get("from") or "",
            record.get("to") or "",
            "" if record.get("attempt") is None else str(record["attempt"]),
            str(record.get("http_status") or ""),
            record.get("stripe_request_id") or "",
            record.get("message") or "",
        )
    console.print(table)


def age(ts: float) -> str:
    """Human age of a unix timestamp, e.g. ``3m12s``."""
    seconds = int(datetime.now(UTC).timestamp() - ts)
    minutes, secs = divmod(max(seconds, 0), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m" if hours else f"{minutes}m{secs:02d}s"
