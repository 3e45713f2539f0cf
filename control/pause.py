"""The kill switch: one Redis key that stops every worker from being granted permits.

``fcd:paused`` holds JSON ``{"operator", "reason", "at", "source"}`` while the service is paused
and does not exist otherwise. The limiter's acquire script checks the key's *existence* in the same
atomic step as the budgets, so a pause takes effect on the very next acquisition in every worker,
and a flag whose JSON cannot be read still pauses (fail closed).

Pausing and resuming write one audit event each (``service.paused`` / ``service.resumed``) when an
:class:`~ledger.audit.AuditTrail` is given: ``fcd pause``/``fcd resume`` and the workers' circuit
breaker (a 401/403 from Stripe) all go through here. It lives in the ledger because the producer
side (CLI, intake readiness) and the workers both need it.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Final

import structlog
from redis.asyncio import Redis

from ledger.audit import AuditTrail, build_record, sanitize_message

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
    redis: Redis,
    operator: str,
    reason: str,
    source: str,
    *,
    key: str = PAUSE_KEY,
    audit: AuditTrail | None = None,
    only_if_unpaused: bool = False,
) -> PauseState | None:
    """Pause all workers until :func:`resume`; replaces any pause already set.

    With ``only_if_unpaused`` (the circuit breaker) an existing pause is kept and ``None`` is
    returned, so many workers tripping at once write one audit event, not one each. The flag has
    no expiry: only an explicit resume lifts it.
    """
    reason = sanitize_message(reason) or ""  # the reason may quote Stripe's error message
    state = PauseState(operator, reason, datetime.now(UTC), source)
    if not await redis.set(key, state.to_json(), nx=only_if_unpaused):
        return None
    _log.warning("limiter.paused", operator=operator, reason=reason, source=source)
    if audit is not None:
        record = build_record("service.paused", operator=operator, message=reason, reference=source)
        audit.emit(record, level="error" if source == "breaker" else "warning")
    return state


async def resume(
    redis: Redis,
    operator: str,
    reason: str,
    *,
    key: str = PAUSE_KEY,
    audit: AuditTrail | None = None,
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
    if audit is not None and lifted is not None:
        audit.emit(build_record("service.resumed", operator=operator, message=reason))
    return lifted


async def get_pause(redis: Redis, *, key: str = PAUSE_KEY) -> PauseState | None:
    """The current pause, or ``None`` when workers may run."""
    raw = await redis.get(key)
    return None if raw is None else PauseState.from_json(raw)
