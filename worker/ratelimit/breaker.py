"""The kill switch: one Redis key that stops every worker from being granted permits.

``fcd:paused`` holds JSON ``{"operator", "reason", "at", "source"}`` while the service is paused
and does not exist otherwise. The limiter's acquire script checks the key's *existence* in the same
atomic step as the budgets, so a pause takes effect on the very next acquisition in every worker,
and a flag whose JSON cannot be read still pauses (fail closed).

These functions only set, clear and read the flag; writing the audit event and the ``fcd pause``
command belong to the ledger and the CLI, which call them.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Final

import structlog
from redis.asyncio import Redis

PAUSE_KEY: Final = "fcd:paused"
_UNREADABLE_AT: Final = datetime(1970, 1, 1, tzinfo=UTC)

_log = structlog.get_logger(__name__)


@dataclass(frozen=True)
class PauseState:
    """Who paused the service, why, when (UTC) and through what (``cli``, ``breaker``, ...)."""

    operator: str
    reason: str
    at: datetime
    source: str

    def to_json(self) -> str:
        """The flag's stored form."""
        payload = {
            "operator": self.operator,
            "reason": self.reason,
            "at": self.at.isoformat(),
            "source": self.source,
        }
        return json.dumps(payload, sort_keys=True)

    @classmethod
    def from_json(cls, raw: str | bytes) -> PauseState:
        """Parse a stored flag; a flag that cannot be read still counts as a pause."""
        try:
            data = json.loads(raw)
            return cls(
                operator=str(data["operator"]),
                reason=str(data["reason"]),
                at=datetime.fromisoformat(str(data["at"])),
                source=str(data["source"]),
            )
        except (ValueError, TypeError, KeyError) as exc:
            text = raw.decode(errors="replace") if isinstance(raw, bytes) else raw
            return cls("unknown", f"unreadable pause flag {text!r}: {exc}", _UNREADABLE_AT, "?")


async def pause(
    redis: Redis, operator: str, reason: str, source: str, *, key: str = PAUSE_KEY
) -> PauseState:
    """Pause all workers until :func:`resume`; replaces any pause already set.

    The flag has no expiry: only an explicit resume lifts it.
    """
    state = PauseState(operator, reason, datetime.now(UTC), source)
    await redis.set(key, state.to_json())
    _log.warning("limiter.paused", operator=operator, reason=reason, source=source)
    return state


async def resume(
    redis: Redis, operator: str, reason: str, *, key: str = PAUSE_KEY
) -> PauseState | None:
    """Lift the pause atomically; return the pause that was lifted, or ``None`` if none was set."""
    raw = await redis.getdel(key)
    lifted = None if raw is None else PauseState.from_json(raw)
    _log.warning(
        "limiter.resumed",
        operator=operator,
        reason=reason,
        was_paused=lifted is not None,
        paused_by=lifted.operator if lifted else None,
    )
    return lifted


async def get_pause(redis: Redis, *, key: str = PAUSE_KEY) -> PauseState | None:
    """The current pause, or ``None`` when workers may run."""
    raw = await redis.get(key)
    return None if raw is None else PauseState.from_json(raw)
