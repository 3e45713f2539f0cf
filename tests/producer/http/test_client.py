"""DisconnectClient: retries 5xx and dropped connections with the same event id; surfaces 4xx."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from ledger.models import RequestStatus
from ledger.store import Ledger
from producer.client import DisconnectClient, IntakeError
from tests.producer.http.conftest import TOKENS

Client = TestClient[Any, Any]


@pytest.fixture
async def flaky_front(intake: Client) -> AsyncIterator[tuple[str, list[dict[str, Any]]]]:
    """A real HTTP front that drops the first call, answers 503 to the second and then forwards
    to the intake; it records every body it saw."""
    seen: list[dict[str, Any]] = []

    async def front(request: web.Request) -> web.StreamResponse:
        body = await request.json()
        seen.append(body)
        if len(seen) == 1:
            assert request.transport is not None
            request.transport.close()
            return web.Response(status=500)
        if len(seen) == 2:
            return web.json_response({"error": {"code": "x", "message": "down"}}, status=503)
        headers = {"Authorization": request.headers["Authorization"]}
        resp = await intake.post(request.path, json=body, headers=headers)
        return web.json_response(await resp.json(), status=resp.status)

    app = web.Application()
    app.router.add_post("/v1/disconnect-requests", front)
    async with TestServer(app, host="127.0.0.1") as server:
        yield str(server.make_url("")), seen


async def test_retries_reuse_the_event_id(
    flaky_front: tuple[str, list[dict[str, Any]]], ledger: Ledger
) -> None:
    """A dropped connection and a 503 are retried with the identical body; one request results."""
    url, seen = flaky_front
    async with DisconnectClient(url, TOKENS["billing"], backoff_seconds=0.01) as client:
        result = await client.disconnect_account("fca_1", event_id="evt_r", reason="gone")
    assert result["kind"] == "account"
    assert len(seen) == 3 and all(body == seen[0] for body in seen)
    assert (await ledger.count_by_status())[RequestStatus.QUEUED] == 1


async def test_client_errors_are_raised_with_the_intake_error(intake: Client) -> None:
    """A 4xx is not retried; IntakeError carries status, code and field."""
    url = str(intake.make_url(""))
    async with DisconnectClient(url, TOKENS["billing"]) as client:
        with pytest.raises(IntakeError) as caught:
            await client.disconnect_account("nope", event_id="e", reason="r")
        status = await client.disconnect_customer("cus_1", event_id="e2", reason="r")
        assert (await client.status(status["request_ids"][0]))["kind"] == "customer"
    assert (caught.value.status, caught.value.field) == (422, "account_id")


async def test_client_gives_up_after_its_attempts() -> None:
    """Nothing listening: the client tries max_attempts times, then raises IntakeError."""
    async with DisconnectClient(
        "http://127.0.0.1:9",
        "t" * 20,
        max_attempts=2,
        backoff_seconds=0.01,
        timeout=aiohttp.ClientTimeout(total=1),
    ) as client:
        with pytest.raises(IntakeError, match="gave up after 2 attempts"):
            await client.submit_batch([])
