"""The seeded account data set: a million Financial Connections accounts without a million dicts.

An account is its index. Generated accounts (index < `generated`) are derived on demand from a
keyed hash of (seed, index), so they cost nothing until touched; an account that changes (a
disconnect) or is created through the admin API is materialised into `_stored`, with its JSON
bytes cached until it changes again. Ids encode their index (see `ids`), so lookups need no table.

Account holders own contiguous runs of indexes (1 to 5 accounts each); `_holder_starts` is the
only per-holder memory. About one holder in ten is a connected account (`acct_`), the rest are
customers (`cus_`). `created` grows with the index over the two years before the reference time,
so index order is creation order and lists are newest first by walking indexes downwards.
"""

from __future__ import annotations

import hashlib
import json
import random
from array import array
from bisect import bisect_left, bisect_right, bisect_right as _bisect_holder
from collections.abc import Sequence
from typing import Any

from stripe_emulator.ids import IdCodec

Account = dict[str, Any]
TWO_YEARS = 2 * 365 * 86400
_STATUSES = ("active", "inactive", "disconnected")
_INSTITUTIONS = (
    "StripeBank", "Chase", "Bank of America", "Wells Fargo", "Citibank", "Capital One",
    "U.S. Bank", "PNC Bank", "Truist", "TD Bank", "Ally Bank", "Charles Schwab",
    "Fidelity Investments", "Navy Federal Credit Union", "American Express", "Discover Bank",
)  # fmt: skip
_KINDS = (  # (category, subcategory, display name, weight)
    ("cash", "checking", "Checking", 45), ("cash", "savings", "Savings", 20),
    ("cash", "other", "Money Market", 5), ("credit", "credit_card", "Credit Card", 15),
    ("credit", "line_of_credit", "Line of Credit", 3), ("credit", "mortgage", "Mortgage", 3),
    ("credit", "other", "Auto Loan", 2), ("investment", "other", "Brokerage", 5),
    ("other", "other", "Other Account", 2),
)  # fmt: skip
_KIND_BY_BYTE = [k for k in _KINDS for _ in range(k[3])] * 3  # 300 entries: any byte indexes it
_HOLDER_SIZE_BY_BYTE = [1] * 115 + [2] * 64 + [3] * 38 + [4] * 26 + [5] * 13
_REFRESH_STATUSES = ("succeeded",) * 6 + ("failed", "pending")
_MASK = (1 << 64) - 1


class AccountStore:
    """All accounts, generated and created; the only mutable thing is `_stored`."""

    def __init__(self, count: int, seed: int, reference_time: int) -> None:
        self.generated = count
        self.total = count
        self._seed = seed.to_bytes(8, "little", signed=True)
        self._reference_time = reference_time
        self.account_ids = IdCodec("fca_", seed, tag_len=12, lead="1")
        self.customer_ids = IdCodec("cus_", seed, tag_len=3)
        self.connected_ids = IdCodec("acct_", seed, tag_len=4, lead="1")
        self._holder_starts = _holder_layout(count, seed)
        self._holder_mix = int.from_bytes(hashlib.blake2b(self._seed).digest()[:8], "little")
        self._stored: dict[int, Account] = {}
        self._bodies: dict[int, bytes] = {}
        self._created_by_holder: dict[tuple[str, str], list[int]] = {}

    # -- lookups --------------------------------------------------------------------------

    def index_of(self, account_id: str) -> int | None:
        """The index of `account_id`, or None if no such account exists."""
        index = self.account_ids.decode(account_id)
        return index if index is not None and index < self.total else None

    def get(self, index: int) -> Account:
        """The account at `index`, as Stripe renders it. Treat it as read-only."""
        stored = self._stored.get(index)
        return stored if stored is not None else self._generate(index)

    def body(self, index: int) -> bytes:
        """The account's JSON, cached for materialised accounts."""
        cached = self._bodies.get(index)
        if cached is not None:
            return cached
        body = json.dumps(self.get(index), separators=(",", ":")).encode()
        if index in self._stored:
            self._bodies[index] = body
        return body

    def status(self, index: int) -> str:
        """The account's status, without building the whole account."""
        stored = self._stored.get(index)
        if stored is not None:
            return str(stored["status"])
        return _STATUSES[_status_code(self._digest(index)[0])]

    def holder_indexes(self, kind: str, holder_id: str) -> Sequence[int]:
        """Indexes of the accounts of one holder (`kind` is customer or account), ascending."""
        codec = self.customer_ids if kind == "customer" else self.connected_ids
        holder = codec.decode(holder_id)
        generated: Sequence[int] = ()
        if holder is not None and holder < len(self._holder_starts):
            if self._holder_kind(holder) == kind:
                generated = range(*self._holder_range(holder))
        created = self._created_by_holder.get((kind, holder_id), [])
        return [*generated, *created] if created else generated

    # -- changes --------------------------------------------------------------------------

    def disconnect(self, index: int) -> bool:
        """Mark the account disconnected; False if it already was."""
        account = self._materialise(index)
        if account["status"] == "disconnected":
            return False
        account["status"] = "disconnected"
        account["subscriptions"] = []
        self._bodies.pop(index, None)
        return True

    def create(self, status: str, kind: str, holder_id: str, now: int) -> int:
        """Add an account for the given holder; returns its index."""
        index = self.total
        self.total += 1
        account = self._generate(index)
        account.update(status=status, created=now, account_holder={"type": kind, kind: holder_id})
        if status == "disconnected":
            account["subscriptions"] = []
        self._stored[index] = account
        self._created_by_holder.setdefault((kind, holder_id), []).append(index)
        return index

    def new_holder_id(self, kind: str) -> str:
        """A fresh holder id that no generated account uses."""
        codec = self.customer_ids if kind == "customer" else self.connected_ids
        return codec.encode(len(self._holder_starts) + self.total)

    # -- generation -----------------------------------------------------------------------

    def _materialise(self, index: int) -> Account:
        account = self._stored.get(index)
        if account is None:
            account = self._stored[index] = self._generate(index)
        return account

    def _digest(self, index: int) -> bytes:
        return hashlib.blake2b(index.to_bytes(8, "little"), key=self._seed).digest()

    def _holder_kind(self, holder: int) -> str:
        return "account" if ((holder ^ self._holder_mix) * 0x9E3779B1 & _MASK) % 10 == 0 else (
            "customer"
        )

    def _holder_range(self, holder: int) -> tuple[int, int]:
        starts = self._holder_starts
        end = starts[holder + 1] if holder + 1 < len(starts) else self.generated
        return starts[holder], end

    def _holder_of(self, index: int) -> dict[str, str]:
        if index >= self.generated:
            holder = len(self._holder_starts) + index
            return {"type": "customer", "customer": self.customer_ids.encode(holder)}
        holder = _bisect_holder(self._holder_starts, index) - 1
        if self._holder_kind(holder) == "account":
            return {"type": "account", "account": self.connected_ids.encode(holder)}
        return {"type": "customer", "customer": self.customer_ids.encode(holder)}

    def _created(self, index: int) -> int:
        span = TWO_YEARS * min(index, self.generated) // max(self.generated, 1)
        return self._reference_time - TWO_YEARS + span

    def _generate(self, index: int) -> Account:
        d = self._digest(index)
        category, subcategory, name, _ = _KIND_BY_BYTE[d[2]]
        created = self._created(index)
        permissions = ["payment_method"] + [
            p for bit, p in enumerate(("balances", "ownership", "transactions")) if d[5] >> bit & 1
        ]
        status = _STATUSES[_status_code(d[0])]
        account: Account = {
            "id": self.account_ids.encode(index),
            "object": "financial_connections.account",
            "account_holder": self._holder_of(index),
            "account_numbers": None,
            "balance": None,
            "balance_refresh": None,
            "category": category,
            "created": created,
            "display_name": f"{name} ({to_last4(d)})" if d[22] & 1 else name,
            "institution_name": _INSTITUTIONS[d[1] % len(_INSTITUTIONS)],
            "last4": to_last4(d),
            "livemode": False,
            "ownership": None,
            "ownership_refresh": None,
            "permissions": permissions,
            "status": status,
            "subcategory": subcategory,
            "subscriptions": [],
            "supported_payment_method_types": ["link", "us_bank_account"]
            if category == "cash" and d[22] & 2
            else ["us_bank_account"],
            "transaction_refresh": None,
        }
        self._add_refreshes(account, d, created)
        return account

    def _add_refreshes(self, account: Account, d: bytes, created: int) -> None:
        window = max(self._reference_time - created, 1)
        permissions = account["permissions"]
        for offset, field in ((6, "balance"), (7, "ownership"), (8, "transaction")):
            if {"balance": "balances", "transaction": "transactions"}.get(field, field) not in (
                permissions
            ):
                continue
            status = _REFRESH_STATUSES[d[offset] % len(_REFRESH_STATUSES)]
            frac = int.from_bytes(d[9 + 3 * (offset - 6) : 12 + 3 * (offset - 6)], "little")
            attempted = created + window * frac // (1 << 24)
            refresh: Account = {
                "last_attempted_at": attempted,
                "next_refresh_available_at": None if status == "pending" else attempted + 3600,
                "status": status,
            }
            if field == "transaction":
                refresh = {"id": f"fctxnref_{account['id'][5:]}", **refresh}
                if account["status"] == "active":
                    account["subscriptions"] = ["transactions"]
            account[f"{field}_refresh"] = refresh
            if status == "succeeded":
                _add_result(account, field, d, attempted)


def to_last4(d: bytes) -> str:
    """Four digits drawn from an account's digest."""
    return f"{int.from_bytes(d[3:5], 'little') % 10000:04d}"


def _status_code(byte: int) -> int:
    return 0 if byte < 192 else (1 if byte < 230 else 2)


def _add_result(account: Account, field: str, d: bytes, attempted: int) -> None:
    if field == "ownership":
        account["ownership"] = f"fcaowns_{account['id'][5:]}"
    elif field == "balance":
        amount = int.from_bytes(d[18:22], "little") % 5_000_000
        if account["category"] == "credit":
            account["balance"] = {
                "as_of": attempted, "current": {"usd": -amount},
                "type": "credit", "credit": {"used": {"usd": amount}},
            }  # fmt: skip
        else:
            account["balance"] = {
                "as_of": attempted, "current": {"usd": amount},
                "type": "cash", "cash": {"available": {"usd": amount}},
            }  # fmt: skip


def _holder_layout(count: int, seed: int) -> array[int]:
    """First index of each holder's run of accounts; runs are 1 to 5 long, mostly 1 or 2."""
    starts = array("q")
    rng = random.Random(seed)
    position = 0
    while position < count:
        for byte in rng.randbytes(4096):
            starts.append(position)
            position += _HOLDER_SIZE_BY_BYTE[byte]
            if position >= count:
                break
    return starts


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
