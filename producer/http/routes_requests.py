"""``/v1``: submit disconnect requests (one or a batch) and read their status and history."""

from __future__ import annotations

import json
import re
from typing import Any

from aiohttp import web

from ledger.customer_models import CustomerNotFound, EventIdConflict
from ledger.machine import FROM_REDIS
from ledger.models import ACCOUNT_ID_RE, REQUEST_ID_RE, RequestNotFound
from producer.http.auth import authenticate
from producer.http.errors import ApiError
from producer.http.state import services
from producer.intake import MAX_BATCH_ITEMS, InvalidInput, conflict_error, parse_body

CUSTOMER_REQUEST_ID_RE = re.compile(r"^cr_[0-9a-z]{26}$")


async def read_json(request: web.Request) -> Any:
    """The decoded JSON body; 415 for another media type, 413 over 1 MiB, 400 if not JSON."""
    if request.content_type != "application/json":
        raise ApiError(415, "send the body as application/json")
    raw = await request.read()
    try:
        return json.loads(raw)
    except (ValueError, UnicodeDecodeError):
        raise ApiError(400, "the body is not valid JSON", code="invalid_json") from None


async def submit_request(request: web.Request) -> web.Response:
    """POST /v1/disconnect-requests"""
    svc = services(request)
    caller = authenticate(request, svc.tokens)
    raw = await read_json(request)
    try:
        body = parse_body(raw)
    except InvalidInput as exc:
        svc.counters.add("intake", caller, "rejected")
        raise ApiError(422, exc.message, code=exc.code, field=exc.field) from None
    try:
        result = await svc.intake.submit(caller, body)
    except EventIdConflict:
        error = conflict_error(raw)
        raise ApiError(409, error["message"], code=error["code"], field="event_id") from None
    headers = {"Location": result.body["status_url"]}
    if result.replayed:
        headers["Idempotent-Replayed"] = "true"
    return web.json_response(result.body, status=202, headers=headers)


async def submit_batch(request: web.Request) -> web.Response:
    """POST /v1/disconnect-requests/batch"""
    svc = services(request)
    caller = authenticate(request, svc.tokens)
    raw = await read_json(request)
    items = raw.get("items") if isinstance(raw, dict) else None
    if not isinstance(items, list) or not items:
        raise ApiError(422, "items must be a non-empty list", code="invalid_field", field="items")
    if len(items) > MAX_BATCH_ITEMS:
        message = f"at most {MAX_BATCH_ITEMS} items per batch, got {len(items)}"
        raise ApiError(422, message, code="too_many_items", field="items")
    results = await svc.intake.submit_batch(caller, items)
    accepted = sum(1 for r in results if r["status"] == 202)
    body = {"accepted": accepted, "rejected": len(results) - accepted, "results": results}
    return web.json_response(body, status=200)


def serves(caller: str, history: list[dict[str, Any]]) -> bool:
    """Whether the service ``caller`` submitted this request, or a submission merged into it:
    a record of its history carries one of the caller's references (``<service>:<event id>``)."""
    mine = f"{caller}:"
    return any(str(record.get("reference") or "").startswith(mine) for record in history)


async def get_request(request: web.Request) -> web.Response:
    """GET /v1/disconnect-requests/{request_id}: an account request or a customer request,
    from Redis or, once it moved there, from the archive (``stored_in``: ``redis``
    or ``archive``).

    A service sees only requests it submitted (or merged a submission into) unless its token has
    ``read:all``; any other id answers 404, exactly as an unknown one does.
    """
    svc = services(request)
    caller = authenticate(request, svc.tokens)
    request_id = request.match_info["request_id"]
    try:
        if REQUEST_ID_RE.match(request_id):
            found = await svc.ledger.locate(request_id)
            history = found.history
            body = {"kind": "account", **found.request.model_dump(mode="json")}
        elif CUSTOMER_REQUEST_ID_RE.match(request_id):
            parent = await svc.customers.locate(request_id)
            summary = await svc.customers.summary(parent.request, parent.archived)
            history = parent.history
            body = {"kind": "customer", **parent.request.model_dump(mode="json"), **summary}
            found = parent  # type: ignore[assignment]
        else:
            history = []
        if history and (caller in svc.reading_all or serves(caller, history)):
            return web.json_response({**body, "history": history, "stored_in": found.stored_in})
    except (RequestNotFound, CustomerNotFound):
        pass
    raise ApiError(404, f"no request {request_id!r}", field="request_id")


async def account_history(request: web.Request) -> web.Response:
    """GET /v1/accounts/{account_id}/history

    Every request for the account, in Redis or moved to the archive (``stored_in``: request id
    -> ``redis`` or ``archive``). Without ``read:all`` a service sees the requests it submitted for
    the account (and the account's own notes only if there is one): nothing about other
    services' requests.
    """
    svc = services(request)
    caller = authenticate(request, svc.tokens)
    account_id = request.match_info["account_id"]
    if not ACCOUNT_ID_RE.match(account_id):
        raise ApiError(404, f"{account_id!r} is not an account id (fca_…)", field="account_id")
    history = await svc.ledger.account_history(account_id)
    requests = await svc.ledger.requests_for_account(account_id)
    sources = dict.fromkeys(requests, FROM_REDIS)
    histories = {}
    for archived in await svc.ledger.archived_for_account(account_id):
        if archived.request.request_id not in sources:
            sources[archived.request.request_id] = archived.stored_in
            histories[archived.request.request_id] = archived.history
            history += archived.history
    history.sort(key=lambda record: str(record["ts"]))
    first: dict[str, str] = {}  # each request's earliest record, one pass
    for record in history:
        first.setdefault(str(record.get("request_id")), str(record["ts"]))
    requests = sorted(sources, key=lambda rid: first.get(rid, ""))
    if caller not in svc.reading_all:
        mine = []
        for rid in requests:
            own = histories.get(rid) or await svc.ledger.history(rid)
            if serves(caller, own):
                mine.append(rid)
        requests = mine
        readable = set(requests)
        history = [
            record
            for record in history
            if record.get("request_id") in readable
            or (record.get("request_id") is None and readable)
        ]
    body = {"account_id": account_id, "request_ids": requests, "history": history}
    return web.json_response({**body, "stored_in": {rid: sources[rid] for rid in requests}})


def setup_request_routes(app: web.Application) -> None:
    app.router.add_post("/v1/disconnect-requests", submit_request)
    app.router.add_post("/v1/disconnect-requests/batch", submit_batch)
    app.router.add_get("/v1/disconnect-requests/{request_id}", get_request, allow_head=False)
    app.router.add_get("/v1/accounts/{account_id}/history", account_history, allow_head=False)
