"""Stripe's idempotency layer: one stored answer per (API key, `Idempotency-Key`) for a TTL.

`IdempotencyStore.begin` reserves a key for a request and reports what Stripe would do instead
of running it: replay the stored answer, 409 while the first request is still running, or 400
`idempotency_error` when the key was first used with another method, path or body. `finish`
stores the answer of a request whose endpoint began executing, whatever it was (see
`should_store`); `abandon` frees the key without storing (limiter 429s, auth errors, validation
errors, lock timeouts, in-flight conflicts, edge errors, resets without execution).

Entries expire `ttl` seconds after they were reserved. Keys are inserted in time order and all
share one TTL, so expiry pops from the front: amortised O(1) per request.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from dataclasses import dataclass


@dataclass(slots=True)
class StoredResponse:
    """The answer replayed for a key."""

    status: int
    body: bytes
    headers: dict[str, str]
    request_id: str


@dataclass(slots=True)
class Entry:
    """One key's reservation; `response` is None while the first request runs."""

    fingerprint: tuple[str, str, bytes]
    expires_at: float
    response: StoredResponse | None = None


@dataclass(frozen=True, slots=True)
class Begin:
    """What `begin` decided: exactly one of the fields is meaningful (`run` means go ahead)."""

    run: bool = False
    replay: StoredResponse | None = None
    conflict: bool = False
    mismatch: bool = False


#: Statuses that never come from an executing endpoint: auth (401/403) and the limiters (429)
#: run before the idempotency layer, a 409 is a conflict with a request still running, and
#: 502/503/504 are edge answers (whether Stripe stores those is undocumented; a script's `store`
#: field covers the other case).
NEVER_STORED = frozenset({401, 403, 409, 429, 502, 503, 504})


def should_store(status: int) -> bool:
    """Whether Stripe keeps an answer of `status` produced by an endpoint that began executing.

    Stripe: "as long as an API method began execution, Stripe's API servers will cache the
    results of the request regardless of what they were. A request that returns a 400 sends back
    the same 400" and "the idempotency layer caches the result of POST mutations that result in
    server errors (specifically 500s)"; "results are only saved if an API endpoint started
    executing. If incoming parameters failed validation, or the request conflicted with another
    that was executing concurrently, no idempotent result is saved". The endpoints mark their
    validation errors and lock timeouts as not stored themselves.
    """
    return status not in NEVER_STORED


class IdempotencyStore:
    """Stored answers, keyed by (API key, idempotency key)."""

    def __init__(self, ttl: float) -> None:
        self.ttl = ttl
        # An OrderedDict: popping the oldest is O(1), where a dict rescans the holes it leaves.
        self._entries: OrderedDict[tuple[str, str], Entry] = OrderedDict()

    def __len__(self) -> int:
        return len(self._entries)

    def begin(self, scope: str, key: str, fingerprint: tuple[str, str, bytes]) -> Begin:
        """Reserve `key` for a request with `fingerprint`, unless Stripe would do otherwise."""
        now = time.monotonic()
        self._expire(now)
        entry = self._entries.get((scope, key))
        if entry is None:
            self._entries[scope, key] = Entry(fingerprint, now + self.ttl)
            return Begin(run=True)
        if entry.fingerprint != fingerprint:
            return Begin(mismatch=True)
        if entry.response is not None:
            return Begin(replay=entry.response)
        return Begin(conflict=True)

    def finish(self, scope: str, key: str, response: StoredResponse) -> None:
        """Store the answer of the request that reserved `key`."""
        entry = self._entries.get((scope, key))
        if entry is not None:
            entry.response = response

    def abandon(self, scope: str, key: str) -> None:
        """Forget a reservation whose answer is not kept."""
        entry = self._entries.get((scope, key))
        if entry is not None and entry.response is None:
            del self._entries[scope, key]

    def _expire(self, now: float) -> None:
        entries = self._entries
        while entries:
            oldest = next(iter(entries.values()))
            if oldest.expires_at > now:
                return
            entries.popitem(last=False)
