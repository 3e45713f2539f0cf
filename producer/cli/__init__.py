"""``fcd``: the command line for submitting requests and inspecting the ledger.

Exit codes: 0 success, 1 operational error (e.g. Redis unreachable; ``fcd doctor``: a problem
found), 2 bad input (nothing done), 3 a sweep refused by its blast-radius guard (nothing submitted).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
from collections.abc import Callable, Coroutine
from typing import Any

from producer.cli import (
    doctor,
    export,
    failed,
    migrate,
    pause,
    queue,
    reconcile,
    requeue,
    status,
    submit,
    sweep,
)
from producer.cli.context import CliError

Command = Callable[[argparse.Namespace], Coroutine[Any, Any, int]]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="fcd", description="fc-disconnect command line")
    sub = parser.add_subparsers(dest="command", required=True)
    submit.register(sub)
    status.register(sub)
    failed.register(sub)
    requeue.register(sub)  # also registers `cancel`
    queue.register(sub)
    reconcile.register(sub)
    migrate.register(sub)
    pause.register(sub)  # also registers `resume`
    sweep.register(sub)  # also registers `sweeps`
    doctor.register(sub)
    export.register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``fcd`` console script."""
    parser = build_parser()
    args = parser.parse_args(argv)
    command: Command = args.handler
    try:
        return asyncio.run(command(args))
    except CliError as exc:
        print(f"fcd: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except BrokenPipeError:
        return _reader_went_away()
    except KeyboardInterrupt:
        return 130


def _reader_went_away() -> int:
    """``fcd … --json | head``: the reader closed the pipe. Stop quietly, as Unix tools do:
    point stdout at /dev/null so the interpreter's final flush cannot raise again, and exit
    with 141 (128 + SIGPIPE), what a tool killed by SIGPIPE reports."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())
    return 141
