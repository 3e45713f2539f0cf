"""What a ``financial_connections.account.disconnected`` event means for the ledger.

Stripe makes exactly one such event per account: disconnecting is final (a new link is a new
``fca_`` id), and a disconnect of an account already disconnected makes none. So the event is
the evidence of *who* made the transition, which a 200 to the disconnect call cannot give
(Stripe answers 200 to an already-disconnected account too, :mod:`worker.attempt`):

- The event carries our ``Idempotency-Key`` (``fcd-<request id>-<generation>``): it confirms a
  disconnect this service made; ``disconnect.confirmed`` (``evidence`` = ``event``) is noted in
  that request's history.
- An event naming no request of ours, for an account whose current request already sent its
  disconnect (``last_posted_at`` set, and ``disconnected``, ``in_progress`` or
  ``retry_scheduled``), created no earlier than that request's first attempt: Stripe does not
  document whether the event of our own disconnect names our request, so it is taken as ours:
  ``disconnect.confirmed`` on that request, nothing cancelled (a ``retry_scheduled`` one posts
  again and is told so by Stripe's answer).
- Otherwise someone else disconnected the account (typically its user): the account's history
  gets ``account.externally_disconnected`` (a later request for it then ends
  ``already_disconnected`` without a call, :meth:`ledger.store.Ledger.known_disconnected`), and
  a request still waiting for it (``queued`` or ``retry_scheduled``) is cancelled with that
  reason. A request a worker holds right now is left alone: the worker reads that note after
  Stripe's answer and records ``already_disconnected`` itself. A request already recorded
  ``disconnected`` whose first attempt came after the event was created (a webhook that arrived
  late, or only through the catch-up) gets ``disconnect.contradicted``: it was in fact already
  disconnected (terminal statuses never change).

"Created before the first attempt" allows :data:`CLOCK_MARGIN_SECONDS` for the difference
between Stripe's clock (``created``, whole seconds) and the worker's: an event within the margin
counts as ours. Applying an event twice adds a duplicate note at worst; the cancellation is a
compare-and-set. Other event types are acknowledged and ignored.
"""

from __future__ import annotations

import re
from typing import Any

import structlog

from ledger.audit import (
    CONFIRMED,
    CONTRADICTED,
    EXTERNALLY_DISCONNECTED,
    Evidence,
    TransitionDetails,
)
from ledger.models import DisconnectRequest, RequestNotFound, RequestStatus, StaleTransition
from ledger.store import Ledger

__all__ = [
    "CLOCK_MARGIN_SECONDS",
    "CONFIRMED",
    "CONTRADICTED",
    "DISCONNECTED_EVENT",
    "EXTERNALLY_DISCONNECTED",
    "apply_event",
]

DISCONNECTED_EVENT = "financial_connections.account.disconnected"
CLOCK_MARGIN_SECONDS = 5.0
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
    created = event.get("created")
    created_at = float(created) if isinstance(created, int | float) else None
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
            await ledger.note(request, CONFIRMED, _event_details(message, request_info))
            return "confirmed"
    current = await _current_request(ledger, account_id)
    if current is not None and _ours(current, created_at):
        message = (
            f"Stripe reported the account disconnected (webhook event {event_id}, which names no "
            "request of ours); this service had sent the disconnect"
        )
        await ledger.note(current, CONFIRMED, _event_details(message, request_info))
        return "confirmed"
    return await _external(ledger, account_id, event_id, created_at)


def _event_details(message: str, request_info: dict[str, Any]) -> TransitionDetails:
    request_id = request_info.get("id")
    return TransitionDetails(
        message=message,
        stripe_request_id=request_id if isinstance(request_id, str) else None,
        evidence=Evidence.EVENT,
    )


async def _current_request(ledger: Ledger, account_id: str) -> DisconnectRequest | None:
    try:
        return await ledger.resolve(account_id)
    except RequestNotFound:
        return None


def _predates(created_at: float | None, request: DisconnectRequest) -> bool:
    """Whether Stripe made the event before ``request``'s first attempt could have posted."""
    first = request.first_attempt_at
    return (
        created_at is not None and first is not None and created_at < first - CLOCK_MARGIN_SECONDS
    )


def _ours(request: DisconnectRequest, created_at: float | None) -> bool:
    """An event naming no request is taken as ours if ``request`` had posted, and not before."""
    posted = request.last_posted_at is not None and request.status in _POSTED
    return posted and not _predates(created_at, request)


async def _external(
    ledger: Ledger, account_id: str, event_id: str, created_at: float | None
) -> str:
    message = f"account disconnected outside this service (Stripe event {event_id})"
    await ledger.note_account(account_id, EXTERNALLY_DISCONNECTED, TransitionDetails(message))
    for _ in range(5):
        request = await _current_request(ledger, account_id)
        if request is None:
            return "external"
        if request.status == RequestStatus.DISCONNECTED and _predates(created_at, request):
            note = (
                f"Stripe's event {event_id} shows the account was disconnected before this "
                "request's first call: it was already disconnected (Stripe answers 200 to a "
                "disconnect of an already-disconnected account)"
            )
            details = TransitionDetails(message=note, evidence=Evidence.EVENT)
            await ledger.note(request, CONTRADICTED, details)
            return "contradicted"
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
