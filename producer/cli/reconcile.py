"""``fcd reconcile``: run the reconciler once, by hand (the workers also run it on a schedule)."""

from __future__ import annotations

import argparse
import getpass
from typing import Any

from ledger.jobs import ARQ_JOB_KEY_PREFIX
from ledger.reconcile import reconcile
from producer.cli.context import CliError, cli_settings, open_ledger
from retention.runs import SweepRuns, recover_runs


def register(sub: Any) -> None:
    parser: argparse.ArgumentParser = sub.add_parser(
        "reconcile",
        help="re-enqueue unfinished requests whose arq job is gone, and stuck in_progress ones",
    )
    parser.add_argument("--dry-run", action="store_true", help="report, change nothing")
    parser.add_argument("--operator", default=None, help="who (default: your login name)")
    parser.set_defaults(handler=run)


async def run(args: argparse.Namespace) -> int:
    settings = cli_settings()
    operator = args.operator if args.operator is not None else getpass.getuser()
    async with open_ledger(settings, acts=True) as ledger:
        report = await reconcile(
            ledger,
            lease_seconds=settings.in_progress_lease_seconds,
            dry_run=args.dry_run,
            operator=operator,
        )
        runs = SweepRuns(ledger.redis, ledger.prefix, ledger.audit)
        lost = await recover_runs(runs, job_key_prefix=ARQ_JOB_KEY_PREFIX, dry_run=args.dry_run)
    if report.lock_busy:
        raise CliError("another reconcile pass is running; try again in a minute")
    for repair in report.repairs:
        action = "would repair" if args.dry_run else f"-> job {repair.new_job_id or '(moved)'}"
        print(f"{repair.request_id}\t{repair.status.value}\t{repair.problem}\t{action}")
    for run in lost:
        action = "would fail" if args.dry_run else "failed"
        print(f"{run.run_id}\t{run.status.value}\t{run.problem}\t{action}")
    verb = "would repair" if args.dry_run else "repaired"
    print(
        f"scanned {report.scanned} unfinished requests; {verb} {len(report.repairs)}; "
        f"lost sweep runs {len(lost)}"
    )
    return 0
