"""``fcd pause`` and ``fcd resume``: the kill switch for all disconnect work, by hand.

Pausing sets the same flag the workers' circuit breaker sets on a 401/403: no worker is granted a
Stripe call while it is set, and requests stay queued (nothing fails). Both commands record the
operator and the reason in the audit trail (``service.paused`` / ``service.resumed``).
"""

from __future__ import annotations

import argparse
import getpass
from typing import Any

from control.pause import pause, resume
from producer.cli.context import open_ledger


def register(sub: Any) -> None:
    for name, handler, help_text in (
        ("pause", run_pause, "stop all workers from calling Stripe (requests stay queued)"),
        ("resume", run_resume, "let workers call Stripe again"),
    ):
        parser: argparse.ArgumentParser = sub.add_parser(name, help=help_text)
        parser.add_argument("--reason", required=True, help="why (recorded in the audit trail)")
        parser.add_argument("--operator", default=None, help="who (default: login name)")
        parser.set_defaults(handler=handler)


async def run_pause(args: argparse.Namespace) -> int:
    operator = args.operator or getpass.getuser()
    async with open_ledger(acts=True) as ledger:
        await pause(
            ledger.redis, operator, args.reason, "cli", key=ledger.pause_key, audit=ledger.audit
        )
    print(f"paused by {operator}: {args.reason}")
    return 0


async def run_resume(args: argparse.Namespace) -> int:
    operator = args.operator or getpass.getuser()
    async with open_ledger(acts=True) as ledger:
        lifted = await resume(
            ledger.redis, operator, args.reason, key=ledger.pause_key, audit=ledger.audit
        )
    if lifted is None:
        print("was not paused")
        return 0
    print(
        f"resumed by {operator} (paused by {lifted.operator} via {lifted.source}: {lifted.reason})"
    )
    return 0
