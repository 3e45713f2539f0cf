"""Connect: the Stripe accounts connected to the platform, and who sees which FC account.

A platform key acts on a connected account with ``Stripe-Account: acct_…``. What Stripe does,
and the emulator with it:

- An FC account belongs to one Stripe account: the platform's own (every generated account, and
  those the admin API creates without ``stripe_account``) or a connected account's. A call sees
  only the accounts of the account it acts as: without the header the platform's, with it that
  connected account's. Another account's FC account is ``404 resource_missing``, and an
  unfiltered list covers the acting account only.
- A ``Stripe-Account`` that is not connected to the platform (never was, or its platform access
  was revoked: ``POST /_emulator/connected-accounts/{id}/revoke``) is ``403`` with
  ``code: account_invalid`` and Stripe's message ("The provided key 'sk_test_…' does not have
  access to account 'acct_…' (or that account does not exist). Application access may have been
  revoked."), before any limiter or idempotency work (stripe-python raises ``PermissionError``).
- ``GET /v1/accounts`` lists the platform's connected accounts, newest first, with Stripe's
  cursor paging; made with ``Stripe-Account`` it is 403 ("Only Stripe Connect platforms can work
  with other accounts.").
"""

from __future__ import annotations

import json
from bisect import bisect_left, bisect_right
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import overload

from stripe_emulator import errors
from stripe_emulator.ids import IdCodec


@dataclass(slots=True)
class ConnectedAccount:
    """One connected account; ``revoked`` once the platform's access to it was removed."""

    id: str
    created: int
    revoked: bool = False

    def body(self, livemode: bool) -> bytes:
        """The ``account`` object as ``GET /v1/accounts`` renders it (the fields we model)."""
        return json.dumps(
            {
                "id": self.id,
                "object": "account",
                "charges_enabled": True,
                "created": self.created,
                "details_submitted": True,
                "livemode": livemode,
                "payouts_enabled": True,
                "type": "standard",
            },
            separators=(",", ":"),
        ).encode()


class ConnectedAccounts:
    """The platform's connected accounts, in creation order."""

    def __init__(self, seed: int) -> None:
        self._codec = IdCodec("acct_", seed, tag_len=2, lead="1C")
        self._accounts: list[ConnectedAccount] = []
        self._by_id: dict[str, ConnectedAccount] = {}

    def create(self, now: int) -> ConnectedAccount:
        """Connect a new account to the platform."""
        account = ConnectedAccount(self._codec.encode(len(self._accounts)), now)
        self._accounts.append(account)
        self._by_id[account.id] = account
        return account

    def get(self, account_id: str) -> ConnectedAccount | None:
        return self._by_id.get(account_id)

    def accessible(self, account_id: str) -> bool:
        """Whether the platform may act as ``account_id`` (connected, access not revoked)."""
        account = self._by_id.get(account_id)
        return account is not None and not account.revoked

    def revoke(self, account_id: str) -> bool:
        """Remove the platform's access; False if there is no such connected account."""
        account = self._by_id.get(account_id)
        if account is None:
            return False
        account.revoked = True
        return True

    def listed_with_revoked(self) -> list[ConnectedAccount]:
        """Every account ever connected, oldest first."""
        return list(self._accounts)

    def listed(self) -> list[ConnectedAccount]:
        """The accounts ``GET /v1/accounts`` shows (access not revoked), oldest first."""
        return [a for a in self._accounts if not a.revoked]


def stripe_account_error(api_key: str, stripe_account: str) -> errors.StripeError:
    """403 for a ``Stripe-Account`` the key cannot act as (Stripe's own wording)."""
    masked = errors.masked_key(api_key)
    return errors.StripeError(
        403,
        "invalid_request_error",
        f"The provided key '{masked}' does not have access to account '{stripe_account}' (or "
        "that account does not exist). Application access may have been revoked.",
        code="account_invalid",
    )


def not_a_platform() -> errors.StripeError:
    """403 for listing connected accounts while acting as a connected account."""
    return errors.StripeError(
        403,
        "invalid_request_error",
        "Only Stripe Connect platforms can work with other accounts. If you specified a "
        "client_id parameter, make sure it's correct.",
    )


class Without(Sequence[int]):
    """The ascending ``range(total)`` without a few ascending ``excluded`` indexes, lazily.

    The platform's FC accounts are every index but the few created on connected accounts; this
    keeps a million-account list O(log n) per page instead of materialising the complement.
    """

    def __init__(self, total: int, excluded: Sequence[int]) -> None:
        self._total = total
        self._excluded = excluded

    def __len__(self) -> int:
        return self._total - len(self._excluded)

    @overload
    def __getitem__(self, position: int) -> int: ...
    @overload
    def __getitem__(self, position: slice) -> Sequence[int]: ...
    def __getitem__(self, position: int | slice) -> int | Sequence[int]:
        if isinstance(position, slice):
            return [self[i] for i in range(*position.indices(len(self)))]
        if position < 0:
            position += len(self)
        if not 0 <= position < len(self):
            raise IndexError(position)
        # The answer v is the smallest with v - (#excluded <= v) == position.
        value = position
        while True:
            shifted = position + bisect_right(self._excluded, value)
            if shifted == value:
                return value
            value = shifted

    def __iter__(self) -> Iterator[int]:
        return (i for i in range(self._total) if not _contains(self._excluded, i))


def _contains(sorted_values: Sequence[int], value: int) -> bool:
    at = bisect_left(sorted_values, value)
    return at < len(sorted_values) and sorted_values[at] == value
