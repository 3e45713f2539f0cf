"""The account data set: a million Financial Connections accounts without a million dicts.

An account is its index; ids encode it (see `ids`), so lookups need no table. Generated
accounts (index < `generated`) are derived on demand (see `generate`). What changes is kept
compactly: one byte of status per account (`_status`, 0xFF meaning "as generated") and, for
accounts created through the admin API, their holder and creation time. Rendered JSON is cached
in a bounded FIFO (`cache_size` entries) and dropped when the account changes.

Lists are newest first: index order is creation order, so a page walks indexes downwards.

Each account belongs to one Stripe account (see `connect`): generated accounts and accounts
created without an owner are the platform's; `create(..., owner="acct_…")` puts an account on a
connected account. `indexes_of(owner)` is what an unfiltered list made as that owner covers.
"""

from __future__ import annotations

import json
from bisect import bisect_left, bisect_right
from collections import OrderedDict
from collections.abc import Sequence

from stripe_emulator import errors
from stripe_emulator.connect import Without
from stripe_emulator.generate import STATUSES, TWO_YEARS, Account, AccountGenerator

__all__ = ["TWO_YEARS", "Account", "AccountStore", "page"]

_AS_GENERATED = 0xFF
_DISCONNECTED = STATUSES.index("disconnected")
_ENCODE = json.JSONEncoder(separators=(",", ":")).encode


class AccountStore:
    """All accounts, generated and created, and their changes."""

    def __init__(self, count: int, seed: int, reference_time: int, cache_size: int = 50_000):
        self._generator = AccountGenerator(count, seed, reference_time)
        self.account_ids = self._generator.account_ids
        self.generated = count
        self.total = count
        self._status = bytearray([_AS_GENERATED]) * count
        self._created: dict[int, tuple[int, str, str]] = {}  # index -> (created, kind, holder)
        self._created_by_holder: dict[tuple[str, str], list[int]] = {}
        self._owner: dict[int, str] = {}  # index -> connected account (absent: the platform)
        self._owned: dict[str, list[int]] = {}  # connected account -> its indexes, ascending
        self._all_owned: list[int] = []  # every index on a connected account, ascending
        self._bodies: OrderedDict[int, bytes] = OrderedDict()  # O(1) eviction of the oldest
        self._cache_size = cache_size

    # -- lookups --------------------------------------------------------------------------

    def index_of(self, account_id: str) -> int | None:
        """The index of `account_id`, or None if no such account exists."""
        index = self.account_ids.decode(account_id)
        return index if index is not None and index < self.total else None

    def get(self, index: int) -> Account:
        """The account at `index` as Stripe renders it now (a fresh dict)."""
        account = self._generator.generate(index)
        created = self._created.get(index)
        if created is not None:
            when, kind, holder = created
            account["created"] = when
            account["account_holder"] = {"type": kind, kind: holder}
        code = self._status[index]
        if code != _AS_GENERATED:
            account["status"] = STATUSES[code]
            if account["status"] != "active":
                account["subscriptions"] = []
        return account

    def body(self, index: int, livemode: bool = False) -> bytes:
        """The account's JSON as a key of that mode sees it (cached for test mode).

        There is one data set: a live key sees the same accounts, with `livemode: true`.
        """
        if livemode:
            return _ENCODE({**self.get(index), "livemode": True}).encode()
        cached = self._bodies.get(index)
        if cached is None:
            cached = _ENCODE(self.get(index)).encode()
            self._remember(index, cached)
        return cached

    def _remember(self, index: int, body: bytes) -> None:
        bodies = self._bodies
        bodies.pop(index, None)
        if len(bodies) >= self._cache_size:
            bodies.popitem(last=False)
        bodies[index] = body

    def get_with_body(self, index: int, livemode: bool) -> tuple[Account, bytes]:
        """The account and its JSON, built once (for a change that also makes an event)."""
        account = self.get(index)
        account["livemode"] = livemode
        body = _ENCODE(account).encode()
        if not livemode:
            self._remember(index, body)
        return account, body

    def status(self, index: int) -> str:
        """The account's status, without building the whole account."""
        code = self._status[index]
        if code == _AS_GENERATED:
            code = self._generator.status_code(index)
        return STATUSES[code]

    def holder_indexes(self, kind: str, holder_id: str, owner: str | None = None) -> Sequence[int]:
        """Indexes of one holder's accounts (`kind` customer or account) on `owner`, ascending."""
        generated = self._generator.holder_indexes(kind, holder_id) if owner is None else range(0)
        created = self._created_by_holder.get((kind, holder_id))
        if not created:
            return generated
        return [*generated, *(i for i in created if self._owner.get(i) == owner)]

    def owner(self, index: int) -> str | None:
        """The connected account `index` lives on, or None for the platform's own."""
        return self._owner.get(index)

    def indexes_of(self, owner: str | None) -> Sequence[int]:
        """Every index that `owner` (None: the platform) sees, ascending."""
        if owner is not None:
            return self._owned.get(owner, [])
        if not self._all_owned:
            return range(self.total)
        return Without(self.total, self._all_owned)

    # -- changes --------------------------------------------------------------------------

    def disconnect(self, index: int) -> bool:
        """Mark the account disconnected; False if it already was."""
        if self.status(index) == "disconnected":
            return False
        self._status[index] = _DISCONNECTED
        self._bodies.pop(index, None)
        return True

    def create(
        self, status: str, kind: str, holder_id: str, now: int, owner: str | None = None
    ) -> int:
        """Add an account with `status` for the given holder on `owner` (None: the platform);
        returns its index."""
        index = self.total
        self.total += 1
        self._status.append(STATUSES.index(status))
        self._created[index] = (now, kind, holder_id)
        self._created_by_holder.setdefault((kind, holder_id), []).append(index)
        if owner is not None:
            self._owner[index] = owner
            self._owned.setdefault(owner, []).append(index)
            self._all_owned.append(index)
        return index

    def new_holder_id(self) -> str:
        """A fresh customer id that no account uses yet."""
        return self._generator.new_holder_id(self.total)


def page(
    candidates: Sequence[int], limit: int, after: int | None, before: int | None
) -> tuple[list[int], bool]:
    """One page, newest first, of the ascending `candidates`, with Stripe's cursor semantics.

    `after` (starting_after) pages towards older accounts, `before` (ending_before) towards newer
    ones; `has_more` says whether more items lie further in the direction of travel.
    """
    if before is not None:
        low = bisect_right(candidates, before)
        high = min(len(candidates), low + limit)
        return list(reversed(candidates[low:high])), high < len(candidates)
    high = bisect_left(candidates, after) if after is not None else len(candidates)
    low = max(0, high - limit)
    return list(reversed(candidates[low:high])), low > 0


def parse_limit(raw: str | None) -> int | errors.StripeError:
    """A list call's `limit` (1..100, default 10), or Stripe's 400 for a bad one."""
    if raw is None:
        return 10
    try:
        limit = int(raw)
    except ValueError:
        return errors.invalid_param(
            f"Invalid integer: {raw}", "limit", code="parameter_invalid_integer"
        )
    if not 1 <= limit <= 100:
        bound = "greater than or equal to 1" if limit < 1 else "less than or equal to 100"
        return errors.invalid_param(f"This value must be {bound}.", "limit")
    return limit
