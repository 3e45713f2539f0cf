"""The dashboard's handlers: parse the request, call a ledger core, render HTML.

Every page but the sign-in form needs a signed-in operator (else a redirect to sign in). Actions
(re-queue, cancel) are POST forms that require a reason; they call the same cores as ``fcd
requeue`` / ``fcd cancel`` (:mod:`ledger.operator`), with the signed-in operator's name, and
redirect back with the outcome in the query string (post/redirect/get).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from urllib.parse import quote, urlencode

from aiohttp import web
from pydantic import SecretStr

from control.overview import queue_overview
from ledger.models import RequestNotFound
from ledger.operator import ActionOutcome, cancel, find_failed, requeue
from ledger.store import Ledger
from producer.dashboard import auth, render
from producer.durations import parse_duration

FAILED_LIMIT = 200


@dataclass(frozen=True)
class DashboardContext:
    """What the handlers need: who may sign in, and how to reach the ledger once started."""

    tokens: dict[str, SecretStr] = field(repr=False)
    ledger: Callable[[], Ledger]


DASHBOARD = web.AppKey("dashboard", DashboardContext)


def _ctx(request: web.Request) -> DashboardContext:
    return request.app[DASHBOARD]


def _html(text: str, status: int = 200) -> web.Response:
    headers = {"Cache-Control": "no-store", "X-Frame-Options": "DENY"}
    return web.Response(text=text, content_type="text/html", status=status, headers=headers)


def _operator(request: web.Request) -> str:
    """The signed-in operator, or a redirect to the sign-in form."""
    ctx = _ctx(request)
    operator = auth.operator_from_cookie(request.cookies.get(auth.COOKIE), ctx.tokens)
    if operator is None:
        raise web.HTTPSeeOther("/dashboard/login")
    return operator


def _message(request: web.Request) -> tuple[str, bool] | None:
    text = request.query.get("msg")
    return None if not text else (text, request.query.get("ok") == "1")


def _back(path: str, message: str, ok: bool) -> web.HTTPSeeOther:
    return web.HTTPSeeOther(f"{path}?{urlencode({'msg': message, 'ok': '1' if ok else '0'})}")


async def login_form(request: web.Request) -> web.Response:
    return _html(render.login_page(None, bool(_ctx(request).tokens)))


async def login(request: web.Request) -> web.Response:
    ctx = _ctx(request)
    form = await request.post()
    operator = auth.operator_for_token(str(form.get("token", "")), ctx.tokens)
    if operator is None or not auth.same_origin(request):
        return _html(render.login_page("Unknown token.", bool(ctx.tokens)), status=401)
    response = web.HTTPSeeOther("/dashboard")
    auth.set_session(response, request, auth.session_cookie(operator, ctx.tokens))
    raise response


async def logout(request: web.Request) -> web.Response:
    response = web.HTTPSeeOther("/dashboard/login")
    auth.clear_session(response)
    raise response


def _filters(request: web.Request) -> dict[str, str]:
    return {k: request.query[k].strip() for k in ("code", "since") if request.query.get(k)}


async def overview(request: web.Request) -> web.Response:
    operator = _operator(request)
    ledger = _ctx(request).ledger()
    filters = _filters(request)
    message = _message(request)
    try:
        since = parse_duration(filters["since"]) if "since" in filters else None
    except ValueError as exc:
        since, message = None, (str(exc), False)
    failed = await find_failed(
        ledger, since_seconds=since, code=filters.get("code"), limit=FAILED_LIMIT
    )
    body = render.overview_page(
        operator, await queue_overview(ledger), failed, filters, time.time(), message
    )
    return _html(body)


async def lookup(request: web.Request) -> web.Response:
    _operator(request)
    ref = request.query.get("ref", "").strip()
    raise web.HTTPSeeOther(f"/dashboard/requests/{quote(ref)}" if ref else "/dashboard")


async def request_detail(request: web.Request) -> web.Response:
    operator = _operator(request)
    ledger = _ctx(request).ledger()
    try:
        found = await ledger.resolve(request.match_info["ref"])
    except RequestNotFound:
        body = render.flash(f"No request found for {request.match_info['ref']}.", False)
        return _html(render.page("Not found", body, operator), status=404)
    history = await ledger.history(found.request_id)
    return _html(render.request_page(operator, found, history, _message(request)))


async def _reason(request: web.Request) -> str:
    form = await request.post()
    return str(form.get("reason", "")).strip()


async def _act(request: web.Request, action: str) -> web.Response:
    operator = _operator(request)
    if not auth.same_origin(request):
        return _html(render.page("Refused", render.flash("Cross-site form refused.", False)), 403)
    request_id = request.match_info["ref"]
    path = f"/dashboard/requests/{quote(request_id)}"
    reason = await _reason(request)
    if not reason:
        raise _back(path, "A reason is required.", ok=False)
    core = requeue if action == "requeue" else cancel
    outcome: ActionOutcome = await core(
        _ctx(request).ledger(), request_id, operator=operator, reason=reason
    )
    raise _back(path, f"{request_id}: {outcome.message}", ok=outcome.ok)


async def requeue_one(request: web.Request) -> web.Response:
    return await _act(request, "requeue")


async def cancel_one(request: web.Request) -> web.Response:
    return await _act(request, "cancel")


async def requeue_shown(request: web.Request) -> web.Response:
    """Re-queue every failed request matching the posted filters (what the overview showed)."""
    operator = _operator(request)
    if not auth.same_origin(request):
        return _html(render.page("Refused", render.flash("Cross-site form refused.", False)), 403)
    form = await request.post()
    reason = str(form.get("reason", "")).strip()
    code = str(form.get("code", "")).strip() or None
    since_text = str(form.get("since", "")).strip()
    if not reason:
        raise _back("/dashboard", "A reason is required.", ok=False)
    try:
        since = parse_duration(since_text) if since_text else None
    except ValueError as exc:
        raise _back("/dashboard", str(exc), ok=False) from exc
    ledger = _ctx(request).ledger()
    failed = await find_failed(ledger, since_seconds=since, code=code, limit=FAILED_LIMIT)
    outcomes = [
        await requeue(ledger, r.request_id, operator=operator, reason=reason) for r in failed
    ]
    done = sum(o.ok for o in outcomes)
    raise _back("/dashboard", f"Re-queued {done} of {len(outcomes)}.", ok=done == len(outcomes))
