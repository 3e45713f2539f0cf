"""Reading account ids from a file: one id per line, or a CSV with an ``account_id`` column.

The whole file is validated before anything is submitted; the first problem is reported with its
line number and nothing is queued.
"""

from __future__ import annotations

import csv
import io
from pathlib import Path

from ledger.models import ACCOUNT_ID_RE


class BadInputFile(ValueError):
    """The file cannot be submitted; the message names the file and line."""


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
    ids = []
    for number, line in enumerate(lines, start=1):
        value = line.strip()
        if not value or value.startswith("#"):
            continue
        _check(path, number, value)
        ids.append(value)
    if not ids:
        raise BadInputFile(f"{path}: no account ids found")
    return ids


def _read_csv(path: Path, text: str) -> list[str]:
    reader = csv.DictReader(io.StringIO(text))
    fields = [f.strip() for f in (reader.fieldnames or [])]
    if "account_id" not in fields:
        raise BadInputFile(f"{path}: line 1: CSV header has no 'account_id' column")
    reader.fieldnames = fields
    ids = []
    for row in reader:
        value = (row.get("account_id") or "").strip()
        _check(path, reader.line_num, value)
        ids.append(value)
    if not ids:
        raise BadInputFile(f"{path}: no account ids found")
    return ids


def _check(path: Path, number: int, value: str) -> None:
    if not ACCOUNT_ID_RE.match(value):
        raise BadInputFile(
            f"{path}: line {number}: {value!r} is not a Financial Connections account id (fca_…)"
        )
