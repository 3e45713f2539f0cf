"""``fcd sweep`` (run a retention policy; a dry run unless ``--apply``) and ``fcd sweeps``.

Where the accounts come from decides who runs the sweep:

- a file (``--file``, or a policy with ``source = "file"``): this process reads it and runs the
  sweep itself (no Stripe call is needed);
- Stripe's list endpoint: the CLI holds no Stripe key and may not import the worker's rate
  limiter, so it records the run as ``requested`` and enqueues a sweep job on the bulk queue; a
  bulk worker lists through the shared limiter (``list`` budget, priority ``bulk``) and runs the
  same sweep code. The worker refuses if its policy file's definition differs from this one.

Either way the CLI follows the run record with a progress bar and prints the summary. Exit codes:
0 finished (a dry run, or everything submitted), 1 failed, 2 bad input, 3 refused by the
blast-radius guard (nothing submitted; ``--force`` overrides), 4 cancelled by an operator.

``fcd sweeps`` lists recent runs with why a waiting one waits (:mod:`producer.sweep_waits`);
``fcd sweeps cancel RUN --reason …`` cancels one (:meth:`retention.runs.SweepRuns.cancel`, the
same core as the dashboard's cancel button).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import getpass
import json
import time
from pathlib import Path
from typing import Any

from rich.console import Console

from ledger.store import Ledger
from producer.cli.context import EXIT_BAD_INPUT, CliError, cli_settings, open_ledger
from producer.cli.sweep_view import Explain, follow, print_runs, summary_lines
from producer.settings import ProducerSettings
from producer.sweep_waits import wait_reason
from retention.jobs import enqueue_sweep_job
from retention.policy import PolicyError, RetentionPolicy, get_policy
from retention.runs import CannotCancel, SweepRun, SweepRuns, SweepStatus, new_sweep_id
from retention.sources import BadAccountFile, file_pages
from retention.sweep import SweepOptions, run_guarded

EXIT_REFUSED = 3
EXIT_CANCELLED = 4
LOCAL_LOCK_SECONDS = 6 * 3600


def register(sub: Any) -> None:
    parser: argparse.ArgumentParser = sub.add_parser(
        "sweep", help="run a retention policy (dry run unless --apply)"
    )
    parser.add_argument("--policy", required=True, help="policy name in the policy file")
    parser.add_argument(
        "--policies", type=Path, help="policy file (default FCD_RETENTION_POLICIES)"
    )
    parser.add_argument("--file", type=Path, help="accounts from this CSV/JSON-lines file instead")
    parser.add_argument("--apply", action="store_true", help="submit (default: dry run)")
    parser.add_argument("--force", action="store_true", help="override the blast-radius guard")
    parser.add_argument("--sample", type=int, default=10, help="sample rows to show")
    parser.add_argument("--json", action="store_true", help="print the run record as JSON")
    parser.add_argument("--operator", default=None, help="who runs it (default: login)")
    parser.set_defaults(handler=run)
    runs_parser: argparse.ArgumentParser = sub.add_parser(
        "sweeps", help="recent sweep runs (and why a waiting one waits); `sweeps cancel RUN`"
    )
    runs_parser.add_argument("--limit", type=int, default=20)
    runs_parser.add_argument("--json", action="store_true")
    runs_parser.set_defaults(handler=list_runs)
    verbs = runs_parser.add_subparsers(dest="verb")
    cancel_parser: argparse.ArgumentParser = verbs.add_parser(
        "cancel", help="cancel a sweep run that has not ended (submitted requests stay queued)"
    )
    cancel_parser.add_argument("run_id", metavar="RUN", help="sw_… run id (from fcd sweeps)")
    cancel_parser.add_argument("--reason", required=True, help="why (recorded in the audit trail)")
    cancel_parser.add_argument("--operator", default=None, help="who (default: login name)")
    cancel_parser.set_defaults(handler=cancel_run)


async def run(args: argparse.Namespace) -> int:
    settings = cli_settings()
    try:
        policy = get_policy(args.policies or settings.retention_policies, args.policy)
    except PolicyError as exc:
        raise CliError(str(exc), EXIT_BAD_INPUT) from exc
    account_file = args.file or (policy.file if policy.source == "file" else None)
    if account_file is not None and not account_file.is_file():
        raise CliError(f"{account_file}: no such file", EXIT_BAD_INPUT)
    async with open_ledger(settings, acts=True) as ledger:
        runs = SweepRuns(ledger.redis, ledger.prefix, ledger.audit)
        run = await runs.create(_new_run(policy, args, account_file))
        local = None
        if account_file is None:
            await enqueue_sweep_job(
                ledger.redis, ledger.bulk_queue_name, run.run_id, settings.job_expires_seconds
            )
        else:
            options = SweepOptions(
                apply=args.apply, force=args.force, max_queue_depth=settings.bulk_queue_max_depth
            )
            local = asyncio.create_task(
                _run_local(ledger, runs, run, policy, account_file, options)
            )
        final = await follow(
            runs, run.run_id, local, Console(stderr=True), _explainer(ledger, settings)
        )
        if local is not None:
            await _settle(local)
            final = await runs.get(run.run_id)
    _print(final, args)
    codes = {SweepStatus.FINISHED: 0, SweepStatus.REFUSED: EXIT_REFUSED}
    return codes.get(final.status, EXIT_CANCELLED if final.status == SweepStatus.CANCELLED else 1)


def _new_run(policy: RetentionPolicy, args: argparse.Namespace, path: Path | None) -> SweepRun:
    return SweepRun(
        run_id=new_sweep_id(),
        policy=policy.name,
        policy_digest=policy.digest,
        trigger="cli",
        apply=args.apply,
        forced=args.force,
        operator=args.operator or getpass.getuser(),
        source=f"file:{path}" if path is not None else "stripe",
        status=SweepStatus.LISTING if path is not None else SweepStatus.REQUESTED,
        started_at=time.time(),
    )


async def _run_local(
    ledger: Ledger,
    runs: SweepRuns,
    run: SweepRun,
    policy: RetentionPolicy,
    path: Path,
    options: SweepOptions,
) -> SweepRun:
    pages = file_pages(path)
    return await run_guarded(
        ledger, runs, run, policy, pages, options, lock_seconds=LOCAL_LOCK_SECONDS
    )


async def _settle(task: asyncio.Task[Any]) -> None:
    """Wait for the local sweep; its failure is already in the run record, with the reason."""
    with contextlib.suppress(BadAccountFile, OSError, ValueError):
        await task


def _print(run: SweepRun, args: argparse.Namespace) -> None:
    if args.json:
        print(json.dumps(run.model_dump(mode="json"), indent=2))
        return
    print("\n".join(summary_lines(run, args.sample)))


def _explainer(ledger: Ledger, settings: ProducerSettings) -> Explain:
    async def explain(run: SweepRun) -> str | None:
        return await wait_reason(ledger, run, max_queue_depth=settings.bulk_queue_max_depth)

    return explain


async def list_runs(args: argparse.Namespace) -> int:
    settings = cli_settings()
    async with open_ledger(settings) as ledger:
        runs = await SweepRuns(ledger.redis, ledger.prefix, ledger.audit).recent(args.limit)
        explain = _explainer(ledger, settings)
        reasons = {run.run_id: await explain(run) for run in runs}
    if args.json:
        rows = [{**r.model_dump(mode="json"), "waiting": reasons[r.run_id]} for r in runs]
        print(json.dumps(rows, indent=2))
    else:
        print_runs(Console(), runs, reasons)
    return 0


async def cancel_run(args: argparse.Namespace) -> int:
    """``fcd sweeps cancel RUN --reason …``: exit 1 if the run is unknown or already ended."""
    operator = args.operator or getpass.getuser()
    if not args.reason.strip():
        raise CliError("--reason must not be empty", EXIT_BAD_INPUT)
    async with open_ledger(acts=True) as ledger:
        runs = SweepRuns(ledger.redis, ledger.prefix, ledger.audit)
        try:
            run = await runs.cancel(args.run_id, operator=operator, reason=args.reason)
        except CannotCancel as exc:
            raise CliError(str(exc)) from exc
    print(f"{run.run_id}\t{run.status.value}\t{run.message}")
    return 0
