"""``fcd requeue`` and ``fcd cancel``: operator actions, each audited with who and why.

Both take request ids (``dr_…``) or account ids (``fca_…``: the account's latest request), print
one line per request (``<id> <result> <message>``) and a summary, and exit 1 if any was refused
or not found (the rest are still done). ``--dry-run`` changes nothing.
"""

from __future__ import annotations

import argparse
import getpass
from collections.abc import Sequence
from typing import Any

from ledger.models import RequestNotFound
from ledger.operator import ActionOutcome, ActionResult, cancel, find_failed, requeue
from ledger.store import Ledger
from producer.cli.context import EXIT_BAD_INPUT, CliError, open_ledger
from producer.cli.failed import add_filters, since_seconds


def register(sub: Any) -> None:
    parser: argparse.ArgumentParser = sub.add_parser(
        "requeue", help="re-queue failed requests with a fresh attempt budget (audited)"
    )
    parser.add_argument("refs", nargs="*", metavar="ID", help="dr_… request or fca_… account")
    parser.add_argument("--all-failed", action="store_true", help="every failed request")
    add_filters(parser)
    _add_operator_args(parser)
    parser.set_defaults(handler=run_requeue)
    cancel_parser: argparse.ArgumentParser = sub.add_parser(
        "cancel", help="cancel queued or retry-scheduled requests (in-flight ones are refused)"
    )
    cancel_parser.add_argument("refs", nargs="+", metavar="ID", help="dr_… or fca_…")
    cancel_parser.add_argument(
        "--force",
        action="store_true",
        help="cancel even a request that also serves other callers' merged submissions "
        "(their deletions are dropped too; the refusal without it lists them)",
    )
    _add_operator_args(cancel_parser)
    cancel_parser.set_defaults(handler=run_cancel)


def _add_operator_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--reason", default="", help="why (recorded in the audit trail; not needed for --dry-run)"
    )
    parser.add_argument("--operator", default=None, help="who (default: your login name)")
    parser.add_argument("--dry-run", action="store_true", help="show what would happen")


def _operator(args: argparse.Namespace) -> tuple[str, str]:
    """Who and why; required unless it is a dry run (which records nothing)."""
    operator = args.operator if args.operator is not None else getpass.getuser()
    if args.dry_run:
        return operator, args.reason
    if not operator.strip() or not args.reason.strip():
        raise CliError(
            "--reason is required (and --operator must not be empty) except with --dry-run",
            EXIT_BAD_INPUT,
        )
    return operator, args.reason


async def _resolve_all(ledger: Ledger, refs: Sequence[str]) -> list[str]:
    ids = []
    for ref in refs:
        try:
            ids.append((await ledger.resolve(ref)).request_id)
        except RequestNotFound:
            ids.append(ref)  # reported as not found by the action itself
    return ids


async def _requeue_targets(ledger: Ledger, args: argparse.Namespace) -> list[str]:
    if bool(args.refs) == bool(args.all_failed):
        raise CliError("give request ids or --all-failed, not both or neither", EXIT_BAD_INPUT)
    if args.refs:
        if args.since is not None or args.code is not None:
            raise CliError("--since and --code only filter --all-failed", EXIT_BAD_INPUT)
        return await _resolve_all(ledger, args.refs)
    failed = await find_failed(
        ledger, since_seconds=since_seconds(args), code=args.code, limit=args.limit
    )
    return [request.request_id for request in failed]


async def run_requeue(args: argparse.Namespace) -> int:
    operator, reason = _operator(args)
    async with open_ledger(acts=not args.dry_run) as ledger:
        targets = await _requeue_targets(ledger, args)
        outcomes = [
            await requeue(ledger, rid, operator=operator, reason=reason, dry_run=args.dry_run)
            for rid in targets
        ]
    return report(outcomes, "re-queued")


async def run_cancel(args: argparse.Namespace) -> int:
    operator, reason = _operator(args)
    async with open_ledger(acts=not args.dry_run) as ledger:
        targets = await _resolve_all(ledger, args.refs)
        outcomes = [
            await cancel(
                ledger,
                rid,
                operator=operator,
                reason=reason,
                dry_run=args.dry_run,
                force=args.force,
            )
            for rid in targets
        ]
    return report(outcomes, "cancelled")


def report(outcomes: Sequence[ActionOutcome], verb: str) -> int:
    """One line per request, then a summary; exit 1 if anything was refused or not found."""
    for outcome in outcomes:
        print(f"{outcome.request_id}\t{outcome.result.value}\t{outcome.message}")
    done = sum(o.result == ActionResult.DONE for o in outcomes)
    would = sum(o.result == ActionResult.WOULD_DO for o in outcomes)
    refused = len(outcomes) - done - would
    summary = f"{done} {verb}, {refused} refused or not found"
    if would:
        summary = f"dry run: {would} would be {verb}, {refused} refused or not found"
    print(summary)
    return 0 if refused == 0 else 1
