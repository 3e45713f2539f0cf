"""``fcd export --since <date|duration>``: archived audit events as JSON lines (for a SIEM or a
legal request).

Every audit record of every request in the archive (:mod:`archive`) whose ``ts`` is at or after
``--since``: an ISO date or time (``2026-01-31``, ``2026-01-31T12:00:00Z``; UTC unless it says)
or a duration back from now (``30d``, ``12h``). One JSON object per line, every key of the audit
contract present, one request's records together. To stdout, or ``--output FILE`` (written to a
temporary file beside it, then renamed: a file that exists is complete). Requests still in Redis
are not exported here: their records are in the audit log (``FCD_AUDIT_LOG_PATH``) already.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TextIO

from ledger.archiving import records_since
from ledger.durations import parse_duration
from producer.cli.context import EXIT_BAD_INPUT, CliError, cli_settings


def register(sub: Any) -> None:
    parser: argparse.ArgumentParser = sub.add_parser(
        "export", help="write archived audit events as JSON lines (--since a date or duration)"
    )
    parser.add_argument(
        "--since", required=True, help="ISO date/time (UTC unless given) or duration (30d, 12h)"
    )
    parser.add_argument("--output", type=Path, help="file to write (default: stdout)")
    parser.set_defaults(handler=run)


def parse_since(text: str, now: float | None = None) -> float:
    """Unix seconds of ``--since``: an ISO date or time, or a duration back from ``now``."""
    try:
        return (time.time() if now is None else now) - parse_duration(text)
    except ValueError:
        pass
    try:
        moment = datetime.fromisoformat(text.strip())
    except ValueError:
        raise CliError(
            f"--since {text!r}: give an ISO date or time (2026-01-31, 2026-01-31T12:00Z) "
            "or a duration (30d, 12h)",
            EXIT_BAD_INPUT,
        ) from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.timestamp()


async def run(args: argparse.Namespace) -> int:
    since = parse_since(args.since)
    settings = cli_settings()
    archive = settings.open_archive()
    try:
        if args.output is None:
            count = await _write(records_since(archive, since), sys.stdout)
        else:
            partial = args.output.with_name(args.output.name + ".partial")
            with partial.open("w", encoding="utf-8") as out:
                count = await _write(records_since(archive, since), out)
            os.replace(partial, args.output)
    finally:
        await archive.close()
    print(f"exported {count} audit events from {archive.location}", file=sys.stderr)
    return 0


async def _write(records: Any, out: TextIO) -> int:
    count = 0
    async for record in records:
        out.write(json.dumps(record, separators=(",", ":")) + "\n")
        count += 1
    return count
