"""The dashboard's pages: parse the request, read through the cores, render a template.

Every page but the sign-in form needs a signed-in operator (else a redirect to sign in). Pages:
the overview (cards, kill switch, throughput and outcome charts), requests by any status
(failed ones filtered by HTTP status or Stripe code and age), one request's timeline, sweep runs
(progress, why a run waits, cancel) and workers. Live regions refresh from
``/dashboard/live/<panel>`` (HTML fragments) without reloading the page. The actions (POST) are
in :mod:`.actions`.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote, urlencode

from aiohttp import web
from pydantic import SecretStr

from control.overview import queue_overview, redis_location_of
from control.pause import get_pause
from control.workers import ENTRY_TTL_SECONDS, WorkerRegistry
from ledger.durations import parse_duration
from ledger.models import RequestNotFound, RequestStatus
from ledger.operator import Failure, count_causes, find_failures
from ledger.store import Ledger
from producer.dashboard import auth
from producer.dashboard.charts import RANGES, outcome_chart
from producer.dashboard.render import render
from producer.sweep_waits import wait_reason
from retention.runs import TERMINAL_SWEEP, SweepRuns

LIST_LIMIT = 200
SWEEPS_LIMIT = 30
BULK_ACTIONS = {"failed": "requeue", "queued": "cancel", "retry_scheduled": "cancel"}


@dataclass(frozen=True)
class DashboardContext:
    """What the handlers need: who may sign in, how to reach the ledger once started, and the
    queue-depth bound sweeps wait on (for "why does it wait")."""

    tokens: dict[str, SecretStr] = field(repr=False)
    ledger: Callable[[], Ledger]
    bulk_queue_max_depth: int = 50_000


DASHBOARD = web.AppKey("dashboard", DashboardContext)


def ctx(request: web.Request) -> DashboardContext:
    return request.app[DASHBOARD]


def html(text: str, status: int = 200) -> web.Response:
    headers = {"Cache-Control": "no-store", "X-Frame-Options": "DENY"}
    return web.Response(text=text, content_type="text/html", status=status, headers=headers)


def signed_in(request: web.Request) -> str:
    """The signed-in operator, or a redirect to the sign-in form."""
    operator = auth.operator_from_cookie(request.cookies.get(auth.COOKIE), ctx(request).tokens)
    if operator is None:
        raise web.HTTPSeeOther("/dashboard/login")
    return operator


def message(request: web.Request) -> tuple[str, bool] | None:
    text = request.query.get("msg")
    return None if not text else (text, request.query.get("ok") == "1")


def back(path: str, text: str, ok: bool) -> web.HTTPSeeOther:
    joiner = "&" if "?" in path else "?"
    return web.HTTPSeeOther(f"{path}{joiner}{urlencode({'msg': text, 'ok': '1' if ok else '0'})}")


async def page(
    request: web.Request,
    template: str,
    nav: str,
    *,
    notice: tuple[str, bool] | None = None,
    **context: Any,
) -> web.Response:
    """A full page: the layout's header (operator, Redis, pause), the flash message (``notice``,
    else the one in the query string) and ``context``."""
    operator = signed_in(request)
    ledger = ctx(request).ledger()
    pause = await get_pause(ledger.redis, key=ledger.pause_key)
    header = {"redis": str(redis_location_of(ledger.redis)), "paused": pause is not None}
    return html(
        render(
            template, operator=operator, header=header, nav=nav,
            message=notice or message(request),
            now=time.time(), live=True, **context,
        )
    )  # fmt: skip


async def overview(request: web.Request) -> web.Response:
    ledger = ctx(request).ledger()
    return await page(
        request, "overview.html", "Overview", title="Overview",
        overview=await queue_overview(ledger), charts=await _charts(ledger),
    )  # fmt: skip


async def _charts(ledger: Ledger) -> list[Any]:
    return [await outcome_chart(ledger, name) for name in RANGES]


async def requests_page(request: web.Request) -> web.Response:
    """Requests in one status (any), newest change first; failed ones with filters and causes."""
    ledger = ctx(request).ledger()
    status = request.query.get("status", "failed")
    if status not in {s.value for s in RequestStatus}:
        status = "failed"
    filters = {k: request.query[k].strip() for k in ("code", "since") if request.query.get(k)}
    notice = message(request)
    rows: list[Failure] = []
    if status == RequestStatus.FAILED.value:
        try:
            since = parse_duration(filters["since"]) if "since" in filters else None
        except ValueError as exc:
            since, notice = None, (str(exc), False)
        rows = await find_failures(
            ledger, since_seconds=since, code=filters.get("code"), limit=LIST_LIMIT
        )
    else:
        rows = await _in_status(ledger, RequestStatus(status))
    counts = {s.value: n for s, n in (await ledger.count_by_status()).items()}
    return await page(
        request, "requests.html", "Requests", notice=notice, title=f"Requests: {status}",
        status=status,
        statuses=[s.value for s in RequestStatus], counts=counts, rows=rows, filters=filters,
        causes=count_causes(rows), limit=LIST_LIMIT, bulk_action=BULK_ACTIONS.get(status),
        back=f"/dashboard/requests?{urlencode({'status': status, **filters})}",
    )  # fmt: skip


async def _in_status(ledger: Ledger, status: RequestStatus) -> list[Failure]:
    ids = await ledger.redis.zrevrange(ledger.status_key(status), 0, LIST_LIMIT - 1)
    rows = []
    for raw in ids:
        try:
            found = await ledger.get(raw.decode() if isinstance(raw, bytes) else str(raw))
        except RequestNotFound:
            continue
        if found.status == status:
            rows.append(Failure(found, None))
    return rows


async def lookup(request: web.Request) -> web.Response:
    signed_in(request)
    ref = request.query.get("ref", "").strip()
    raise web.HTTPSeeOther(f"/dashboard/requests/{quote(ref)}" if ref else "/dashboard")


async def request_detail(request: web.Request) -> web.Response:
    ledger = ctx(request).ledger()
    ref = request.match_info["ref"]
    try:
        located = await ledger.locate_ref(ref)  # Redis first, then the archive
    except RequestNotFound:
        response = await page(
            request, "not_found.html", "", title="Not found", text=f"No request found for {ref}."
        )
        response.set_status(404)
        return response
    found, history = located.request, located.history
    with_date = (
        bool(history) and str(history[0].get("ts", ""))[:10] != str(history[-1].get("ts", ""))[:10]
    )
    return await page(
        request, "request.html", "Requests", title=found.request_id, item=found,
        history=history, with_date=with_date, stored_in=located.stored_in,
    )  # fmt: skip


async def sweep_items(request: web.Request) -> list[dict[str, Any]]:
    """Recent runs with progress, why each waits and whether it can be cancelled."""
    context = ctx(request)
    ledger = context.ledger()
    runs = await SweepRuns(ledger.redis, ledger.prefix, ledger.audit).recent(SWEEPS_LIMIT)
    items = []
    for run in runs:
        percent = round(100 * (run.submitted + run.merged) / run.selected) if run.selected else 0
        why = await wait_reason(ledger, run, max_queue_depth=context.bulk_queue_max_depth)
        cancellable = run.status not in TERMINAL_SWEEP
        items.append({"run": run, "percent": percent, "why": why, "cancellable": cancellable})
    return items


async def sweeps(request: web.Request) -> web.Response:
    return await page(
        request, "sweeps.html", "Sweeps", title="Sweeps", sweeps=await sweep_items(request)
    )


async def workers(request: web.Request) -> web.Response:
    ledger = ctx(request).ledger()
    alive = await WorkerRegistry(ledger.redis, ledger.prefix).alive()
    return await page(
        request, "workers.html", "Workers", title="Workers", workers=alive, ttl=ENTRY_TTL_SECONDS
    )


async def live(request: web.Request) -> web.Response:
    """A live region's fresh HTML (the refresh script swaps it in; no page reload)."""
    signed_in(request)
    ledger = ctx(request).ledger()
    panel = request.match_info["panel"]
    now = time.time()
    if panel == "overview":
        return html(render("_overview.html", overview=await queue_overview(ledger)))
    if panel == "charts":
        return html(render("_charts.html", charts=await _charts(ledger)))
    if panel == "sweeps":
        return html(render("_sweeps.html", sweeps=await sweep_items(request)))
    if panel == "workers":
        alive = await WorkerRegistry(ledger.redis, ledger.prefix).alive()
        return html(render("_workers.html", workers=alive, now=now, ttl=ENTRY_TTL_SECONDS))
    raise web.HTTPNotFound()
