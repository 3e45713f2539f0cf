"""The on-call dashboard at ``/dashboard`` on the intake app (server-rendered HTML, no JS).

Shows queue depths, the limiter's rate and waits, whether the service is paused, the failed
requests (filtered by error code and age), one request's timeline, and re-queue / cancel buttons
that ask for a reason. Operators sign in with a token from ``FCD_OPERATOR_TOKENS`` (see
:mod:`.auth`); actions run the same cores as ``fcd requeue`` / ``fcd cancel`` and are audited
with the operator's name.

Wiring: :func:`setup_dashboard` is a route setup of the intake app (``ROUTE_SETUPS`` in
:mod:`producer.http.app`); it uses the app's one ledger. :func:`add_dashboard` takes any ledger
provider, for apps other than the intake.
"""

from __future__ import annotations

from aiohttp import web

from producer.dashboard import views
from producer.dashboard.auth import parse_operator_tokens
from producer.dashboard.views import DASHBOARD, DashboardContext
from producer.http.state import SERVICES, SETTINGS

__all__ = ["DashboardContext", "add_dashboard", "setup_dashboard"]


def add_dashboard(app: web.Application, context: DashboardContext) -> None:
    """Add the dashboard's routes to ``app``; ``context.ledger()`` is called per request."""
    app[DASHBOARD] = context
    router = app.router
    router.add_get("/dashboard", views.overview, allow_head=False)
    router.add_get("/dashboard/login", views.login_form, allow_head=False)
    router.add_post("/dashboard/login", views.login)
    router.add_post("/dashboard/logout", views.logout)
    router.add_get("/dashboard/lookup", views.lookup, allow_head=False)
    router.add_post("/dashboard/failed/requeue", views.requeue_shown)
    router.add_get("/dashboard/requests/{ref}", views.request_detail, allow_head=False)
    router.add_post("/dashboard/requests/{ref}/requeue", views.requeue_one)
    router.add_post("/dashboard/requests/{ref}/cancel", views.cancel_one)


def setup_dashboard(app: web.Application) -> None:
    """Route setup for the intake app: operator tokens from its settings, its ledger."""
    tokens = parse_operator_tokens(app[SETTINGS].operator_tokens)
    add_dashboard(app, DashboardContext(tokens=tokens, ledger=lambda: app[SERVICES].ledger))
