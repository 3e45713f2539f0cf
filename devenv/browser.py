"""Find a Chromium already on this machine for the browser tests; never download or install one.

Looked for in this order: ``FCD_CHROMIUM`` (a path; if set, it must exist), Debian's
``/usr/bin/chromium``, ``chromium`` / ``chromium-browser`` / ``google-chrome`` on ``PATH``, then a
Chromium that Playwright itself installed earlier (``PLAYWRIGHT_BROWSERS_PATH`` or
``~/.cache/ms-playwright``, ``~/Library/Caches/ms-playwright`` on macOS). Nothing found raises
:class:`BrowserUnavailable`, whose message says how to get one: the browser test fails with it
rather than skipping, since a skipped test checks nothing.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterable, Mapping
from pathlib import Path

DEBIAN_CHROMIUM = Path("/usr/bin/chromium")
PATH_NAMES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")
# Inside a Playwright browsers directory: chromium-<rev>/<platform dir>/<binary>.
PLAYWRIGHT_BINARIES = (
    "chromium-*/chrome-linux*/chrome",
    "chromium-*/chrome-mac*/Chromium.app/Contents/MacOS/Chromium",
    "chromium-*/chrome-mac*/Google Chrome for Testing.app/Contents/MacOS/Google Chrome for Testing",
    "chromium_headless_shell-*/chrome-*/headless_shell",
)
HOW_TO_GET_ONE = (
    "no Chromium found for the browser test. Get one, then run the tests again:\n"
    "  Debian/Ubuntu:  make install-browser   (apt-get install chromium; needs root)\n"
    "  macOS:          brew install --cask chromium\n"
    "  where browser downloads are allowed: .venv/bin/playwright install chromium\n"
    "  or point at any Chrome/Chromium: FCD_CHROMIUM=/path/to/chrome"
)


class BrowserUnavailable(RuntimeError):
    """No Chromium is on this machine; the message says how to get one."""


def _playwright_dirs(environ: Mapping[str, str], home: Path) -> list[Path]:
    given = environ.get("PLAYWRIGHT_BROWSERS_PATH")
    if given and given != "0":
        return [Path(given)]
    return [home / ".cache" / "ms-playwright", home / "Library" / "Caches" / "ms-playwright"]


def _installed_by_playwright(dirs: Iterable[Path]) -> Path | None:
    for directory in dirs:
        for pattern in PLAYWRIGHT_BINARIES:
            found = sorted(directory.glob(pattern), reverse=True)  # newest revision first
            if found:
                return found[0]
    return None


def find_chromium(
    environ: Mapping[str, str] | None = None,
    home: Path | None = None,
    debian: Path = DEBIAN_CHROMIUM,
) -> Path:
    """The Chromium executable to drive; raise :class:`BrowserUnavailable` if there is none."""
    environ = os.environ if environ is None else environ
    home = Path.home() if home is None else home
    given = environ.get("FCD_CHROMIUM")
    if given:
        if shutil.which(given) is None:
            raise BrowserUnavailable(f"FCD_CHROMIUM={given} is not an executable; {HOW_TO_GET_ONE}")
        return Path(given)
    if shutil.which(debian) is not None:
        return debian
    for name in PATH_NAMES:
        on_path = shutil.which(name, path=environ.get("PATH", ""))
        if on_path:
            return Path(on_path)
    from_playwright = _installed_by_playwright(_playwright_dirs(environ, home))
    if from_playwright is not None:
        return from_playwright
    raise BrowserUnavailable(HOW_TO_GET_ONE)
