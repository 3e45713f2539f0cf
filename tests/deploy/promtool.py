"""Where promtool is, if this machine has it: ``FCD_PROMTOOL``, ``promtool`` on PATH, or the copy
``make install-promtool`` unpacks into ``.tools/`` (Debian's prometheus package; no root)."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
UNPACKED = ROOT / ".tools" / "prometheus" / "usr" / "bin" / "promtool"


def find_promtool() -> str | None:
    for candidate in (os.environ.get("FCD_PROMTOOL"), shutil.which("promtool"), str(UNPACKED)):
        if candidate and shutil.which(candidate):
            return candidate
    return None


def promtool(*args: str, cwd: Path = ROOT) -> subprocess.CompletedProcess[str]:
    """Run promtool (which must exist) and return what it said."""
    binary = find_promtool()
    assert binary is not None
    return subprocess.run(
        [binary, *args], cwd=cwd, capture_output=True, text=True, timeout=120, check=False
    )
