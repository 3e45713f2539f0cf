"""The dashboard over real HTTP against real Redis: sign-in, every page, live fragments,
actions with reasons, the bulk confirmation, escaping."""

from __future__ import annotations

import time
from typing import Any

from aiohttp.test_utils import TestClient, TestServer

from control.pause import get_pause
from control.workers import WorkerRegistry
from ledger.models import RequestSource, RequestStatus
from ledger.store import Ledger
from producer.http.app import create_app
from retention.runs import SweepRuns, SweepStatus
from tests.ledger.operator_support import failed, submitted
from tests.producer.dashboard.conftest import sign_in
from tests.producer.http.conftest import make_settings
from tests.retention.sweep_support import requested_run

Client = TestClient[Any, Any]
PAGES = ("/dashboard", "/dashboard/requests", "/dashboard/sweeps", "/dashboard/workers")


async def test_pages_need_sign_in_and_wrong_token_is_refused(dashboard: Client) -> None:
    """Without a session every page, fragment and action redirects to sign-in; an unknown
    token gets 401."""
    for path in (*PAGES, "/dashboard/requests/dr_x", "/dashboard/live/overview"):
        response = await dashboard.get(path, allow_redirects=False)
        assert (response.status, response.headers["Location"]) == (303, "/dashboard/login")
    for path in ("/dashboard/requests/dr_x/requeue", "/dashboard/pause", "/dashboard/bulk/apply"):
        action = await dashboard.post(path, data={"reason": "r"}, allow_redirects=False)
        assert action.status == 303, path
    wrong = await dashboard.post("/dashboard/login", data={"token": "op_nobody_0123456789"})
    assert wrong.status == 401 and "Unknown token" in await wrong.text()


async def test_every_page_names_its_redis_and_overview_has_cards_and_charts(
    dashboard: Client, ledger: Ledger
) -> None:
    """Every page's header shows the Redis host:port/db; the overview has queue cards, the
    pause button and hour/day outcome charts that count finished requests."""
    await failed(ledger, "fca_d1")
    await sign_in(dashboard)
    host = ledger.redis.connection_pool.connection_kwargs["host"]
    for path in PAGES:
        text = await (await dashboard.get(path)).text()
        assert f'id="redis" title="the Redis this dashboard reads">redis://{host}:' in text, path
    page = await (await dashboard.get("/dashboard")).text()
    assert 'id="overview"' in page and "failed, last hour" in page and "oldest pending" in page
    assert "Pause all workers" in page
    assert 'id="chart-hour"' in page and 'id="chart-day"' in page
    assert "Finished requests, last hour (1 in all" in page and "failed 1" in page


async def test_requests_by_any_status_and_failed_filtered_by_http_status_or_code(
    dashboard: Client, ledger: Ledger
) -> None:
    """Requests can be browsed by any status; failed ones filter by Stripe code or HTTP status
    (both shown as the cause) and list counts per cause."""
    expired = await failed(ledger, "fca_d1", code="api_key_expired", http_status=401)
    forbidden = await failed(ledger, "fca_d2", code="secret_key_required", http_status=403)
    waiting = await submitted(ledger, "fca_d3")
    await sign_in(dashboard)
    page = await (await dashboard.get("/dashboard/requests")).text()
    assert expired.request_id in page and forbidden.request_id in page
    assert "HTTP 401 api_key_expired" in page and "req_fca_d1" in page
    by_http = await (await dashboard.get("/dashboard/requests?status=failed&code=403")).text()
    assert forbidden.request_id in by_http and expired.request_id not in by_http
    queued = await (await dashboard.get("/dashboard/requests?status=queued")).text()
    assert waiting.request_id in queued and expired.request_id not in queued
    assert "Cancel the 1 shown" in queued
    bad = await (await dashboard.get("/dashboard/requests?status=failed&since=soon")).text()
    assert "not a duration" in bad


async def test_requeue_from_dashboard_is_audited_with_operator(
    dashboard: Client, ledger: Ledger
) -> None:
    """A re-queue posted with a reason moves the request and records the signed-in operator;
    without a reason nothing happens."""
    request = await failed(ledger, "fca_d3")
    await sign_in(dashboard, "bob")
    path = f"/dashboard/requests/{request.request_id}/requeue"
    empty = await dashboard.post(path, data={"reason": " "})
    assert "A reason is required" in await empty.text()
    assert (await ledger.get(request.request_id)).status == RequestStatus.FAILED
    done = await dashboard.post(path, data={"reason": "key fixed"})
    assert "re-queued as job" in await done.text()
    assert (await ledger.get(request.request_id)).status == RequestStatus.QUEUED
    last = (await ledger.history(request.request_id))[-1]
    assert (last["operator"], last["message"]) == ("bob", "re-queued: key fixed")


async def test_bulk_action_confirms_and_acts_on_exactly_the_rows_shown(
    dashboard: Client, ledger: Ledger
) -> None:
    """The list posts the ids it showed; the confirmation lists exactly those and posts them
    back; a request that failed after the list was drawn is left alone."""
    shown = [await failed(ledger, f"fca_b{i}", code="lock_timeout") for i in range(2)]
    await sign_in(dashboard)
    listing = await (await dashboard.get("/dashboard/requests?status=failed")).text()
    assert "Re-queue the 2 shown" in listing
    ids = [("id", r.request_id) for r in shown]
    form = [("action", "requeue"), ("back", "/dashboard/requests?status=failed"), *ids]
    confirm = await (await dashboard.post("/dashboard/bulk/confirm", data=form)).text()
    assert "Confirm: re-queue 2 requests" in confirm
    assert all(r.request_id in confirm for r in shown)
    late = await failed(ledger, "fca_late", code="lock_timeout")  # after the list was drawn
    no_reason = await dashboard.post("/dashboard/bulk/apply", data=form)
    assert "A reason is required" in await no_reason.text()
    done = await dashboard.post("/dashboard/bulk/apply", data=[*form, ("reason", "incident over")])
    assert "Re-queued 2 of 2." in await done.text()
    assert [(await ledger.get(r.request_id)).status for r in shown] == ["queued", "queued"]
    assert (await ledger.get(late.request_id)).status == RequestStatus.FAILED


async def test_pause_and_resume_buttons_need_a_reason_and_are_audited(
    dashboard: Client, ledger: Ledger
) -> None:
    """Pause from the dashboard sets the kill switch with the operator and reason (source
    dashboard); the header shows PAUSED; resume lifts it."""
    await sign_in(dashboard, "bob")
    refused = await dashboard.post("/dashboard/pause", data={"reason": ""})
    assert "A reason is required" in await refused.text()
    assert await get_pause(ledger.redis, key=ledger.pause_key) is None
    paused = await (await dashboard.post("/dashboard/pause", data={"reason": "INC-7"})).text()
    state = await get_pause(ledger.redis, key=ledger.pause_key)
    assert state is not None and (state.operator, state.reason, state.source) == (
        "bob",
        "INC-7",
        "dashboard",
    )
    assert 'id="paused-badge"' in paused and "Resume" in paused
    resumed = await (await dashboard.post("/dashboard/resume", data={"reason": "fixed"})).text()
    assert "Resumed by bob: fixed" in resumed
    assert await get_pause(ledger.redis, key=ledger.pause_key) is None


async def test_sweeps_page_shows_progress_why_it_waits_and_cancels(
    dashboard: Client, ledger: Ledger
) -> None:
    """The sweeps page lists runs with why a requested one waits; cancel asks for a reason
    first and then cancels through the same core as the CLI."""
    runs = SweepRuns(ledger.redis, ledger.prefix, ledger.audit)
    run = await requested_run(runs)
    await sign_in(dashboard, "bob")
    page = await (await dashboard.get("/dashboard/sweeps")).text()
    assert run.run_id in page and "waiting for a bulk worker (none alive" in page
    form = await (await dashboard.get(f"/dashboard/sweeps/{run.run_id}/cancel")).text()
    assert "Cancel this run" in form
    path = f"/dashboard/sweeps/{run.run_id}/cancel"
    assert "A reason is required" in await (await dashboard.post(path, data={})).text()
    done = await (await dashboard.post(path, data={"reason": "wrong policy"})).text()
    assert "cancelled by bob: wrong policy" in done
    assert (await runs.get(run.run_id)).status == SweepStatus.CANCELLED
    again = await (await dashboard.post(path, data={"reason": "again"})).text()
    assert "already cancelled" in again


async def test_workers_page_and_live_fragments(dashboard: Client, ledger: Ledger) -> None:
    """The workers page lists live workers (host, pid, queue, jobs running); each live
    fragment answers fresh HTML alone; an unknown panel is 404."""
    await WorkerRegistry(ledger.redis, ledger.prefix).beat(
        "host-a:4242", queue="bulk", jobs_running=3, max_jobs=20, started_at=time.time()
    )
    await sign_in(dashboard)
    page = await (await dashboard.get("/dashboard/workers")).text()
    assert 'data-worker="host-a:4242"' in page and "3 / 20" in page and "<td>bulk</td>" in page
    for panel, marker in (
        ("overview", 'id="overview"'), ("charts", 'id="chart-day"'), ("sweeps", 'id="sweeps"'),
        ("workers", "host-a"),
    ):  # fmt: skip
        fragment = await (await dashboard.get(f"/dashboard/live/{panel}")).text()
        assert marker in fragment and "<html" not in fragment, panel
    assert (await dashboard.get("/dashboard/live/nothing")).status == 404


async def test_cross_site_post_is_refused(dashboard: Client, ledger: Ledger) -> None:
    """A POST whose Origin is another site is refused even with a valid session."""
    request = await failed(ledger, "fca_d5")
    await sign_in(dashboard)
    for path, data in (
        (f"/dashboard/requests/{request.request_id}/requeue", {"reason": "r"}),
        ("/dashboard/pause", {"reason": "r"}),
        ("/dashboard/bulk/apply", {"reason": "r", "action": "requeue", "id": request.request_id}),
    ):
        response = await dashboard.post(path, data=data, headers={"Origin": "https://evil.example"})
        assert response.status == 403, path
    assert (await ledger.get(request.request_id)).status == RequestStatus.FAILED
    assert await get_pause(ledger.redis, key=ledger.pause_key) is None


async def test_stored_values_are_escaped_in_the_timeline(dashboard: Client, ledger: Ledger) -> None:
    """A reason containing markup is shown as text, never as HTML."""
    submission = await ledger.submit(
        "fca_d6",
        source=RequestSource.OPERATOR,
        reference="<b>x</b>",
        reason="<script>alert(1)</script>",
    )
    await sign_in(dashboard)
    page = await (await dashboard.get("/dashboard/requests/fca_d6")).text()
    assert submission.request_id in page
    assert "<script>alert(1)</script>" not in page and "&lt;b&gt;x&lt;/b&gt;" in page
    queued = await (await dashboard.get("/dashboard/requests?status=queued")).text()
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in queued
    missing = await dashboard.get("/dashboard/requests/dr_nothing")
    assert missing.status == 404


async def test_no_operator_tokens_means_no_sign_in(redis_url: str, namespace: str) -> None:
    """Without FCD_OPERATOR_TOKENS the form says sign-in is not configured and refuses all."""
    settings = make_settings(redis_url, namespace)
    async with TestClient(TestServer(create_app(settings), host="127.0.0.1")) as client:
        form = await (await client.get("/dashboard/login")).text()
        assert "not configured" in form
        refused = await client.post("/dashboard/login", data={"token": ""})
        assert refused.status == 401
