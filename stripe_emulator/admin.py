"""The admin API under `/_emulator/` (JSON, no auth): what tests use to set up and inspect.

    GET    /_emulator/accounts?status=&customer=&account=&limit=   {"data": [account, ...]}
    GET    /_emulator/accounts/{id}                  the account, or 404
    POST   /_emulator/accounts                       {"count", "status", "customer", "account",
                                                      "stripe_account"}
    POST   /_emulator/accounts/{id}/user-disconnect  the user disconnects at their bank (webhook)
    GET    /_emulator/requests?since=                {"data": [logged call, ...]}
    DELETE /_emulator/requests                       clear the log
    POST   /_emulator/script                         {"account_id", "responses": [outcome, ...]}
    GET    /_emulator/script                         {"pending": {account_id: n}}
    DELETE /_emulator/script                         drop every script
    GET    /_emulator/config                         the running EmulatorConfig
    POST   /_emulator/config                         a ConfigUpdate; answers the new config
    GET    /_emulator/webhooks                       {"data": [delivery, ...], "events": [...]}
    GET    /_emulator/connected-accounts             {"data": [{id, created, revoked}, ...]}
    POST   /_emulator/connected-accounts             {"count": n}: connect new accounts
    POST   /_emulator/connected-accounts/{id}/revoke the platform loses access to it
    POST   /_emulator/refuse-connections             {"seconds": N}: stop listening (and drop
                                                      open connections) for N s, then listen
                                                      again; answers {"until": unix s}
    GET    /_emulator/health                         {"ok": true, "accounts": n}

Bad input answers 400 `{"error": {"message": ...}}`. Admin calls are not logged, limited or
faulted.
"""

from __future__ import annotations

import json
import time
from typing import Any, Literal

from aiohttp import web
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from stripe_emulator.config import ConfigUpdate
from stripe_emulator.faults import ForcedOutcome
from stripe_emulator.pipeline import STATE
from stripe_emulator.state import EmulatorState

PREFIX = "/_emulator"


class CreateAccounts(BaseModel):
    """Body of `POST /_emulator/accounts`; with no holder, the accounts get a new customer."""

    model_config = ConfigDict(extra="forbid")

    count: int = Field(default=1, ge=1, le=100_000)
    status: Literal["active", "inactive", "disconnected"] = "active"
    customer: str | None = None
    account: str | None = None
    stripe_account: str | None = None
    """Create the accounts on this connected account (visible only with `Stripe-Account`)."""


class ConnectAccounts(BaseModel):
    """Body of `POST /_emulator/connected-accounts`."""

    model_config = ConfigDict(extra="forbid")

    count: int = Field(default=1, ge=1, le=10_000)


class Script(BaseModel):
    """Body of `POST /_emulator/script`: outcomes for an account's next disconnect calls."""

    model_config = ConfigDict(extra="forbid")

    account_id: str
    responses: list[ForcedOutcome]


class RefuseConnections(BaseModel):
    """Body of `POST /_emulator/refuse-connections` (see `stripe_emulator.listener`)."""

    model_config = ConfigDict(extra="forbid")

    seconds: float = Field(gt=0, le=3600)


def _json(data: Any, status: int = 200) -> web.Response:
    return web.json_response(data, status=status)


def _problem(message: str, status: int = 400) -> web.Response:
    return _json({"error": {"message": message}}, status)


async def _body(request: web.Request) -> Any:
    raw = await request.read()
    return json.loads(raw) if raw else {}


def _state(request: web.Request) -> EmulatorState:
    return request.app[STATE]


async def list_accounts(request: web.Request) -> web.Response:
    """Accounts in creation order, filtered by `status`, `customer` or `account`."""
    state, query = _state(request), request.query
    try:
        limit = int(query.get("limit", "100"))
    except ValueError:
        return _problem("limit must be an integer")
    store = state.accounts
    customer, account = query.get("customer"), query.get("account")
    if customer is not None:
        candidates = store.holder_indexes("customer", customer)
    elif account is not None:
        candidates = store.holder_indexes("account", account)
    else:
        candidates = range(store.total)
    status = query.get("status")
    data: list[dict[str, Any]] = []
    for index in candidates:
        if len(data) >= limit > 0:
            break
        if status is None or store.status(index) == status:
            data.append(store.get(index))
    return _json({"data": data})


async def get_account(request: web.Request) -> web.Response:
    """One account by id, or 404."""
    state = _state(request)
    index = state.accounts.index_of(request.match_info["id"])
    if index is None:
        return _problem("no such account", 404)
    return _json(state.accounts.get(index))


async def create_accounts(request: web.Request) -> web.Response:
    """Create `count` accounts with the given status for one holder (a new customer if none)."""
    try:
        spec = CreateAccounts.model_validate(await _body(request))
    except (ValidationError, ValueError) as exc:
        return _problem(str(exc))
    if spec.customer is not None and spec.account is not None:
        return _problem("customer and account are mutually exclusive")
    state = _state(request)
    owner = spec.stripe_account
    if owner is not None and state.connect.get(owner) is None:
        return _problem(f"no connected account {owner!r}")
    store = state.accounts
    kind = "account" if spec.account is not None else "customer"
    holder = spec.account or spec.customer or store.new_holder_id()
    now = int(time.time())
    indexes = [store.create(spec.status, kind, holder, now, owner) for _ in range(spec.count)]
    return _json({"data": [store.get(i) for i in indexes]})


def _connected_json(state: EmulatorState) -> dict[str, Any]:
    accounts = state.connect.listed_with_revoked()
    return {"data": [{"id": a.id, "created": a.created, "revoked": a.revoked} for a in accounts]}


async def get_connected(request: web.Request) -> web.Response:
    """Every connected account, revoked ones included, in creation order."""
    return _json(_connected_json(_state(request)))


async def connect_accounts(request: web.Request) -> web.Response:
    """Connect `count` new accounts to the platform; answers the new ones."""
    try:
        spec = ConnectAccounts.model_validate(await _body(request))
    except (ValidationError, ValueError) as exc:
        return _problem(str(exc))
    connect = _state(request).connect
    created = [connect.create(int(time.time())) for _ in range(spec.count)]
    return _json({"data": [{"id": a.id, "created": a.created, "revoked": False} for a in created]})


async def revoke_connected(request: web.Request) -> web.Response:
    """The platform's access to a connected account is revoked (it deauthorised the platform)."""
    if not _state(request).connect.revoke(request.match_info["id"]):
        return _problem("no such connected account", 404)
    return _json(_connected_json(_state(request)))


async def user_disconnect(request: web.Request) -> web.Response:
    """The account holder disconnects at their bank: the account changes and a webhook goes out."""
    state = _state(request)
    index = state.accounts.index_of(request.match_info["id"])
    if index is None:
        return _problem("no such account", 404)
    if state.accounts.disconnect(index):
        account, _ = state.accounts.get_with_body(index, livemode=False)
        state.webhooks.emit(
            account,
            livemode=False,
            request_id=None,
            idempotency_key=None,
            stripe_account=state.accounts.owner(index),
        )
    return _json(state.accounts.get(index))


async def get_requests(request: web.Request) -> web.Response:
    """The request log, oldest first; `since` (unix seconds) keeps later arrivals only."""
    since = request.query.get("since")
    return _json({"data": _state(request).log.render(float(since) if since else None)})


async def clear_requests(request: web.Request) -> web.Response:
    """Empty the request log."""
    _state(request).log.clear()
    return _json({"data": []})


async def add_script(request: web.Request) -> web.Response:
    """Queue forced outcomes for an account's next disconnect calls."""
    try:
        script = Script.model_validate(await _body(request))
    except (ValidationError, ValueError) as exc:
        return _problem(str(exc))
    state = _state(request)
    if state.accounts.index_of(script.account_id) is None:
        return _problem("no such account", 404)
    pending = state.scripts.add(script.account_id, script.responses)
    return _json({"account_id": script.account_id, "pending": pending})


async def get_scripts(request: web.Request) -> web.Response:
    """How many scripted outcomes remain per account."""
    return _json({"pending": _state(request).scripts.pending()})


async def clear_scripts(request: web.Request) -> web.Response:
    """Drop every scripted outcome."""
    _state(request).scripts.clear()
    return _json({"pending": {}})


def _config_json(state: EmulatorState) -> dict[str, Any]:
    config = state.config.model_dump(mode="json")
    config["api_keys"] = [f"...{key[-4:]}" for key in state.config.api_keys]
    config["webhook_endpoints"] = [
        {"url": e.url, "secret": "whsec_..."} for e in state.config.webhook_endpoints
    ]
    return config


async def get_config(request: web.Request) -> web.Response:
    """The running configuration (keys and secrets masked)."""
    return _json(_config_json(_state(request)))


async def post_config(request: web.Request) -> web.Response:
    """Change `already_disconnected_mode`, `limits`, `faults`, webhooks or start an outage."""
    try:
        update = ConfigUpdate.model_validate(await _body(request))
    except (ValidationError, ValueError) as exc:
        return _problem(str(exc))
    state = _state(request)
    state.apply(update)
    return _json(_config_json(state))


async def get_webhooks(request: web.Request) -> web.Response:
    """Webhook deliveries with their attempts, and the events made."""
    webhooks = _state(request).webhooks
    return _json({"data": list(webhooks.deliveries), "events": list(webhooks.events)})


async def refuse_connections(request: web.Request) -> web.Response:
    """Close the listening socket and open connections for a while (a host that went away)."""
    try:
        spec = RefuseConnections.model_validate(await _body(request))
    except (ValidationError, ValueError) as exc:
        return _problem(str(exc))
    listener = _state(request).listener
    if listener is None:
        return _problem("this emulator was not started with a listener it controls", 409)
    return _json({"until": listener.refuse_for(spec.seconds)})


async def health(request: web.Request) -> web.Response:
    """Liveness, and how many accounts exist."""
    return _json({"ok": True, "accounts": _state(request).accounts.total})


def add_routes(app: web.Application) -> None:
    """Register the admin API on `app`."""
    router = app.router
    router.add_get(f"{PREFIX}/accounts", list_accounts)
    router.add_post(f"{PREFIX}/accounts", create_accounts)
    router.add_get(PREFIX + "/accounts/{id}", get_account)
    router.add_post(PREFIX + "/accounts/{id}/user-disconnect", user_disconnect)
    router.add_get(f"{PREFIX}/requests", get_requests)
    router.add_delete(f"{PREFIX}/requests", clear_requests)
    router.add_post(f"{PREFIX}/script", add_script)
    router.add_get(f"{PREFIX}/script", get_scripts)
    router.add_delete(f"{PREFIX}/script", clear_scripts)
    router.add_get(f"{PREFIX}/config", get_config)
    router.add_post(f"{PREFIX}/config", post_config)
    router.add_get(f"{PREFIX}/webhooks", get_webhooks)
    router.add_get(f"{PREFIX}/connected-accounts", get_connected)
    router.add_post(f"{PREFIX}/connected-accounts", connect_accounts)
    router.add_post(PREFIX + "/connected-accounts/{id}/revoke", revoke_connected)
    router.add_post(f"{PREFIX}/refuse-connections", refuse_connections)
    router.add_get(f"{PREFIX}/health", health)
