"""``fcd doctor``: check the Stripe key, the pinned API version, the webhook secrets, Redis and
the archive.

Prints a table of findings (see :mod:`producer.doctor`); exits 1 if any finding is a problem,
0 otherwise (warnings included). ``--json`` prints the findings as a JSON list instead.
"""

from __future__ import annotations

import argparse
import json
from dataclasses import asdict
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from ledger.connection import redis_client
from ledger.settings import InvalidSettings, load_settings
from producer.cli.context import EXIT_BAD_INPUT, EXIT_OPERATIONAL, CliError
from producer.doctor import DoctorSettings, Finding, run_checks

_STYLE = {"ok": "green", "warn": "yellow", "problem": "bold red"}


def register(sub: Any) -> None:
    parser: argparse.ArgumentParser = sub.add_parser(
        "doctor",
        help="check the Stripe key, API version, webhook secrets, Redis settings and the archive",
    )
    parser.add_argument("--webhook-payload", type=Path, help="a real delivery's raw body")
    parser.add_argument("--webhook-signature", help="that delivery's Stripe-Signature header")
    parser.add_argument("--json", action="store_true", help="print the findings as JSON")
    parser.set_defaults(handler=run_doctor)


async def run_doctor(args: argparse.Namespace) -> int:
    try:
        settings = load_settings(DoctorSettings)
    except InvalidSettings as exc:
        raise CliError(str(exc), EXIT_BAD_INPUT) from None
    if (args.webhook_payload is None) != (args.webhook_signature is None):
        raise CliError("--webhook-payload and --webhook-signature go together", EXIT_BAD_INPUT)
    payload = None
    if args.webhook_payload is not None:
        try:
            payload = args.webhook_payload.read_bytes()
        except OSError as exc:
            raise CliError(f"cannot read {args.webhook_payload}: {exc}", EXIT_BAD_INPUT) from None
    redis = redis_client(settings)
    try:
        findings = await run_checks(settings, redis, payload, args.webhook_signature)
    finally:
        await redis.aclose()
    if args.json:
        print(json.dumps([asdict(f) for f in findings], indent=2))
    else:
        _print_table(findings)
    return EXIT_OPERATIONAL if any(f.verdict == "problem" for f in findings) else 0


def _print_table(findings: list[Finding]) -> None:
    table = Table(title="fcd doctor")
    table.add_column("check")
    table.add_column("result")
    table.add_column("detail", overflow="fold")
    for finding in findings:
        style = _STYLE[finding.verdict]
        table.add_row(finding.check, f"[{style}]{finding.verdict}[/{style}]", finding.detail)
    Console(width=120).print(table)
