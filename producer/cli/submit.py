"""``fcd submit``: submit account ids given as arguments or in a file."""

from __future__ import annotations

import argparse
import getpass
from pathlib import Path
from typing import Any

from ledger.durability import NotDurable, RedisRefused, check_redis
from ledger.models import RequestSource
from producer.api import InvalidSubmission, Producer, SubmitItem, validate_item
from producer.cli.context import EXIT_BAD_INPUT, CliError, cli_settings, open_ledger
from producer.intake_file import MAX_REPORTED, BadInputFile, read_account_ids


def register(sub: Any) -> None:
    parser: argparse.ArgumentParser = sub.add_parser(
        "submit", help="submit disconnect requests for accounts (fca_…)"
    )
    parser.add_argument("account_ids", nargs="*", metavar="fca_…")
    parser.add_argument("--file", type=Path, help="one id per line, or CSV with account_id")
    parser.add_argument(
        "--source", default=RequestSource.OPERATOR.value, choices=[s.value for s in RequestSource]
    )
    parser.add_argument(
        "--reference", default=None, help="event id, policy name or operator (default: login)"
    )
    parser.add_argument(
        "--reason", required=True, help="why these accounts are disconnected (recorded on each)"
    )
    parser.add_argument("--stripe-account", default=None, help="connected account (acct_…)")
    parser.set_defaults(handler=run)


def collect_items(args: argparse.Namespace) -> list[SubmitItem]:
    """Validate every input before anything is queued; raise CliError (exit 2) listing every
    bad one (up to :data:`producer.intake_file.MAX_REPORTED`)."""
    if bool(args.account_ids) == bool(args.file):
        raise CliError("give account ids or --file, not both or neither", EXIT_BAD_INPUT)
    if not args.reason.strip():
        raise CliError("--reason must not be empty", EXIT_BAD_INPUT)
    try:
        ids = read_account_ids(args.file) if args.file else list(args.account_ids)
    except BadInputFile as exc:
        raise CliError(str(exc), EXIT_BAD_INPUT) from exc
    reference = args.reference if args.reference is not None else getpass.getuser()
    items, problems = [], []
    for position, account_id in enumerate(ids, start=1):
        try:
            items.append(
                validate_item(
                    account_id,
                    source=args.source,
                    reference=reference,
                    reason=args.reason,
                    stripe_account=args.stripe_account,
                )
            )
        except InvalidSubmission as exc:
            problems.append(f"argument {position}: {exc}")
    if problems:
        shown = problems[:MAX_REPORTED]
        more = [f"… and {len(problems) - len(shown)} more"] if len(problems) > len(shown) else []
        raise CliError("\n".join([*shown, *more, "nothing queued"]), EXIT_BAD_INPUT)
    return items


async def run(args: argparse.Namespace) -> int:
    items = collect_items(args)
    settings = cli_settings()
    async with open_ledger(settings, acts=True) as ledger:
        try:
            durable = await check_redis(ledger.redis, settings, "cli", eviction=False)
        except RedisRefused as exc:
            raise CliError(str(exc)) from None
        submissions = await Producer(ledger).submit_all(items)
        try:
            await durable.confirm(ledger.redis, [s.request_id for s in submissions])
        except NotDurable as exc:  # stored, not confirmed: print the ids, exit 1; rerun merges
            for item, submission in zip(items, submissions, strict=True):
                print(f"{item.account_id}\tunconfirmed\t{submission.request_id}")
            raise CliError(f"fcd submit: {exc}") from None
    for item, submission in zip(items, submissions, strict=True):
        verb = "merged into" if submission.merged else "queued as"
        print(f"{item.account_id}\t{verb}\t{submission.request_id}")
    new = sum(not s.merged for s in submissions)
    print(f"{len(submissions)} submitted: {new} new, {len(submissions) - new} merged")
    return 0
