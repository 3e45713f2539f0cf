"""The three Stripe endpoints the emulator serves: retrieve, list and disconnect an account.

Each aiohttp handler hands its work function to `pipeline.serve`, which does auth, limits,
idempotency and logging. The work functions validate parameters as Stripe does (unknown
parameters are a 400), then read or change the `AccountStore`.
"""

from __future__ import annotations

from aiohttp import web

from stripe_emulator import errors
from stripe_emulator.accounts import page
from stripe_emulator.pipeline import Answer, Call, serve, with_outcome
from stripe_emulator.state import EmulatorState

ACCOUNTS_PATH = "/v1/financial_connections/accounts"
RETRIEVE, LIST, DISCONNECT = "retrieve", "list", "disconnect"
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
    index = state.accounts.index_of(call.account_id)
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
    index = state.accounts.index_of(call.account_id)
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


def _disconnect_now(state: EmulatorState, call: Call, index: int) -> Answer:
    accounts = state.accounts
    if not accounts.disconnect(index):
        if state.config.already_disconnected_mode == "400":
            assert call.account_id is not None
            return Answer.error(call, errors.already_disconnected(call.account_id))
        return Answer.ok(state.accounts.body(index, call.livemode))
    account, body = accounts.get_with_body(index, call.livemode)
    state.webhooks.emit(
        account,
        livemode=call.livemode,
        request_id=call.request_id,
        idempotency_key=call.idempotency_key,
    )
    return Answer.ok(body)


def _parse_limit(raw: str | None) -> int | errors.StripeError:
    if raw is None:
        return 10
    try:
        limit = int(raw)
    except ValueError:
        return errors.invalid_param(
            f"Invalid integer: {raw}", "limit", code="parameter_invalid_integer"
        )
    if not 1 <= limit <= 100:
        bound = "greater than or equal to 1" if limit < 1 else "less than or equal to 100"
        return errors.invalid_param(f"This value must be {bound}.", "limit")
    return limit


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
    limit = _parse_limit(query.get("limit"))
    after = _cursor(state, request, "starting_after")
    before = _cursor(state, request, "ending_before")
    for value in (limit, after, before):
        if error is None and isinstance(value, errors.StripeError):
            error = value
    if error is not None:
        return Answer.error(call, error)
    assert isinstance(limit, int) and not isinstance(after, errors.StripeError)
    assert not isinstance(before, errors.StripeError)
    if customer is not None:
        candidates = state.accounts.holder_indexes("customer", customer)
    elif account is not None:
        candidates = state.accounts.holder_indexes("account", account)
    else:
        candidates = range(state.accounts.total)
    indexes, has_more = page(candidates, limit, after, before)

    def render() -> Answer:
        data = b",".join(state.accounts.body(i, call.livemode) for i in indexes)
        more = b"true" if has_more else b"false"
        tail = b'],"has_more":' + more + b',"url":"' + ACCOUNTS_PATH.encode() + b'"}'
        return Answer.ok(b'{"object":"list","data":[' + data + tail)

    return await with_outcome(state, call, state.faults.draw(), render)


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
    app.router.add_route("*", "/v1/{tail:.*}", unrecognized_url)
