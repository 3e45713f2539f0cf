"""``fcd status``: one request's timeline, by request id or account id.

Times are UTC; a timeline spanning more than a day shows the date on every record. Ids are never
cut (:mod:`producer.cli.layout`): a table when they fit, else one block per record.
"""

from __future__ import annotations

import argparse
import json
from datetime import datetime
from typing import Any

from rich.console import Console
from rich.table import Table

from ledger.models import RequestNotFound
from producer.cli.context import CliError, open_ledger
from producer.cli.layout import id_column, print_block, table_fits

DAY_SECONDS = 86_400


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
            located = await ledger.locate_ref(args.ref)  # Redis first, then the archive
        except RequestNotFound as exc:
            raise CliError(f"no request found for {args.ref}") from exc
    request, history = located.request.model_dump(mode="json"), located.history
    if args.json:
        print(json.dumps({"request": request, "history": history, "stored_in": located.stored_in}))
        return 0
    render_timeline(request, history, Console(), stored_in=located.stored_in)
    return 0


def spans_days(history: list[dict[str, Any]]) -> bool:
    """True when the records are more than a day apart (then every time shows its date)."""
    stamps = [_parse(str(r.get("ts", ""))) for r in history]
    known = [s for s in stamps if s is not None]
    return bool(known) and (max(known) - min(known)).total_seconds() > DAY_SECONDS


def format_ts(ts: Any, with_date: bool) -> str:
    """``HH:MM:SS.mmm`` or ``YYYY-MM-DD HH:MM:SS.mmm`` of an ISO timestamp."""
    text = str(ts or "")
    return f"{text[:10]} {text[11:23]}" if with_date else text[11:23]


def _parse(ts: str) -> datetime | None:
    try:
        return datetime.fromisoformat(ts)
    except ValueError:
        return None


def render_timeline(
    request: dict[str, Any],
    history: list[dict[str, Any]],
    console: Console,
    *,
    stored_in: str = "redis",
) -> None:
    """Print a request's summary and its history, every id whole."""
    print_block(
        console,
        [
            f"{request['request_id']}  status {request['status']}  attempts {request['attempts']}",
            f"account {request['account_id']}  source {request['source']}:{request['reference']}",
            f"reason {request.get('reason', '')!r}  stored in {stored_in}",
        ],
    )
    with_date = spans_days(history)
    stripe_ids = [str(r.get("stripe_request_id") or "") for r in history]
    if table_fits(console, stripe_ids, rest=75 + 11 * with_date):
        _timeline_table(history, with_date, stripe_ids, console)
        return
    for record in history:
        change = _change(record)
        http = f"  HTTP {record['http_status']}" if record.get("http_status") else ""
        rid = record.get("stripe_request_id")
        who = f"by {record['operator']}" if record.get("operator") else ""
        print_block(
            console,
            [
                f"{format_ts(record.get('ts'), with_date)}  {change}  try {record.get('attempt') or 0}{http}",
                f"Stripe Request-Id {rid}" if rid else "",
                " ".join(p for p in (who, _message(record)) if p),
            ],
        )


def _message(record: dict[str, Any]) -> str:
    """The record's message, and how its outcome was established when it says (``evidence``)."""
    message = str(record.get("message") or "")
    evidence = record.get("evidence")
    return f"{message} [evidence: {evidence}]".strip() if evidence else message


def _change(record: dict[str, Any]) -> str:
    event = str(record["event"]).rpartition(".")[2]
    if record.get("from") == record.get("to") or event != "status_changed":
        return event
    return f"{record.get('from') or 'new'} -> {record.get('to')}"


def _timeline_table(
    history: list[dict[str, Any]], with_date: bool, stripe_ids: list[str], console: Console
) -> None:
    table = Table(
        "time (UTC)", "change", "try", "HTTP", id_column("Stripe Request-Id", stripe_ids),
        "operator", "message",
    )  # fmt: skip
    for record in history:
        table.add_row(
            format_ts(record.get("ts"), with_date),
            _change(record),
            "" if record.get("attempt") is None else str(record["attempt"]),
            str(record.get("http_status") or ""),
            record.get("stripe_request_id") or "",
            record.get("operator") or "",
            _message(record),
        )
    console.print(table)
