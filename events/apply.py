"""What a ``financial_connections.account.disconnected`` event means for the ledger.

- The event carries our ``Idempotency-Key`` (``fcd-<request id>-<generation>``): it confirms a
  disconnect this service made; ``disconnect.confirmed`` is noted in that request's history.
- An event without our key, for an account whose current request already sent its disconnect
  (``last_posted_at`` set, and ``disconnected``, ``in_progress`` or ``retry_scheduled``): Stripe
  does not document whether the event of our own disconnect names our request, so it is taken as
  ours: ``disconnect.confirmed`` on that request, nothing cancelled (a ``retry_scheduled`` one
  finds the account disconnected on its next attempt and records ``disconnected``).
- Otherwise someone else disconnected the account (typically its user): the account's history
  gets ``account.externally_disconnected``, and a request still waiting for it (``queued`` or
  ``retry_scheduled``) is cancelled with that reason. A request a worker holds right now is left
  alone: the worker finds the account disconnected and records that itself.

Applying an event twice adds a duplicate note at worst; the cancellation is a compare-and-set.
Other event types are acknowledged and ignored.
"""

from __future__ import annotations

import re
from typing import Any

import structlog

from ledger.audit import TransitionDetails
from ledger.models import RequestNotFound, RequestStatus, StaleTransition
from ledger.store import Ledger

DISCONNECTED_EVENT = "financial_connections.account.disconnected"
CONFIRMED = "disconnect.confirmed"
EXTERNALLY_DISCONNECTED = "account.externally_disconnected"
_OUR_KEY = re.compile(r"^fcd-(dr_[0-9a-z]{26})-\d+$")
_WAITING = frozenset({RequestStatus.QUEUED, RequestStatus.RETRY_SCHEDULED})
_POSTED = frozenset(
    {RequestStatus.DISCONNECTED, RequestStatus.IN_PROGRESS, RequestStatus.RETRY_SCHEDULED}
)

log = structlog.get_logger("fcd.webhooks")


async def apply_event(ledger: Ledger, event: dict[str, Any]) -> str:
    """Apply one verified event; return what was done (for logs and metrics)."""
    if event.get("type") != DISCONNECTED_EVENT:
        return "ignored"
    data = event.get("data")
    account = data.get("object") if isinstance(data, dict) else None
    account_id = account.get("id") if isinstance(account, dict) else None
    if not isinstance(account_id, str):
        return "ignored"
    event_id = str(event.get("id"))
    # Older API versions send ``request`` as a bare id string; only the object form has a key.
    request_info = event.get("request")
    if not isinstance(request_info, dict):
        request_info = {}
    match = _OUR_KEY.match(str(request_info.get("idempotency_key") or ""))
    if match:
        try:
            request = await ledger.get(match.group(1))
        except RequestNotFound:
            request = None
        if request is not None and request.account_id == account_id:
            message = f"Stripe confirmed the disconnect (webhook event {event_id})"
            details = TransitionDetails(message=message, stripe_request_id=request_info.get("id"))
            await ledger.note(request, CONFIRMED, details)
            return "confirmed"
    if await _confirm_unattributed(ledger, account_id, event_id, request_info):
        return "confirmed"
    return await _external(ledger, account_id, event_id)


async def _confirm_unattributed(
    ledger: Ledger, account_id: str, event_id: str, request_info: dict[str, Any]
) -> bool:
    """An event naming no request of ours, for an account we already posted a disconnect for."""
    try:
        request = await ledger.resolve(account_id)
    except RequestNotFound:
        return False
    if request.last_posted_at is None or request.status not in _POSTED:
        return False
    message = (
        f"Stripe reported the account disconnected (webhook event {event_id}, which names no "
        "request of ours); this service had sent the disconnect"
    )
    details = TransitionDetails(message=message, stripe_request_id=request_info.get("id"))
    await ledger.note(request, CONFIRMED, details)
    return True


async def _external(ledger: Ledger, account_id: str, event_id: str) -> str:
    message = f"account disconnected outside this service (Stripe event {event_id})"
    await ledger.note_account(account_id, EXTERNALLY_DISCONNECTED, TransitionDetails(message))
    for _ in range(5):
        try:
            request = await ledger.resolve(account_id)
        except RequestNotFound:
            return "external"
        if request.status not in _WAITING:
            return "external"
        try:
            await ledger.transition(
                request, RequestStatus.CANCELLED, TransitionDetails(message=message)
            )
        except StaleTransition:
            continue  # a worker or operator moved it first: re-read and decide again
        return "cancelled"
    log.warning("webhooks.cancel_gave_up", account_id=account_id, event_id=event_id)
    return "external"
