"""The runbook names only commands that exist: every ``fcd …`` in it parses with the real parser."""

from __future__ import annotations

import argparse
import re
import shlex
from pathlib import Path

import pytest

from producer.cli import build_parser

RUNBOOK = Path(__file__).resolve().parents[1] / "deploy" / "runbook.md"
INLINE = re.compile(r"`(fcd [^`]*)`")
FENCE = re.compile(r"```sh\n(.*?)```", re.DOTALL)


def _subcommands() -> set[str]:
    parser = build_parser()
    actions = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    return {name for action in actions for name in action.choices}


def _fenced_commands(text: str) -> list[str]:
    lines = [line.strip() for block in FENCE.findall(text) for line in block.splitlines()]
    return [line.split("  #")[0].strip() for line in lines if line.startswith("fcd ")]


def test_every_fcd_subcommand_in_the_runbook_exists() -> None:
    """Each ``fcd <sub>`` mentioned inline or in a code block is a subcommand of the CLI."""
    text = RUNBOOK.read_text()
    mentioned = {cmd.split()[1] for cmd in INLINE.findall(text) + _fenced_commands(text)}
    assert mentioned, "the runbook names no fcd command"
    assert mentioned <= _subcommands(), mentioned - _subcommands()
    assert {"failed", "requeue", "cancel", "queue", "reconcile"} <= mentioned


def _all_commands() -> list[str]:
    text = RUNBOOK.read_text()
    return sorted(set(INLINE.findall(text) + _fenced_commands(text)))


@pytest.mark.parametrize("command", _all_commands())
def test_runbook_command_lines_parse(command: str) -> None:
    """Every command line in the runbook is accepted by the parser, options included."""
    try:
        build_parser().parse_args(shlex.split(command)[1:])
    except SystemExit as exc:  # argparse exits 2 on an unknown option or a missing argument
        pytest.fail(f"runbook command does not parse: {command} ({exc})")
