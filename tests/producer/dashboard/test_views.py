"""The dashboard over real HTTP against real Redis: sign-in, pages, actions, escaping."""

from __future__ import annotations

from typing import Any

from aiohttp.test_utils import TestClient, TestServer

from ledger.models import RequestSource, RequestStatus
from ledger.store import Ledger
from producer.http.app import create_app
from tests.ledger.operator_support import failed, submitted
from tests.producer.dashboard.conftest import sign_in
from tests.producer.http.conftest import make_settings

Client = TestClient[Any, Any]


async def test_pages_need_sign_in_and_wrong_token_is_refused(dashboard: Client) -> None:
    """Without a session every page redirects to sign-in; an unknown token gets 401."""
    for path in ("/dashboard", "/dashboard/requests/dr_x"):
        response = await dashboard.get(path, allow_redirects=False)
        assert (response.status, response.headers["Location"]) == (303, "/dashboard/login")
    action = await dashboard.post(
        "/dashboard/requests/dr_x/requeue", data={"reason": "r"}, allow_redirects=False
    )
    assert action.status == 303
    wrong = await dashboard.post("/dashboard/login", data={"token": "op_nobody_0123456789"})
    assert wrong.status == 401 and "Unknown token" in await wrong.text()


async def test_overview_lists_failures_with_filters(dashboard: Client, ledger: Ledger) -> None:
    """The overview shows queue cards and failed requests; the code filter narrows the list."""
    expired = await failed(ledger, "fca_d1", code="api_key_expired")
    forbidden = await failed(ledger, "fca_d2", code="403")
    await sign_in(dashboard)
    page = await (await dashboard.get("/dashboard")).text()
    assert 'id="overview"' in page and "failed, last hour" in page
    assert expired.request_id in page and forbidden.request_id in page
    assert "req_fca_d1" in page and "signed in as" in page
    narrowed = await (await dashboard.get("/dashboard", params={"code": "403"})).text()
    assert forbidden.request_id in narrowed and expired.request_id not in narrowed
    bad = await (await dashboard.get("/dashboard", params={"since": "soon"})).text()
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


async def test_cancel_and_bulk_requeue(dashboard: Client, ledger: Ledger) -> None:
    """Cancel works on a queued request; "re-queue all shown" re-queues the filtered failures."""
    waiting = await submitted(ledger, "fca_d4")
    matching = [await failed(ledger, f"fca_b{i}", code="lock_timeout") for i in range(2)]
    other = await failed(ledger, "fca_b9", code="403")
    await sign_in(dashboard)
    cancelled = await dashboard.post(
        f"/dashboard/requests/{waiting.request_id}/cancel", data={"reason": "duplicate"}
    )
    assert "cancelled" in await cancelled.text()
    assert (await ledger.get(waiting.request_id)).status == RequestStatus.CANCELLED
    bulk = await dashboard.post(
        "/dashboard/failed/requeue", data={"reason": "Stripe incident over", "code": "lock_timeout"}
    )
    assert "Re-queued 2 of 2" in await bulk.text()
    assert [(await ledger.get(r.request_id)).status for r in matching] == ["queued", "queued"]
    assert (await ledger.get(other.request_id)).status == RequestStatus.FAILED


async def test_cross_site_post_is_refused(dashboard: Client, ledger: Ledger) -> None:
    """A POST whose Origin is another site is refused even with a valid session."""
    request = await failed(ledger, "fca_d5")
    await sign_in(dashboard)
    response = await dashboard.post(
        f"/dashboard/requests/{request.request_id}/requeue",
        data={"reason": "r"},
        headers={"Origin": "https://evil.example"},
    )
    assert response.status == 403
    assert (await ledger.get(request.request_id)).status == RequestStatus.FAILED


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
