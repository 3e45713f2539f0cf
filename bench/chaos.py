"""``make chaos`` (``--short``: the variant ``make test`` runs): every fault at once, then one table.

Starts a private Redis (AOF, ``appendfsync everysec``), the emulator, the intake and 4 urgent +
2 bulk workers in a temporary directory, runs the seeded schedule of :mod:`devenv.chaos` and
prints the invariants and the fault counts. Exits 1 if an invariant broke (the directory, with
every log, audit file and the AOF, is kept and named), else 0.
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
import sys
import tempfile
from pathlib import Path

from rich.console import Console
from rich.table import Table

from devenv.chaos import ChaosResult, full_config, run, short_config


def table(result: ChaosResult) -> Table:
    config = result.config
    title = (
        f"chaos ({config.name}, seed {config.seed}): {result.seconds:.0f} s, "
        f"{'all invariants held' if result.ok else 'INVARIANTS BROKEN'}"
    )
    out = Table("", "value", "must be", "", title=title)
    out.add_row("[bold]invariants[/]", "", "", "")
    for item in result.findings.invariants:
        verdict = "[green]ok[/]" if item.ok else "[red]BROKEN[/]"
        out.add_row(item.name, str(item.value), f"<= {item.limit}" if item.limit else "0", verdict)
    out.add_row("[bold]faults injected[/]", "", "", "")
    for name, value in sorted(result.faults.items()):
        out.add_row(name, str(value), "", "")
    out.add_row("[bold]figures[/]", "", "", "")
    for name, value in result.figures.items():
        out.add_row(name, str(value), "", "")
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="bench/chaos.py", description=__doc__)
    parser.add_argument("--short", action="store_true", help="the < 2 min variant")
    parser.add_argument("--seed", type=int, default=12)
    parser.add_argument(
        "--failover", action="store_true", help="with --short: Redis behind Sentinel, fail-over"
    )
    parser.add_argument("--keep", action="store_true", help="keep the run's directory")
    args = parser.parse_args(argv)
    config = (
        short_config(args.seed, failover=args.failover) if args.short else full_config(args.seed)
    )
    workdir = Path(tempfile.mkdtemp(prefix=f"fcd-chaos-{config.name}-"))
    result = asyncio.run(run(config, workdir))
    console = Console(width=120)
    console.print(table(result))
    for name, examples in result.findings.examples.items():
        console.print(f"[red]{name}[/]: " + "; ".join(examples))
    if result.ok and not args.keep:
        shutil.rmtree(workdir, ignore_errors=True)
    else:
        console.print(f"logs, audit files and the AOF kept in {workdir}")
    return 0 if result.ok else 1


if __name__ == "__main__":
    sys.exit(main())
