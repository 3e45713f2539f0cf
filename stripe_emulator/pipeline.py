"""The path every `/v1` call takes, in Stripe's order, around the endpoint's own work.

    authenticate (401; a Stripe-Version not shaped like one: 400; a Stripe-Account the key
    cannot act as: 403 account_invalid)
    -> limiters (429 + Stripe-Rate-Limited-Reason) -> outage (503)
    -> idempotency on POST (replay | 409 in flight | 400 idempotency_error | reserve)
    -> the endpoint's work: validation, 404, per-account lock (429 lock_timeout),
       forced outcome (script or random fault), latency, the change itself
    -> store or release the idempotency key -> log -> render with Request-Id

Handlers stay cheap: no pydantic per call, cached JSON bytes, one tuple appended to the log.
"""

from __future__ import annotations

import base64
import re
import socket
import struct
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from urllib.parse import parse_qsl

from aiohttp import web

from stripe_emulator import connect, errors
from stripe_emulator.errors import StripeError
from stripe_emulator.faults import ForcedOutcome
from stripe_emulator.idempotency import StoredResponse, should_store
from stripe_emulator.requestlog import LoggedRequest
from stripe_emulator.state import EmulatorState

STATE = web.AppKey("stripe_emulator_state", EmulatorState)
_API_VERSION = re.compile(r"^\d{4}-\d{2}-\d{2}(\.[a-z]+)?$")
_LINGER_RESET = struct.pack("ii", 1, 0)


@dataclass(slots=True)
class Call:
    """One `/v1` call as the pipeline and the endpoint see it."""

    request: web.Request
    endpoint: str
    account_id: str | None
    request_id: str
    started: float
    api_key: str = ""
    livemode: bool = False
    idempotency_key: str | None = None
    stripe_account: str | None = None
    form: list[tuple[str, str]] = field(default_factory=list)


@dataclass(slots=True)
class Answer:
    """What the endpoint decided: a status, a body and headers, or a connection reset."""

    status: int
    body: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)
    store: bool = False
    reset: bool = False
    replayed: bool = False
    #: The forced outcome this answer came from (see `requestlog.LoggedRequest.fault`).
    fault: str | None = None

    @classmethod
    def ok(cls, body: bytes) -> Answer:
        """A 200 with a JSON body (kept for idempotent replay)."""
        return cls(200, body, store=True)

    @classmethod
    def error(cls, call: Call, error: StripeError, store: bool | None = None) -> Answer:
        """An error answer; kept for replay only if Stripe would keep it (see `should_store`)."""
        keep = should_store(error.status) if store is None else store
        body = error.body(call.request_id, call.livemode)
        return cls(error.status, body, dict(error.headers), store=keep)


Work = Callable[[EmulatorState, Call], Awaitable[Answer]]


async def serve(
    request: web.Request, endpoint: str, account_id: str | None, work: Work
) -> web.StreamResponse:
    """Run one `/v1` call through the pipeline and answer it."""
    state = request.app[STATE]
    call = Call(request, endpoint, account_id, state.new_request_id(), time.time())
    limiter_reason: str | None = None
    key_error = _authenticate(state, call)
    if key_error is not None:
        answer = Answer.error(call, key_error)
    elif (limiter := state.limiter) is not None:
        limiter_reason = limiter.admit(endpoint, call.livemode)
        if limiter_reason is not None:
            answer = Answer.error(call, errors.rate_limited(limiter_reason))
        else:
            try:
                answer = await _execute(state, call, work)
            finally:
                limiter.release(endpoint)
    else:
        answer = await _execute(state, call, work)
    _log(state, call, answer, limiter_reason)
    return _render(state, call, answer)


def _authenticate(state: EmulatorState, call: Call) -> StripeError | None:
    headers = call.request.headers
    authorization = headers.get("Authorization", "")
    scheme, _, credentials = authorization.partition(" ")
    if scheme.lower() == "bearer":
        key = credentials.strip()
    elif scheme.lower() == "basic":
        try:
            key = base64.b64decode(credentials).decode().partition(":")[0]
        except ValueError:
            key = ""
    else:
        key = ""
    if not key:
        return errors.missing_key()
    if key not in state.api_keys:
        return errors.invalid_key(key)
    call.api_key = key
    call.livemode = key.startswith(("sk_live_", "rk_live_"))
    version = headers.get("Stripe-Version")
    if version is not None and not _API_VERSION.match(version):
        return errors.StripeError(
            400, "invalid_request_error", f"Invalid Stripe API version: {version}"
        )
    call.stripe_account = headers.get("Stripe-Account") or None
    if call.stripe_account is not None and not state.connect.accessible(call.stripe_account):
        return connect.stripe_account_error(key, call.stripe_account)
    return None


async def _execute(state: EmulatorState, call: Call, work: Work) -> Answer:
    if state.faults.in_outage():
        return Answer.error(call, errors.outage())
    request = call.request
    if request.method != "POST":
        return await work(state, call)
    raw = await request.read()
    call.form = parse_form(raw.decode("utf-8", "replace")) if raw else []
    key = request.headers.get("Idempotency-Key")
    if key is None:
        return await work(state, call)
    call.idempotency_key = key
    scope = f"{call.api_key}|{call.stripe_account or ''}"  # keys are per key and account acted as
    begin = state.idempotency.begin(scope, key, (request.method, request.path, raw))
    if begin.mismatch:
        return Answer.error(call, errors.idempotency_mismatch(key))
    if begin.conflict:
        return Answer.error(call, errors.generic(409))
    if begin.replay is not None:
        stored = begin.replay
        headers = {**stored.headers, "Original-Request": stored.request_id}
        return Answer(stored.status, stored.body, headers, replayed=True)
    stored_answer: Answer | None = None
    try:
        answer = await work(state, call)
        if answer.store:
            stored_answer = answer
            state.idempotency.finish(
                scope,
                key,
                StoredResponse(answer.status, answer.body, answer.headers, call.request_id),
            )
        return answer
    finally:
        if stored_answer is None:
            state.idempotency.abandon(scope, key)


def parse_form(text: str) -> list[tuple[str, str]]:
    """Form-encoded pairs, as Stripe's SDKs send them."""
    return parse_qsl(text, keep_blank_values=True)


async def with_outcome(
    state: EmulatorState, call: Call, forced: ForcedOutcome | None, work: Callable[[], Answer]
) -> Answer:
    """Apply a forced outcome (hang, reset, error; see `faults`) and latency around `work`."""
    answer = await _with_outcome(state, call, forced, work)
    if forced is not None:
        answer.fault = fault_label(forced)
    return answer


def fault_label(forced: ForcedOutcome) -> str | None:
    """How the request log names a forced outcome: `reset`, the forced status, or `hang`."""
    if forced.reset:
        return "reset"
    if forced.is_error:
        return str(forced.status)
    return "hang" if forced.hang_seconds else None


async def _with_outcome(
    state: EmulatorState, call: Call, forced: ForcedOutcome | None, work: Callable[[], Answer]
) -> Answer:
    if forced is not None and forced.hang_seconds:
        await state.pause(forced.hang_seconds)
    latency = state.faults.latency()
    if latency:
        await state.pause(latency)
    if forced is None or not (forced.reset or forced.is_error):
        return work()
    done = work() if forced.executes else None
    if forced.reset:
        if done is None:
            return Answer(0, reset=True)
        # Stripe finished (and keeps the answer for the key); only the client never hears it.
        return Answer(done.status, done.body, done.headers, store=done.store, reset=True)
    assert forced.status is not None
    error = errors.generic(
        forced.status,
        type_=forced.type,
        code=forced.code,
        message=forced.message,
        param=forced.param,
    )
    if forced.status == 429 and forced.rate_limited_reason:
        error.headers["Stripe-Rate-Limited-Reason"] = forced.rate_limited_reason
    should_retry = forced.should_retry
    if should_retry is None and forced.status == 500:
        should_retry = False  # what Stripe sends with most 500s (stripe-python's comment)
    if should_retry is not None:
        error.headers["Stripe-Should-Retry"] = "true" if should_retry else "false"
    return Answer.error(call, error, store=forced.stores)


def _log(state: EmulatorState, call: Call, answer: Answer, limiter: str | None) -> None:
    state.log.append(
        LoggedRequest(
            ts=call.started,
            end_ts=time.time(),
            method=call.request.method,
            path=call.request.path,
            account_id=call.account_id,
            status=0 if answer.reset else answer.status,
            api_key_suffix=call.api_key[-4:] or None,
            idempotency_key=call.idempotency_key,
            stripe_account=call.stripe_account,
            replayed=answer.replayed,
            limiter=limiter,
            request_id=call.request_id,
            fault=answer.fault,
        )
    )


def _render(state: EmulatorState, call: Call, answer: Answer) -> web.StreamResponse:
    if answer.reset:
        _reset_connection(call.request)
    headers = {
        "Request-Id": call.request_id,
        "Stripe-Version": call.request.headers.get("Stripe-Version", state.config.api_version),
        **answer.headers,
    }
    if call.idempotency_key is not None:
        headers["Idempotency-Key"] = call.idempotency_key
    if answer.replayed:
        headers["Idempotent-Replayed"] = "true"
    return web.Response(
        status=answer.status or 500,
        body=answer.body,
        headers=headers,
        content_type="application/json",
    )


def _reset_connection(request: web.Request) -> None:
    """Drop the connection with a TCP RST, as a crashed load balancer would."""
    transport = request.transport
    if transport is None:
        return
    sock = transport.get_extra_info("socket")
    if sock is not None:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, _LINGER_RESET)
    transport.abort()
