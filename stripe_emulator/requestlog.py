"""The log of `/v1` calls the emulator answered, for tests to assert on (`GET /_emulator/requests`).

Entries are tuples in a bounded deque (the oldest fall off), rendered to dicts only when read:
a million entries fit in a few hundred MB and logging costs one append per call. Only the last
four characters of the API key are kept.
"""

from __future__ import annotations

from collections import deque
from typing import Any, NamedTuple


class LoggedRequest(NamedTuple):
    """One answered call; `ts` is when it arrived, `end_ts` when it was answered (unix s).

    `status` is 0 for a connection reset (no answer was sent). `fault` names the forced outcome
    the call met (`hang`, `reset`, or the forced status such as `500`; None for a normal call),
    so a harness can tell a call the client had already given up on (a hang past its timeout).
    """

    ts: float
    end_ts: float
    method: str
    path: str
    account_id: str | None
    status: int
    api_key_suffix: str | None
    idempotency_key: str | None
    stripe_account: str | None
    replayed: bool
    limiter: str | None
    request_id: str
    fault: str | None = None


class RequestLog:
    """A bounded, append-only log of answered calls."""

    def __init__(self, size: int) -> None:
        self._entries: deque[LoggedRequest] = deque(maxlen=size)

    def __len__(self) -> int:
        return len(self._entries)

    def append(self, entry: LoggedRequest) -> None:
        """Record one call (a no-op when the log's size is 0)."""
        self._entries.append(entry)

    def clear(self) -> None:
        """Forget every entry."""
        self._entries.clear()

    def render(self, since: float | None = None) -> list[dict[str, Any]]:
        """Entries as JSON-ready dicts, oldest first, optionally only those from `since` on."""
        return [e._asdict() for e in self._entries if since is None or e.ts >= since]
