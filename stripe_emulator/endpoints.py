"""The Stripe endpoints the emulator serves: retrieve, list and disconnect an FC account, list
the platform's connected accounts (`GET /v1/accounts`) and list events (see `events`).

Each aiohttp handler hands its work function to `pipeline.serve`, which does auth, limits,
idempotency and logging. The work functions validate parameters as Stripe does (unknown
parameters are a 400), then read or change the `AccountStore`. A call sees only the FC accounts
of the Stripe account it acts as (`Stripe-Account`, see `connect`); any other is a 404.
"""

from __future__ import annotations

from aiohttp import web

from stripe_emulator import connect, errors, events
from stripe_emulator.accounts import page, parse_limit
from stripe_emulator.pipeline import Answer, Call, serve, with_outcome
from stripe_emulator.state import EmulatorState

ACCOUNTS_PATH = "/v1/financial_connections/accounts"
RETRIEVE, LIST, DISCONNECT, ACCOUNTS = "retrieve", "list", "disconnect", "accounts"
_PAGE_PARAMS = frozenset({"limit", "starting_after", "ending_before"})
_LIST_PARAMS = frozenset(
    {
        "account_holder[customer]",
        "account_holder[account]",
        "limit",
        "starting_after",
        "ending_before",
        "session",
    }
)


def _unknown_param(names: list[str], allowed: frozenset[str]) -> errors.StripeError | None:
    for name in names:
        if name not in allowed and not name.startswith("expand"):
            return errors.invalid_param(f"Received unknown parameter: {name}", name)
    return None


async def _retrieve(state: EmulatorState, call: Call) -> Answer:
    error = _unknown_param(list(call.request.query), frozenset())
    if error is not None:
        return Answer.error(call, error)
    assert call.account_id is not None
    index = _visible_index(state, call)
    if index is None:
        return Answer.error(call, errors.resource_missing(call.account_id))
    forced = state.faults.draw()
    return await with_outcome(
        state, call, forced, lambda: Answer.ok(state.accounts.body(index, call.livemode))
    )


async def _disconnect(state: EmulatorState, call: Call) -> Answer:
    error = _unknown_param([name for name, _ in call.form], frozenset())
    if error is not None:
        return Answer.error(call, error, store=False)  # failed validation: never executed
    assert call.account_id is not None
    index = _visible_index(state, call)
    if index is None:
        return Answer.error(call, errors.resource_missing(call.account_id))
    if index in state.locked_accounts:
        # A conflict with a request executing concurrently: not stored, retry advised.
        return Answer.error(call, errors.lock_timeout(), store=False)
    state.locked_accounts.add(index)
    try:
        forced = state.scripts.pop(call.account_id) if state.scripts else None
        if forced is None:
            forced = state.faults.draw()
        return await with_outcome(state, call, forced, lambda: _disconnect_now(state, call, index))
    finally:
        state.locked_accounts.discard(index)


def _visible_index(state: EmulatorState, call: Call) -> int | None:
    """The account's index if it exists on the Stripe account the call acts as."""
    assert call.account_id is not None
    index = state.accounts.index_of(call.account_id)
    if index is None or state.accounts.owner(index) != call.stripe_account:
        return None
    return index


def _disconnect_now(state: EmulatorState, call: Call, index: int) -> Answer:
    accounts = state.accounts
    config = state.config
    if config.inactive_disconnect_mode == "400" and accounts.status(index) == "inactive":
        assert call.account_id is not None
        return Answer.error(call, errors.inactive_account(call.account_id))
    if not accounts.disconnect(index):
        if state.config.already_disconnected_mode == "400":
            assert call.account_id is not None
            return Answer.error(call, errors.already_disconnected(call.account_id))
        return Answer.ok(state.accounts.body(index, call.livemode))
    account, body = accounts.get_with_body(index, call.livemode)
    state.webhooks.emit(
        account,
        livemode=call.livemode,
        request_id=call.request_id if config.event_request_mode == "set" else None,
        idempotency_key=call.idempotency_key if config.event_request_mode == "set" else None,
        stripe_account=call.stripe_account,
    )
    return Answer.ok(body)


def _cursor(state: EmulatorState, query: web.Request, name: str) -> int | errors.StripeError | None:
    raw = query.query.get(name)
    if raw is None:
        return None
    index = state.accounts.index_of(raw)
    if index is None:
        return errors.resource_missing(raw, param=name, status=400)
    return index


async def _list(state: EmulatorState, call: Call) -> Answer:
    request = call.request
    query = request.query
    error = _unknown_param(list(query), _LIST_PARAMS)
    customer, account = query.get("account_holder[customer]"), query.get("account_holder[account]")
    if error is None and customer is not None and account is not None:
        error = errors.invalid_param(
            "You may only specify one of these parameters: account_holder[account], "
            "account_holder[customer].",
            "account_holder",
        )
    limit = parse_limit(query.get("limit"))
    after = _cursor(state, request, "starting_after")
    before = _cursor(state, request, "ending_before")
    for value in (limit, after, before):
        if error is None and isinstance(value, errors.StripeError):
            error = value
    if error is not None:
        return Answer.error(call, error)
    assert isinstance(limit, int) and not isinstance(after, errors.StripeError)
    assert not isinstance(before, errors.StripeError)
    owner = call.stripe_account
    if customer is not None:
        candidates = state.accounts.holder_indexes("customer", customer, owner)
    elif account is not None:
        candidates = state.accounts.holder_indexes("account", account, owner)
    else:
        candidates = state.accounts.indexes_of(owner)
    indexes, has_more = page(candidates, limit, after, before)

    def render() -> Answer:
        data = b",".join(state.accounts.body(i, call.livemode) for i in indexes)
        more = b"true" if has_more else b"false"
        tail = b'],"has_more":' + more + b',"url":"' + ACCOUNTS_PATH.encode() + b'"}'
        return Answer.ok(b'{"object":"list","data":[' + data + tail)

    return await with_outcome(state, call, state.faults.draw(), render)


async def _connected_accounts(state: EmulatorState, call: Call) -> Answer:
    query = call.request.query
    error = _unknown_param(list(query), _PAGE_PARAMS)
    if error is None and call.stripe_account is not None:
        error = connect.not_a_platform()
    limit = parse_limit(query.get("limit"))
    if error is None and isinstance(limit, errors.StripeError):
        error = limit
    listed = state.connect.listed()
    positions = {a.id: n for n, a in enumerate(listed)}
    cursors: dict[str, int | None] = {}
    for name in ("starting_after", "ending_before"):
        raw = query.get(name)
        cursors[name] = None if raw is None else positions.get(raw)
        if error is None and raw is not None and cursors[name] is None:
            error = errors.StripeError(
                400,
                "invalid_request_error",
                f"No such account: '{raw}'",
                code="resource_missing",
                param=name,
            )
    if error is not None:
        return Answer.error(call, error)
    assert isinstance(limit, int)
    chosen, has_more = page(
        range(len(listed)), limit, cursors["starting_after"], cursors["ending_before"]
    )
    data = b",".join(listed[n].body(call.livemode) for n in chosen)
    more = b"true" if has_more else b"false"
    return Answer.ok(
        b'{"object":"list","data":[' + data + b'],"has_more":' + more + b',"url":"/v1/accounts"}'
    )


async def list_connected_accounts(request: web.Request) -> web.StreamResponse:
    """`GET /v1/accounts` (the platform's connected accounts)."""
    return await serve(request, ACCOUNTS, None, _connected_accounts)


async def retrieve_account(request: web.Request) -> web.StreamResponse:
    """`GET /v1/financial_connections/accounts/{account}`."""
    return await serve(request, RETRIEVE, request.match_info["account"], _retrieve)


async def list_accounts(request: web.Request) -> web.StreamResponse:
    """`GET /v1/financial_connections/accounts`."""
    return await serve(request, LIST, None, _list)


async def disconnect_account(request: web.Request) -> web.StreamResponse:
    """`POST /v1/financial_connections/accounts/{account}/disconnect`."""
    return await serve(request, DISCONNECT, request.match_info["account"], _disconnect)


async def _unrecognized(state: EmulatorState, call: Call) -> Answer:
    request = call.request
    message = (
        f"Unrecognized request URL ({request.method}: {request.path}). Please see "
        "https://stripe.com/docs or we can help at https://support.stripe.com/."
    )
    return Answer.error(call, errors.StripeError(404, "invalid_request_error", message))


async def unrecognized_url(request: web.Request) -> web.StreamResponse:
    """Any other `/v1` URL or method: Stripe's JSON 404, not aiohttp's text one."""
    return await serve(request, "other", None, _unrecognized)


def add_routes(app: web.Application) -> None:
    """Register the Stripe endpoints on `app` (the catch-all last, so it only gets leftovers)."""
    app.router.add_get(ACCOUNTS_PATH, list_accounts)
    app.router.add_get(ACCOUNTS_PATH + "/{account}", retrieve_account)
    app.router.add_post(ACCOUNTS_PATH + "/{account}/disconnect", disconnect_account)
    app.router.add_get("/v1/accounts", list_connected_accounts)
    app.router.add_get(events.EVENTS_PATH, events.list_events)
    app.router.add_route("*", "/v1/{tail:.*}", unrecognized_url)
