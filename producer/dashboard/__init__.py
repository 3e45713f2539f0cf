"""The on-call dashboard at ``/dashboard`` on the intake app (server-rendered Jinja2 templates).

Pages: the overview (queue cards per queue, the kill switch with pause / resume buttons that ask
for a reason, throughput and outcome charts for the last hour and day), requests by any status
(failed ones filtered by HTTP status or Stripe code and age, with counts per cause), one
request's timeline with re-queue / cancel, sweep runs (progress, why a run waits, cancel with a
reason) and workers (host, pid, queue, jobs running, last heartbeat). The header names the Redis
it reads and shows a pause. Live regions refresh every few seconds without reloading the page.
Bulk actions go through a confirmation that lists exactly the ids shown. The layout fits 900 px.

Operators sign in with a token from ``FCD_OPERATOR_TOKENS`` (see :mod:`.auth`); actions run the
same cores as the CLI and are audited with the operator's name (:mod:`.actions`).

Wiring: :func:`setup_dashboard` is a route setup of the intake app (``ROUTE_SETUPS`` in
:mod:`producer.http.app`); it uses the app's one ledger. :func:`add_dashboard` takes any ledger
provider, for apps other than the intake.
"""

from __future__ import annotations

from aiohttp import web

from producer.dashboard import actions, views
from producer.dashboard.auth import parse_operator_tokens
from producer.dashboard.views import DASHBOARD, DashboardContext
from producer.http.state import SERVICES, SETTINGS

__all__ = ["DashboardContext", "add_dashboard", "setup_dashboard"]


def add_dashboard(app: web.Application, context: DashboardContext) -> None:
    """Add the dashboard's routes to ``app``; ``context.ledger()`` is called per request."""
    app[DASHBOARD] = context
    get, post = app.router.add_get, app.router.add_post
    get("/dashboard", views.overview, allow_head=False)
    get("/dashboard/login", actions.login_form, allow_head=False)
    post("/dashboard/login", actions.login)
    post("/dashboard/logout", actions.logout)
    get("/dashboard/lookup", views.lookup, allow_head=False)
    get("/dashboard/requests", views.requests_page, allow_head=False)
    get("/dashboard/requests/{ref}", views.request_detail, allow_head=False)
    post("/dashboard/requests/{ref}/{action:requeue|cancel}", actions.act_on_one)
    post("/dashboard/bulk/confirm", actions.bulk_confirm)
    post("/dashboard/bulk/apply", actions.bulk_apply)
    post("/dashboard/pause", actions.pause_service)
    post("/dashboard/resume", actions.resume_service)
    get("/dashboard/sweeps", views.sweeps, allow_head=False)
    get("/dashboard/sweeps/{run}/cancel", actions.sweep_cancel_form, allow_head=False)
    post("/dashboard/sweeps/{run}/cancel", actions.sweep_cancel)
    get("/dashboard/workers", views.workers, allow_head=False)
    get("/dashboard/live/{panel}", views.live, allow_head=False)


def setup_dashboard(app: web.Application) -> None:
    """Route setup for the intake app: operator tokens from its settings, its ledger."""
    settings = app[SETTINGS]
    tokens = parse_operator_tokens(settings.operator_tokens)
    add_dashboard(
        app,
        DashboardContext(
            tokens=tokens,
            ledger=lambda: app[SERVICES].ledger,
            bulk_queue_max_depth=settings.bulk_queue_max_depth,
        ),
    )
