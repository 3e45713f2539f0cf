"""The lock files agree with pyproject.toml, and every kind of disagreement is caught.

The first tests check the repository's own locks; the others break a copy of them in the ways a
branch does (a dependency added, dropped or re-ranged in pyproject.toml without ``make lock``, a
hand edit) and assert the checker names it and says "run make lock".
"""

from __future__ import annotations

import importlib.metadata
import re
import shutil
import subprocess
from pathlib import Path

import pytest
from packaging.markers import Marker

from devenv.locks import (
    DEV_LOCK,
    RUNTIME_LOCK,
    compile_command,
    load_inputs,
    lock_problems,
    parse_lock,
)

ROOT = Path(__file__).resolve().parents[2]
LOCKS = [RUNTIME_LOCK, DEV_LOCK]


@pytest.mark.parametrize("lock", LOCKS, ids=str)
def test_repository_lock_agrees_with_pyproject(lock: Path) -> None:
    """Every requirement of pyproject.toml is pinned within its range, hashed, and nothing else
    is pinned at top level; dev pins equal runtime pins."""
    problems = lock_problems(ROOT, lock)
    assert not problems, "\n".join(problems)


@pytest.fixture
def copy(tmp_path: Path) -> Path:
    """pyproject.toml and requirements/ copied, to be broken."""
    shutil.copy(ROOT / "pyproject.toml", tmp_path / "pyproject.toml")
    shutil.copytree(ROOT / "requirements", tmp_path / "requirements")
    return tmp_path


def _edit(path: Path, old: str, new: str) -> None:
    text = path.read_text()
    assert old in text, f"{old!r} not in {path}"
    path.write_text(text.replace(old, new, 1))


def _problems(root: Path) -> list[str]:
    return lock_problems(root, RUNTIME_LOCK) + lock_problems(root, DEV_LOCK)


def test_a_dependency_added_without_make_lock_fails(copy: Path) -> None:
    """A new runtime dependency absent from both locks is reported for each, with the fix."""
    _edit(copy / "pyproject.toml", '"rich>=13.7",', '"rich>=13.7",\n    "tomli-w>=1.0",')
    problems = _problems(copy)
    assert problems == [
        "tomli-w>=1.0 (pyproject.toml) is not pinned in requirements/runtime.txt: run make lock",
        "tomli-w>=1.0 (pyproject.toml) is not pinned in requirements/dev.txt: run make lock",
    ]


def test_a_range_the_pin_no_longer_satisfies_fails(copy: Path) -> None:
    """Raising a lower bound past the pinned version is reported."""
    _edit(copy / "pyproject.toml", '"redis>=5.0,<6"', '"redis>=6"')
    problems = _problems(copy)
    assert len(problems) == 2
    assert all("outside redis>=6 (pyproject.toml): run make lock" in p for p in problems)


def test_a_dev_dependency_added_without_make_lock_fails_only_the_dev_lock(copy: Path) -> None:
    """A dev extra is checked against the dev lock only."""
    _edit(copy / "pyproject.toml", '"types-pyyaml",', '"types-pyyaml",\n    "honcho-export-x>=1",')
    assert lock_problems(copy, RUNTIME_LOCK) == []
    assert lock_problems(copy, DEV_LOCK) == [
        "honcho-export-x>=1 (pyproject.toml) is not pinned in requirements/dev.txt: run make lock"
    ]


def test_a_dependency_dropped_from_pyproject_fails(copy: Path) -> None:
    """A pin kept for pyproject.toml after pyproject.toml stopped asking for it is reported."""
    _edit(copy / "pyproject.toml", '    "rich>=13.7",\n', "")
    problems = _problems(copy)
    assert (
        "requirements/runtime.txt pins rich for pyproject.toml, which no longer asks for it: "
        "run make lock"
    ) in problems


def test_an_extra_top_level_pin_fails(copy: Path) -> None:
    """A pin that neither pyproject.toml nor another pin requires is reported."""
    with (copy / RUNTIME_LOCK).open("a") as lock:
        lock.write("six==1.16.0 \\\n    --hash=sha256:" + "0" * 64 + "\n")
    assert lock_problems(copy, RUNTIME_LOCK) == [
        "requirements/runtime.txt pins six==1.16.0, which nothing requires: run make lock"
    ]


def test_a_pin_without_hashes_fails(copy: Path) -> None:
    """A hand-added pin without ``--hash`` is reported (pip's hash-checking mode would refuse)."""
    path = copy / RUNTIME_LOCK
    [structlog] = parse_lock(path.read_text())["structlog"]
    unhashed = re.sub(r"(structlog==\S+) \\\n(\s+--hash=\S+( \\)?\n)+", r"\1\n", path.read_text())
    path.write_text(unhashed)
    assert lock_problems(copy, RUNTIME_LOCK) == [
        f"requirements/runtime.txt pins structlog=={structlog.version} without --hash: run make lock"
    ]


def test_dev_pins_apart_from_runtime_pins_fail(copy: Path) -> None:
    """The dev lock pinning a runtime package at another version is reported."""
    runtime = parse_lock((copy / RUNTIME_LOCK).read_text())
    [aiohttp] = runtime["aiohttp"]
    _edit(copy / DEV_LOCK, f"aiohttp=={aiohttp.version}", "aiohttp==3.10.0")
    assert lock_problems(copy, DEV_LOCK) == [
        "requirements/dev.txt and requirements/runtime.txt pin aiohttp differently: run make lock"
    ]


def test_a_hand_written_lock_is_refused(copy: Path) -> None:
    """A lock without make lock's header (hand-written, or another tool's) is reported."""
    text = (copy / RUNTIME_LOCK).read_text()
    (copy / RUNTIME_LOCK).write_text(text.split("\n", 2)[2])
    assert lock_problems(copy, RUNTIME_LOCK) == [
        "requirements/runtime.txt was not written by `make lock`: run make lock"
    ]


def test_the_lock_command_is_hermetic_and_hash_pinned() -> None:
    """``make lock`` asks uv for a universal, hashed resolution bounded by the pyproject date,
    ignoring user configuration, for the oldest Python the project supports."""
    inputs = load_inputs(ROOT / "pyproject.toml")
    command = compile_command(inputs, DEV_LOCK, uv="uv")
    for flag in ("--no-config", "--universal", "--generate-hashes"):
        assert flag in command
    assert command[command.index("--exclude-newer") + 1] == inputs.exclude_newer
    assert command[command.index("--python-version") + 1] == "3.11"
    assert command[command.index("--constraint") + 1] == str(RUNTIME_LOCK)
    assert "--constraint" not in compile_command(inputs, RUNTIME_LOCK, uv="uv")


def test_this_environment_is_exactly_the_dev_lock() -> None:
    """Every dev-lock pin that applies to this interpreter is installed at that version:
    ``make install`` installed from the lock, nothing resolved anew."""
    pins = parse_lock((ROOT / DEV_LOCK).read_text())
    wrong = []
    for name, entries in pins.items():
        for pin in entries:
            if pin.marker and not Marker(pin.marker).evaluate():
                continue
            installed = importlib.metadata.version(name)
            if installed != str(pin.version):
                wrong.append(f"{name} {installed} (locked {pin.version})")
    assert not wrong, f"not the dev lock: {wrong}; run make install"


def test_make_install_refuses_a_python_older_than_requires_python() -> None:
    """The Makefile's MIN_PYTHON is pyproject's requires-python floor, so ``make install`` stops
    at once, with what to do, on an interpreter the project does not support."""
    makefile = (ROOT / "Makefile").read_text()
    [floor] = re.findall(r"^MIN_PYTHON := (\S+)$", makefile, re.MULTILINE)
    assert floor == load_inputs(ROOT / "pyproject.toml").python


def test_make_install_and_ci_install_only_from_the_lock() -> None:
    """``make install`` runs pip only with ``--require-hashes -r requirements/dev.txt`` or
    ``--no-deps`` (the project itself); CI installs the browser first, then runs ``make test``."""
    dry_run = subprocess.run(
        ["make", "-n", "-B", "install"], cwd=ROOT, capture_output=True, text=True, check=True
    ).stdout
    installs = [line for line in dry_run.splitlines() if "pip install" in line]
    assert any("--require-hashes -r requirements/dev.txt" in line for line in installs), dry_run
    assert any("--no-deps" in line and line.rstrip().endswith("-e .") for line in installs)
    assert all("--require-hashes" in line or "--no-deps" in line for line in installs), installs
    ci = [line.strip() for line in (ROOT / ".ci" / "run").read_text().splitlines()]
    assert ci.index("make install-browser") < ci.index("make test")
    assert (
        "apt-get"
        not in subprocess.run(
            ["make", "-n", "test"], cwd=ROOT, capture_output=True, text=True, check=True
        ).stdout
    )
