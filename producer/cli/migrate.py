"""``fcd migrate``: bring a ledger written by an older version up to this version's layout."""

from __future__ import annotations

import argparse
from typing import Any

from ledger.migrate import SCHEMA_VERSION, migrate
from producer.cli.context import CliError, open_ledger


def register(sub: Any) -> None:
    parser: argparse.ArgumentParser = sub.add_parser(
        "migrate", help=f"migrate the ledger's layout to version {SCHEMA_VERSION} (idempotent)"
    )
    parser.add_argument("--dry-run", action="store_true", help="report, change nothing")
    parser.set_defaults(handler=run)


async def run(args: argparse.Namespace) -> int:
    async with open_ledger() as ledger:
        report = await migrate(ledger, dry_run=args.dry_run)
    if report.lock_busy:
        raise CliError("another migration is running; try again in a minute")
    verb = "would index" if args.dry_run else "indexed"
    print(f"ledger layout version {report.from_version} -> {report.to_version}")
    print(f"{verb} {report.indexed_parents} customer-level request(s) missing from their index")
    return 0
