"""Reading account ids from a file: one id per line, or a CSV with an ``account_id`` column.

The whole file is validated before anything is submitted; every bad line is reported with its
number (the first :data:`MAX_REPORTED` of them, then how many more) and nothing is queued.
"""

from __future__ import annotations

import csv
import io
from pathlib import Path

from ledger.models import ACCOUNT_ID_RE

MAX_REPORTED = 20


class BadInputFile(ValueError):
    """The file cannot be submitted; the message names the file and every bad line (up to
    :data:`MAX_REPORTED`), one per line."""


class _Problems:
    """Bad lines collected while reading, raised together at the end."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.lines: list[str] = []
        self.count = 0

    def check(self, number: int, value: str) -> None:
        if ACCOUNT_ID_RE.match(value):
            return
        self.count += 1
        if len(self.lines) < MAX_REPORTED:
            self.lines.append(
                f"{self.path}: line {number}: {value!r} is not a Financial Connections "
                "account id (fca_…)"
            )

    def raise_any(self) -> None:
        if not self.count:
            return
        more = self.count - len(self.lines)
        tail = [f"… and {more} more bad lines"] if more else []
        summary = f"{self.path}: {self.count} bad line{'s' * (self.count != 1)}; nothing queued"
        raise BadInputFile("\n".join([*self.lines, *tail, summary]))


def read_account_ids(path: Path) -> list[str]:
    """All account ids in ``path``, in order; raise :class:`BadInputFile` on any bad line."""
    try:
        text = path.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as exc:
        raise BadInputFile(f"{path}: cannot read: {exc}") from exc
    lines = text.splitlines()
    first = next((line for line in lines if line.strip()), "")
    if "," in first or first.strip().lower() == "account_id":
        return _read_csv(path, text)
    ids, problems = [], _Problems(path)
    for number, line in enumerate(lines, start=1):
        value = line.strip()
        if not value or value.startswith("#"):
            continue
        problems.check(number, value)
        ids.append(value)
    problems.raise_any()
    if not ids:
        raise BadInputFile(f"{path}: no account ids found")
    return ids


def _read_csv(path: Path, text: str) -> list[str]:
    reader = csv.DictReader(io.StringIO(text))
    fields = [f.strip() for f in (reader.fieldnames or [])]
    if "account_id" not in fields:
        raise BadInputFile(f"{path}: line 1: CSV header has no 'account_id' column")
    reader.fieldnames = fields
    ids, problems = [], _Problems(path)
    for row in reader:
        value = (row.get("account_id") or "").strip()
        problems.check(reader.line_num, value)
        ids.append(value)
    problems.raise_any()
    if not ids:
        raise BadInputFile(f"{path}: no account ids found")
    return ids
