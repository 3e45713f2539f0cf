"""The dashboard's actions (POST forms): sign-in, re-queue / cancel one request, bulk actions
after a confirmation, pause / resume, cancel a sweep run.

Every action needs a signed-in operator and a same-origin POST (beside the ``SameSite=Strict``
cookie), takes a reason where it changes something, calls the same core as the CLI
(:mod:`ledger.operator`, :mod:`control.pause`, :meth:`retention.runs.SweepRuns.cancel`) with the
operator's name, and redirects back with the outcome (post/redirect/get).

Bulk actions act on exactly the rows the operator saw: the list posts the ids it showed to a
confirmation page, which lists them and posts the same ids back with a reason; nothing is
re-queried, so a request that failed after the list was drawn is never swept in.
"""

from __future__ import annotations

from urllib.parse import quote

from aiohttp import web

from control.pause import pause, resume
from ledger.operator import ActionOutcome, cancel, requeue
from producer.dashboard import auth
from producer.dashboard.render import render
from producer.dashboard.views import back, ctx, html, page, signed_in
from retention.runs import CannotCancel, SweepRuns

MAX_BULK = 500
VERBS = {"requeue": "re-queue", "cancel": "cancel"}
DONE = {"requeue": "Re-queued", "cancel": "Cancelled"}


async def login_form(request: web.Request) -> web.Response:
    return html(
        render("login.html", title="Sign in", configured=bool(ctx(request).tokens), error=None)
    )


async def login(request: web.Request) -> web.Response:
    context = ctx(request)
    form = await request.post()
    operator = auth.operator_for_token(str(form.get("token", "")), context.tokens)
    if operator is None or not auth.same_origin(request):
        body = render(
            "login.html", title="Sign in", configured=bool(context.tokens), error="Unknown token."
        )
        return html(body, status=401)
    response = web.HTTPSeeOther("/dashboard")
    auth.set_session(response, request, auth.session_cookie(operator, context.tokens))
    raise response


async def logout(request: web.Request) -> web.Response:
    response = web.HTTPSeeOther("/dashboard/login")
    auth.clear_session(response)
    raise response


async def _checked(request: web.Request) -> tuple[str, dict[str, str], list[str]]:
    """(operator, form fields, posted ids) of a signed-in, same-origin POST; else 403."""
    operator = signed_in(request)
    if not auth.same_origin(request):
        raise web.HTTPForbidden(text="Cross-site form refused.")
    form = await request.post()
    fields = {k: str(v).strip() for k, v in form.items() if k != "id"}
    ids = [str(v).strip() for v in form.getall("id", []) if str(v).strip()]
    return operator, fields, ids


def _safe_back(target: str) -> str:
    return target if target.startswith("/dashboard") and "//" not in target else "/dashboard"


async def act_on_one(request: web.Request) -> web.Response:
    operator, fields, _ = await _checked(request)
    request_id = request.match_info["ref"]
    action = request.match_info["action"]
    path = f"/dashboard/requests/{quote(request_id)}"
    if not fields.get("reason"):
        raise back(path, "A reason is required.", ok=False)
    core = requeue if action == "requeue" else cancel
    outcome: ActionOutcome = await core(
        ctx(request).ledger(), request_id, operator=operator, reason=fields["reason"]
    )
    raise back(path, f"{request_id}: {outcome.message}", ok=outcome.ok)


async def _bulk_form(request: web.Request) -> tuple[str, dict[str, str], list[str], str, str]:
    """(operator, fields, unique ids, action, back path) of a bulk POST; else back with why."""
    operator, fields, ids = await _checked(request)
    action = fields.get("action", "")
    where = _safe_back(fields.get("back", "/dashboard"))
    if action not in VERBS or not ids or len(ids) > MAX_BULK:
        raise back(where, f"Nothing to do (1 to {MAX_BULK} ids and an action needed).", ok=False)
    return operator, fields, list(dict.fromkeys(ids)), action, where


async def bulk_confirm(request: web.Request) -> web.Response:
    """The confirmation step: list exactly the posted ids, ask for a reason."""
    _, _, ids, action, where = await _bulk_form(request)
    return await page(
        request, "confirm.html", "Requests", title="Confirm", action=action, verb=VERBS[action],
        ids=ids, back=where,
    )  # fmt: skip


async def bulk_apply(request: web.Request) -> web.Response:
    """Act on exactly the confirmed ids, one by one; report how many were done."""
    operator, fields, ids, action, where = await _bulk_form(request)
    if not fields.get("reason"):
        raise back(where, "A reason is required.", ok=False)
    core = requeue if action == "requeue" else cancel
    ledger = ctx(request).ledger()
    outcomes = [await core(ledger, rid, operator=operator, reason=fields["reason"]) for rid in ids]
    done = sum(o.ok for o in outcomes)
    refused = "; ".join(f"{o.request_id}: {o.message}" for o in outcomes if not o.ok)
    text = f"{DONE[action]} {done} of {len(outcomes)}." + (
        f" Refused: {refused}" if refused else ""
    )
    raise back(where, text, ok=not refused)


async def pause_service(request: web.Request) -> web.Response:
    operator, fields, _ = await _checked(request)
    if not fields.get("reason"):
        raise back("/dashboard", "A reason is required.", ok=False)
    ledger = ctx(request).ledger()
    await pause(
        ledger.redis, operator, fields["reason"], "dashboard", key=ledger.pause_key,
        audit=ledger.audit,
    )  # fmt: skip
    raise back("/dashboard", f"Paused by {operator}: {fields['reason']}", ok=True)


async def resume_service(request: web.Request) -> web.Response:
    operator, fields, _ = await _checked(request)
    if not fields.get("reason"):
        raise back("/dashboard", "A reason is required.", ok=False)
    ledger = ctx(request).ledger()
    lifted = await resume(
        ledger.redis, operator, fields["reason"], key=ledger.pause_key, audit=ledger.audit
    )
    text = "Was not paused." if lifted is None else f"Resumed by {operator}: {fields['reason']}"
    raise back("/dashboard", text, ok=lifted is not None)


async def sweep_cancel_form(request: web.Request) -> web.Response:
    ledger = ctx(request).ledger()
    runs = SweepRuns(ledger.redis, ledger.prefix, ledger.audit)
    try:
        run = await runs.get(request.match_info["run"])
    except KeyError:
        raise back("/dashboard/sweeps", "No such sweep run.", ok=False) from None
    return await page(request, "sweep_cancel.html", "Sweeps", title="Cancel sweep", run=run)


async def sweep_cancel(request: web.Request) -> web.Response:
    operator, fields, _ = await _checked(request)
    run_id = request.match_info["run"]
    if not fields.get("reason"):
        raise back(f"/dashboard/sweeps/{quote(run_id)}/cancel", "A reason is required.", False)
    ledger = ctx(request).ledger()
    runs = SweepRuns(ledger.redis, ledger.prefix, ledger.audit)
    try:
        run = await runs.cancel(run_id, operator=operator, reason=fields["reason"])
    except CannotCancel as exc:
        raise back("/dashboard/sweeps", str(exc), ok=False) from None
    raise back("/dashboard/sweeps", f"{run.run_id}: {run.message}", ok=True)
