"""Where a sweep's accounts come from: Stripe's list endpoint (paged) or a file.

Stripe: :func:`stripe_pages` walks ``GET /v1/financial_connections/accounts`` 100 at a time with
``starting_after``, through a :class:`PageFetcher` the caller supplies. The ledger never talks to
Stripe itself: the worker's fetcher makes the HTTP call inside its rate limiter's
``slot("list", priority="bulk")`` (see ``worker.retention``), so a sweep's listing shares the
fleet's list budget and yields to urgent work.

Files (:func:`file_pages`): JSON lines, one Stripe-shaped account object per line (``id``
required, every other field optional and used for selection), or CSV with an ``account_id`` (or
``id``) column and optional ``status``, ``created``, ``institution_name``, ``customer`` and
``last_successful_refresh_at`` (unix seconds; empty for never) columns. A file row lacking a field
a rule needs does not match that rule (see :mod:`retention.select`).
"""

from __future__ import annotations

import csv
import json
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

PAGE_SIZE = 100
FILE_PAGE_SIZE = 1000

Account = dict[str, Any]


@dataclass(frozen=True)
class AccountPage:
    """One page of Stripe's list: the account objects and whether more follow."""

    accounts: list[Account]
    has_more: bool


@dataclass(frozen=True)
class ScopedPage:
    """Accounts listed as one Stripe account: ``stripe_account`` is the connected account they
    live on (their requests carry it as ``Stripe-Account``), or ``None`` for the key's own.
    ``unreachable`` says why a connected account could not be listed (its platform access was
    revoked, say); its accounts are then missing from the sweep, and the summary says so.
    ``listed_at`` is when the page was read from Stripe (unix seconds): each selected account's
    request carries it beside the status it was listed with."""

    accounts: list[Account]
    stripe_account: str | None = None
    unreachable: str | None = None
    listed_at: int | None = None


#: ``await fetch(starting_after)`` returns the next page of up to :data:`PAGE_SIZE` accounts.
PageFetcher = Callable[[str | None], Awaitable[AccountPage]]


class BadAccountFile(ValueError):
    """A row of an account file cannot be read; the message names the file and line."""


async def stripe_pages(fetch: PageFetcher) -> AsyncIterator[list[Account]]:
    """Every account Stripe lists, page by page, newest first."""
    cursor: str | None = None
    while True:
        page = await fetch(cursor)
        accounts = [a for a in page.accounts if isinstance(a, dict)]
        if accounts:
            yield accounts
        last = accounts[-1].get("id") if accounts else None
        if not page.has_more or not isinstance(last, str):
            return
        cursor = last


async def file_pages(path: Path, size: int = FILE_PAGE_SIZE) -> AsyncIterator[list[Account]]:
    """The accounts of a JSON-lines or CSV file, ``size`` at a time."""
    page: list[Account] = []
    for account in read_account_file(path):
        page.append(account)
        if len(page) >= size:
            yield page
            page = []
    if page:
        yield page


def read_account_file(path: Path) -> Iterator[Account]:
    """Rows of an account file as Stripe-shaped dicts (see the module docstring)."""
    with path.open(encoding="utf-8-sig", newline="") as handle:
        first = handle.readline()
        handle.seek(0)
        if first.lstrip().startswith("{"):
            yield from _jsonl(path, handle)
        else:
            yield from _csv(path, handle)


def _jsonl(path: Path, lines: Any) -> Iterator[Account]:
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except ValueError as exc:
            raise BadAccountFile(f"{path}:{number}: not JSON ({exc})") from exc
        if not isinstance(row, dict) or not isinstance(row.get("id") or row.get("account_id"), str):
            raise BadAccountFile(f"{path}:{number}: expected an object with an 'id'")
        yield {**row, "id": row.get("id") or row["account_id"]}


def _csv(path: Path, handle: Any) -> Iterator[Account]:
    reader = csv.DictReader(handle)
    columns = reader.fieldnames or []
    id_column = "account_id" if "account_id" in columns else "id" if "id" in columns else None
    if id_column is None:
        raise BadAccountFile(f"{path}:1: CSV needs an 'account_id' column")
    for number, row in enumerate(reader, start=2):
        try:
            yield _csv_account(row, id_column)
        except ValueError as exc:
            raise BadAccountFile(f"{path}:{number}: {exc}") from exc


def _csv_account(row: dict[str, str], id_column: str) -> Account:
    account: Account = {"id": (row.get(id_column) or "").strip()}
    for name in ("status", "institution_name"):
        if row.get(name):
            account[name] = row[name].strip()
    if row.get("created"):
        account["created"] = int(row["created"])
    if row.get("customer"):
        account["account_holder"] = {"type": "customer", "customer": row["customer"].strip()}
    if "last_successful_refresh_at" in row:
        value = (row["last_successful_refresh_at"] or "").strip()
        refresh = {"status": "succeeded", "last_attempted_at": int(value)} if value else None
        account["balance_refresh"] = refresh
    return account
