"""Deriving a generated account from (seed, index): the fields, the holders, the timestamps.

Every field comes from a keyed BLAKE2b digest of the index, so an account costs nothing until
it is read and is the same on every run with the same seed and reference time. Account holders
own contiguous runs of indexes (1 to 5 accounts each; `holder_starts` is the only per-holder
memory); about one holder in ten is a connected account (`acct_`), the rest customers (`cus_`).
`created` grows with the index over the two years before the reference time, so index order is
creation order.
"""

from __future__ import annotations

import hashlib
import random
from array import array
from bisect import bisect_right
from typing import Any

from stripe_emulator.ids import IdCodec

Account = dict[str, Any]
TWO_YEARS = 2 * 365 * 86400
STATUSES = ("active", "inactive", "disconnected")
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
_REFRESHES = ((6, "balance", "balances"), (7, "ownership", "ownership"), (8, "transaction", "transactions"))  # fmt: skip
_MASK = (1 << 64) - 1


class AccountGenerator:
    """Builds generated accounts and their holders for one seed, count and reference time."""

    def __init__(self, count: int, seed: int, reference_time: int) -> None:
        self.count = count
        self.reference_time = reference_time
        self._key = seed.to_bytes(8, "little", signed=True)
        self.account_ids = IdCodec("fca_", seed, tag_len=12, lead="1")
        self.customer_ids = IdCodec("cus_", seed, tag_len=3)
        self.connected_ids = IdCodec("acct_", seed, tag_len=4, lead="1")
        self.holder_starts = _holder_layout(count, seed)
        self._holder_mix = int.from_bytes(hashlib.blake2b(self._key).digest()[:8], "little")

    def status_code(self, index: int) -> int:
        """The generated status (an index into STATUSES): 75 % active, 15 % inactive."""
        byte = self._digest(index)[0]
        return 0 if byte < 192 else (1 if byte < 230 else 2)

    def holder_indexes(self, kind: str, holder_id: str) -> range:
        """The generated accounts of one holder, or an empty range."""
        codec = self.customer_ids if kind == "customer" else self.connected_ids
        holder = codec.decode(holder_id)
        if holder is None or holder >= len(self.holder_starts) or self._holder_kind(holder) != kind:
            return range(0)
        starts = self.holder_starts
        end = starts[holder + 1] if holder + 1 < len(starts) else self.count
        return range(starts[holder], end)

    def new_holder_id(self, serial: int) -> str:
        """A customer id no generated account uses (`serial` makes it unique)."""
        return self.customer_ids.encode(len(self.holder_starts) + serial)

    def _digest(self, index: int) -> bytes:
        return hashlib.blake2b(index.to_bytes(8, "little"), key=self._key).digest()

    def _holder_kind(self, holder: int) -> str:
        mixed = (holder ^ self._holder_mix) * 0x9E3779B1 & _MASK
        return "account" if mixed % 10 == 0 else "customer"

    def _holder_of(self, index: int) -> dict[str, str]:
        if index >= self.count:
            return {"type": "customer", "customer": self.new_holder_id(index)}
        holder = bisect_right(self.holder_starts, index) - 1
        if self._holder_kind(holder) == "account":
            return {"type": "account", "account": self.connected_ids.encode(holder)}
        return {"type": "customer", "customer": self.customer_ids.encode(holder)}

    def _created(self, index: int) -> int:
        span = TWO_YEARS * min(index, self.count) // max(self.count, 1)
        return self.reference_time - TWO_YEARS + span

    def generate(self, index: int) -> Account:
        """The account at `index` as generated (before any change)."""
        d = self._digest(index)
        category, subcategory, name, _ = _KIND_BY_BYTE[d[2]]
        created = self._created(index)
        permissions = ["payment_method"] + [
            p for bit, p in enumerate(("balances", "ownership", "transactions")) if d[5] >> bit & 1
        ]
        status = STATUSES[0 if d[0] < 192 else (1 if d[0] < 230 else 2)]
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
        window = max(self.reference_time - created, 1)
        permissions = account["permissions"]
        for offset, field, permission in _REFRESHES:
            if permission not in permissions:
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
