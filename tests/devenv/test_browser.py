"""Finding a Chromium for the browser tests: the order of places, and the failure that says how.

Each test lays out real executable files in a temporary directory and points the finder at it.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from devenv.browser import BrowserUnavailable, find_chromium


def _executable(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("#!/bin/sh\nexit 0\n")
    path.chmod(0o755)
    return path


@pytest.fixture
def nowhere(tmp_path: Path) -> Path:
    """A Debian path that does not exist on this test's 'machine'."""
    return tmp_path / "no-debian" / "chromium"


def test_fcd_chromium_wins(tmp_path: Path, nowhere: Path) -> None:
    """An executable named by FCD_CHROMIUM is used even when others exist."""
    chosen = _executable(tmp_path / "custom" / "chrome")
    debian = _executable(tmp_path / "usr" / "bin" / "chromium")
    environ = {"FCD_CHROMIUM": str(chosen), "PATH": ""}
    assert find_chromium(environ, home=tmp_path, debian=debian) == chosen


def test_fcd_chromium_naming_nothing_fails_with_how_to_get_one(tmp_path: Path) -> None:
    """A FCD_CHROMIUM that is not an executable is an error, not a silent fallback."""
    environ = {"FCD_CHROMIUM": str(tmp_path / "missing"), "PATH": ""}
    with pytest.raises(BrowserUnavailable, match=r"FCD_CHROMIUM=.*missing is not an executable"):
        find_chromium(environ, home=tmp_path, debian=tmp_path / "nothing")


def test_debian_chromium_before_path(tmp_path: Path) -> None:
    """Debian's /usr/bin/chromium comes before anything on PATH."""
    debian = _executable(tmp_path / "usr" / "bin" / "chromium")
    other = _executable(tmp_path / "bin" / "chromium")
    environ = {"PATH": str(other.parent)}
    assert find_chromium(environ, home=tmp_path, debian=debian) == debian


def test_chromium_on_path(tmp_path: Path, nowhere: Path) -> None:
    """Without Debian's, a chromium-browser on PATH (Ubuntu, Homebrew) is used."""
    on_path = _executable(tmp_path / "bin" / "chromium-browser")
    environ = {"PATH": str(on_path.parent)}
    assert find_chromium(environ, home=tmp_path, debian=nowhere) == on_path


def test_a_chromium_playwright_installed_earlier(tmp_path: Path, nowhere: Path) -> None:
    """A browser in Playwright's cache is used, the newest revision first; nothing downloaded."""
    cache = tmp_path / ".cache" / "ms-playwright"
    _executable(cache / "chromium-1100" / "chrome-linux" / "chrome")
    newest = _executable(cache / "chromium-1200" / "chrome-linux64" / "chrome")
    assert find_chromium({"PATH": ""}, home=tmp_path, debian=nowhere) == newest


def test_playwright_browsers_path_is_honoured(tmp_path: Path, nowhere: Path) -> None:
    """PLAYWRIGHT_BROWSERS_PATH replaces the default cache directory."""
    shell = _executable(
        tmp_path / "pw" / "chromium_headless_shell-1200" / "chrome-linux" / "headless_shell"
    )
    environ = {"PATH": "", "PLAYWRIGHT_BROWSERS_PATH": str(tmp_path / "pw")}
    assert find_chromium(environ, home=tmp_path, debian=nowhere) == shell


def test_no_browser_anywhere_fails_and_says_how_to_get_one(tmp_path: Path, nowhere: Path) -> None:
    """Nothing found raises with every way to get one; the browser test fails with this text."""
    with pytest.raises(BrowserUnavailable) as caught:
        find_chromium({"PATH": ""}, home=tmp_path, debian=nowhere)
    message = str(caught.value)
    assert "make install-browser" in message
    assert "playwright install chromium" in message
    assert "FCD_CHROMIUM=" in message
