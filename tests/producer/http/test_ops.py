"""/healthz, /readyz, /metrics and /openapi.json; settings parsing for tokens and secrets."""

from __future__ import annotations

from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient

from control.pause import pause
from ledger.store import Ledger
from producer.http.app import create_app
from producer.http.openapi import UNDOCUMENTED_PREFIXES, build_openapi
from producer.http.settings import BadTokenConfig, IntakeSettings, parse_tokens
from producer.http.state import SERVICES
from tests.producer.http.conftest import BILLING, account_body

Client = TestClient[Any, Any]


async def test_health_and_readiness(intake: Client, ledger: Ledger) -> None:
    """/healthz is always 200; /readyz stays 200 while paused (the intake can still store
    requests) and says so in its body, without the pause's reason."""
    assert (await intake.get("/healthz")).status == 200
    ready = await intake.get("/readyz")
    assert ready.status == 200 and (await ready.json())["paused"] is False
    assert (await ready.json())["durability"] == {"mode": "everysec", "method": "reply"}
    await pause(ledger.redis, "t", "secret-ish reason", "breaker", key=ledger.pause_key)
    paused = await intake.get("/readyz")
    body = await paused.json()
    assert paused.status == 200 and body["ready"] is True and body["paused"] is True
    assert body["pause"]["source"] == "breaker" and "secret-ish" not in await paused.text()
    accepted = await intake.post("/v1/disconnect-requests", json=account_body(), headers=BILLING)
    assert accepted.status == 202


async def test_metrics_show_statuses_queue_and_intake_counts(
    intake: Client, intake_settings: IntakeSettings
) -> None:
    """/metrics is Prometheus text with requests by status, queue depth and intake outcomes."""
    await intake.post("/v1/disconnect-requests", json=account_body(), headers=BILLING)
    await intake.post("/v1/disconnect-requests", json={"bad": 1}, headers=BILLING)
    await intake.app[SERVICES].counters.flush()
    resp = await intake.get("/metrics")
    text = await resp.text()
    assert resp.content_type == "text/plain"
    assert 'fcd_requests{status="queued"} 1' in text
    assert 'fcd_queue_jobs{queue="urgent",state="due"} 1' in text
    assert 'fcd_intake_requests_total{service="billing",outcome="accepted"} 1' in text
    assert 'fcd_intake_requests_total{service="billing",outcome="rejected"} 1' in text
    assert "# TYPE fcd_stripe_calls_total counter" in text
    assert "fcd_limiter_wait_seconds_total" in text


def _routes(app: web.Application) -> set[tuple[str, str]]:
    found = set()
    for route in app.router.routes():
        path = route.resource.canonical if route.resource is not None else ""
        if route.method in ("HEAD", "*") or any(path.startswith(p) for p in UNDOCUMENTED_PREFIXES):
            continue
        found.add((route.method.lower(), path))
    return found


def test_openapi_documents_exactly_the_routes(intake_settings: IntakeSettings) -> None:
    """Every route of the app is in /openapi.json and every documented operation is a route."""
    documented = {
        (method, path) for path, ops in build_openapi()["paths"].items() for method in ops
    }
    assert documented == _routes(create_app(intake_settings))


async def test_openapi_is_served(intake: Client) -> None:
    """/openapi.json answers the document without a token."""
    resp = await intake.get("/openapi.json")
    assert (await resp.json()) == build_openapi()


def test_tokens_parse_from_json_or_pairs() -> None:
    """FCD_API_TOKENS reads as a JSON object or name:token pairs."""
    as_json = parse_tokens('{"billing": "0123456789abcdefX"}')
    as_pairs = parse_tokens("billing:0123456789abcdefX, crm:abcdefabcdefabcdefab")
    assert as_json["billing"].get_secret_value() == "0123456789abcdefX"
    assert sorted(as_pairs) == ["billing", "crm"]


@pytest.mark.parametrize(
    "raw", ["", "billing", "Bad Name:0123456789abcdefX", "crm:tiny", "[1]", "{oops"]
)
def test_bad_token_config_is_refused_without_echoing_tokens(raw: str) -> None:
    """A malformed FCD_API_TOKENS raises, and the message never contains the token."""
    with pytest.raises(BadTokenConfig) as caught:
        parse_tokens(raw)
    assert "tiny" not in str(caught.value) and "0123456789" not in str(caught.value)
