"""One disconnect attempt against Stripe, and what its answer means (no ledger writes here).

:func:`locked_attempt` holds the account's lock (Stripe answers ``lock_timeout`` to parallel calls
on one object) and runs :func:`attempt_disconnect`, which turns what it learns into an
:class:`Outcome` using the table in :mod:`worker.outcomes`; every Stripe call goes through
:func:`worker.calls.call_stripe` (the shared rate limiter).

One call per disconnect (issue 13): a second call is made only where it buys something.

- **Sweep requests** carry the account's ``status`` from the listing they were selected from
  (``listed_status``, ``listed_at``). ``disconnected`` (final at Stripe) ends the request
  ``already_disconnected`` with no call (``evidence`` = ``listing``); anything else is posted
  without a retrieve: the POST's answer is the fresher truth.
- **Every request** first asks the ledger (Redis, no Stripe call): an earlier request of ours for
  the account that ended ``disconnected``/``already_disconnected``, or Stripe's event of someone
  else's disconnect as applied, ends it ``already_disconnected`` with no call (``ledger`` /
  ``event``).
- **Single requests** (and sweep requests listed as anything but disconnected) post first. A 200
  says the account is disconnected now, not who did it (Stripe answers 200 to an
  already-disconnected account too): unless the ledger learnt of someone else's disconnect while
  the call ran (then ``already_disconnected``, ``event``), it is recorded ``disconnected`` with
  ``evidence`` = ``answer``, and Stripe's ``financial_connections.account.disconnected`` event,
  which only a real transition produces, is noted on the request when it arrives
  (``disconnect.confirmed``, or ``disconnect.contradicted`` if it shows an earlier disconnect;
  :mod:`events.apply`). A 400 whose code says the account is already disconnected
  (``account_already_disconnected``) or cannot be (``financial_connections_account_inactive``)
  is decided by the answer alone; another 400 is checked with a retrieve.
- **A retrieve stays where correctness needs it**: after a 5xx, a 424 or a replayed error (the
  next call uses a fresh key, so the account must be looked at first), for a key older than
  ``FCD_IDEMPOTENCY_REFRESH_SECONDS`` (Stripe may have forgotten it), and when
  ``FCD_PRECHECK_ACCOUNT`` forces one before every post (the old default, two calls each).
  After a timeout or a reset the retry re-sends the *same* key: Stripe replays what the first
  call did (``Idempotent-Replayed``), or answers 409 while it still runs, or runs it now, so
  no retrieve is needed there within the key's lifetime.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any

from ledger.audit import Evidence, TransitionDetails
from ledger.models import DisconnectRequest, RequestStatus
from worker.calls import DisconnectDeps, call_stripe
from worker.outcomes import Action, decide, is_account_forbidden, is_auth_failure
from worker.ratelimit import AccountBusy, AccountLock, LimiterPaused
from worker.stripe_client import StripeAPIError, StripeError, StripeMeta

__all__ = ["ClaimLost", "DisconnectDeps", "Outcome", "attempt_disconnect", "locked_attempt"]


class ClaimLost(Exception):
    """The request is no longer held under this attempt's claim: someone else owns it now, and
    nothing may be sent for it."""


@dataclass(frozen=True)
class Outcome:
    """Where one attempt leaves the request: a terminal status, ``RETRY_SCHEDULED``, or
    ``QUEUED`` (the circuit breaker tripped)."""

    status: RequestStatus
    details: TransitionDetails = field(default_factory=TransitionDetails)
    fresh_idempotency_key: bool = False
    #: The attempt does not count against the budget (limiter 429, account busy, breaker).
    attempt_free: bool = False
    trip_breaker: bool = False
    #: A retry waits at least this long (seconds), e.g. until another holder's lock expires.
    not_before: float = 0.0


@dataclass
class InFlight:
    """When this attempt's disconnect POST left, while no answer has come back."""

    since: float | None = None


async def locked_attempt(deps: DisconnectDeps, request: DisconnectRequest) -> Outcome:
    """The attempt under the account's lock: Stripe answers ``lock_timeout`` to parallel calls.

    Cancelled (job timeout, shutdown) while its POST is in flight, the attempt does not release
    the lock: it leaves it to expire when the client's timeout would have given the call up
    (``call_timeout_seconds`` after it left), because Stripe may still be running it, so the next
    attempt never sends a second POST for the account while the first may still run (the chaos
    harness saw that overlap: a 409 for the key in use, at best). Cancelled before the POST left,
    the lock is released at once."""
    lock = AccountLock(
        deps.ledger.redis,
        request.account_id,
        ttl_seconds=deps.lock_seconds,
        key_prefix=f"{deps.ledger.prefix}lock:account:",
    )
    try:
        await lock.acquire()
    except AccountBusy as busy:
        note = "another call holds this account's lock; trying again when it is free"
        return Outcome(
            RequestStatus.RETRY_SCHEDULED,
            TransitionDetails(message=note),
            attempt_free=True,
            not_before=busy.retry_after,
        )
    in_flight = InFlight()
    try:
        return await attempt_disconnect(deps, request, in_flight)
    except LimiterPaused:
        note = "service paused; request handed back to the queue, attempt not spent"
        return Outcome(RequestStatus.QUEUED, TransitionDetails(message=note), attempt_free=True)
    except asyncio.CancelledError:
        if in_flight.since is not None:
            left = in_flight.since + deps.call_timeout_seconds - time.time()
            if left > 0:
                await lock.keep_for(left)
        raise
    finally:
        await lock.release()


async def attempt_disconnect(
    deps: DisconnectDeps, request: DisconnectRequest, in_flight: InFlight
) -> Outcome:
    """One attempt, costing one call unless a second buys something (module docstring);
    ``in_flight`` is told when the disconnect POST leaves and when it is answered."""
    settled = await _settled_without_a_call(deps, request)
    if settled is not None:
        return settled
    age = time.time() - (request.first_attempt_at or time.time())
    refresh_key = age >= deps.idempotency_refresh_seconds
    if deps.precheck_account or refresh_key:
        early = await _precheck(deps, request)
        if early is not None:
            return early
    key_request = request
    if refresh_key:
        generation = request.idempotency_generation + 1
        key_request = request.model_copy(update={"idempotency_generation": generation})

    async def record_intent() -> None:
        # Before the POST leaves: an attempt cut off mid-call must still count as having posted.
        if not await deps.ledger.update_if_held(request, {"last_posted_at": time.time()}):
            raise ClaimLost(request.request_id)
        in_flight.since = time.time()

    try:
        result = await call_stripe(
            deps,
            "disconnect",
            lambda: deps.stripe.disconnect_account(
                request.account_id,
                idempotency_key=key_request.idempotency_key,
                stripe_account=request.stripe_account,
            ),
            before_send=record_intent,
            stripe_account=request.stripe_account,
        )
    except StripeError as exc:
        in_flight.since = None
        return await _after_error(deps, request, exc)
    in_flight.since = None
    outcome = await _after_success(deps, request, result.meta)
    return replace(outcome, fresh_idempotency_key=refresh_key)


async def _settled_without_a_call(
    deps: DisconnectDeps, request: DisconnectRequest
) -> Outcome | None:
    """``already_disconnected`` if the listing or the ledger already says so, else ``None``."""
    if request.listed_status == "disconnected":
        when = "" if request.listed_at is None else f" read at {_iso(request.listed_at)}"
        note = f"listed as disconnected (the sweep's listing{when}); no call made"
        return Outcome(
            RequestStatus.ALREADY_DISCONNECTED,
            TransitionDetails(message=note, evidence=Evidence.LISTING),
        )
    known = await deps.ledger.known_disconnected(request.account_id, besides=request.request_id)
    if known is None:
        return None
    note = f"{known.reason}; no call made"
    return Outcome(
        RequestStatus.ALREADY_DISCONNECTED,
        TransitionDetails(message=note, evidence=known.evidence),
    )


async def _after_success(
    deps: DisconnectDeps, request: DisconnectRequest, meta: StripeMeta
) -> Outcome:
    """A 200 says the account is disconnected now, not who did it: Stripe answers 200 to an
    already-disconnected account too. What the ledger learnt meanwhile (Stripe's event of
    someone else's disconnect, applied while the call ran) decides; otherwise it is ours, and
    Stripe's event confirms it later (``disconnect.confirmed``, or ``disconnect.contradicted``
    if the event shows an earlier disconnect, :mod:`events.apply`). The archive was looked in
    before the call (:func:`_settled_without_a_call`) and cannot have learnt anything since."""
    known = await deps.ledger.known_disconnected(
        request.account_id, besides=request.request_id, archive=False
    )
    if known is not None:
        note = f"Stripe answered 200, but {known.reason}: it was already disconnected"
        return Outcome(RequestStatus.ALREADY_DISCONNECTED, _details(meta, note, known.evidence))
    if meta.idempotent_replayed:
        note = "disconnected by an earlier call of ours (Stripe replayed its answer to that key)"
    elif request.last_posted_at is not None:
        note = "disconnected by this service (Stripe answered 200 after an earlier call of ours)"
    else:
        note = "disconnected by this service (Stripe answered 200; its event confirms it)"
    return Outcome(RequestStatus.DISCONNECTED, _details(meta, note, Evidence.ANSWER))


async def _precheck(deps: DisconnectDeps, request: DisconnectRequest) -> Outcome | None:
    """Retrieve the account; an outcome if that already settles the request, else ``None``."""
    try:
        account, meta = await _retrieve(deps, request)
    except StripeError as exc:
        return _from_error(exc, request.stripe_account, evidence=Evidence.RETRIEVE)
    if account.get("status") != "disconnected":
        return None
    evidence = Evidence.RETRIEVE
    if request.last_posted_at is not None:
        note = "found disconnected after an earlier disconnect call of ours"
        return Outcome(RequestStatus.DISCONNECTED, _details(meta, note, evidence))
    note = "was already disconnected"
    return Outcome(RequestStatus.ALREADY_DISCONNECTED, _details(meta, note, evidence))


async def _after_error(
    deps: DisconnectDeps, request: DisconnectRequest, error: StripeError
) -> Outcome:
    decision = decide(error)
    stripe_account = request.stripe_account
    if decision.action != Action.CHECK_ACCOUNT:
        return _from_error(error, stripe_account)
    try:
        account, meta = await _retrieve(deps, request)
    except StripeError as exc:
        return _from_error(
            exc,
            stripe_account,
            fresh_key=decision.fresh_idempotency_key,
            evidence=Evidence.RETRIEVE,
        )
    if account.get("status") == "disconnected":
        status = (
            RequestStatus.DISCONNECTED
            if decision.call_may_have_acted
            else RequestStatus.ALREADY_DISCONNECTED
        )
        note = f"account is disconnected (checked after HTTP {error.http_status}: {error.message})"
        return Outcome(status, _details(meta, note, Evidence.RETRIEVE, error))
    fresh = decision.fresh_idempotency_key
    message = error.message + ("; next attempt with a fresh Idempotency-Key" if fresh else "")
    if decision.otherwise == Action.RETRY:
        return Outcome(
            RequestStatus.RETRY_SCHEDULED, _details(error.meta, message, None, error), fresh
        )
    details = _details(error.meta, message, Evidence.RETRIEVE, error)
    return Outcome(RequestStatus.FAILED, details, fresh)


def _from_error(
    error: StripeError,
    stripe_account: str | None,
    *,
    fresh_key: bool = False,
    evidence: Evidence = Evidence.ANSWER,
) -> Outcome:
    """Outcome of an error that needs no further look at the account (``evidence``: which call
    answered, for an outcome that ends the request)."""
    decision = decide(error)
    details = _details(error.meta, error.message, None, error)
    if is_auth_failure(error, stripe_account):
        return Outcome(RequestStatus.QUEUED, details, attempt_free=True, trip_breaker=True)
    if is_account_forbidden(error, stripe_account):
        note = (
            f"Stripe refused access to connected account {stripe_account} (HTTP 403: "
            f"{error.message}); only this request fails, other work goes on"
        )
        return Outcome(RequestStatus.FAILED, replace(details, message=note, evidence=evidence))
    if decision.action == Action.FINISH and decision.status is not None:
        return Outcome(decision.status, replace(details, evidence=evidence))
    if decision.action == Action.CHECK_ACCOUNT and decision.otherwise == Action.FINISH:
        return Outcome(RequestStatus.FAILED, replace(details, evidence=evidence))
    rate_limited = isinstance(error, StripeAPIError) and error.is_rate_limit
    return Outcome(
        RequestStatus.RETRY_SCHEDULED,
        details,
        fresh_idempotency_key=fresh_key or decision.fresh_idempotency_key,
        attempt_free=rate_limited,
    )


async def _retrieve(
    deps: DisconnectDeps, request: DisconnectRequest
) -> tuple[dict[str, Any], StripeMeta]:
    result = await call_stripe(
        deps,
        "retrieve",
        lambda: deps.stripe.retrieve_account(
            request.account_id, stripe_account=request.stripe_account
        ),
        stripe_account=request.stripe_account,
    )
    return result.body, result.meta


def _details(
    meta: StripeMeta,
    message: str,
    evidence: Evidence | None = None,
    error: StripeError | None = None,
) -> TransitionDetails:
    return TransitionDetails(
        message=message,
        stripe_request_id=meta.request_id,
        http_status=meta.http_status,
        stripe_error_code=error.code if isinstance(error, StripeAPIError) else None,
        duration_ms=meta.duration_ms,
        evidence=evidence,
    )


def _iso(unix_seconds: float) -> str:
    return datetime.fromtimestamp(unix_seconds, UTC).isoformat(timespec="seconds")
