"""Intake fixtures: the app on a real loopback port against the test's Redis namespace."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer
from pydantic import SecretStr

from producer.http.app import create_app
from producer.http.settings import IntakeSettings

TOKENS = {"billing": "tok_billing_0123456789abcdef", "crm": "tok_crm_0123456789abcdef"}
WEBHOOK_SECRETS = ["whsec_old0123456789abcdef", "whsec_new0123456789abcdef"]
BILLING = {"Authorization": f"Bearer {TOKENS['billing']}"}
CRM = {"Authorization": f"Bearer {TOKENS['crm']}"}


def make_settings(redis_url: str, namespace: str, **overrides: Any) -> IntakeSettings:
    values: dict[str, Any] = {
        "redis_url": redis_url,
        "key_prefix": f"{namespace}fcd:",
        "queue_name": f"{namespace}queue",
        "api_tokens": SecretStr(json.dumps(TOKENS)),
        "stripe_webhook_secrets": SecretStr(",".join(WEBHOOK_SECRETS)),
        "http_port": 0,
        **overrides,
    }
    return IntakeSettings(**values)


@pytest.fixture
def intake_settings(redis_url: str, namespace: str) -> IntakeSettings:
    return make_settings(redis_url, namespace)


@pytest.fixture
async def intake(intake_settings: IntakeSettings) -> AsyncIterator[TestClient[Any, Any]]:
    """A client of the intake app served on 127.0.0.1 (real HTTP over loopback)."""
    async with TestClient(TestServer(create_app(intake_settings), host="127.0.0.1")) as client:
        yield client


def account_body(
    account_id: str = "fca_1", event_id: str = "evt_a", **extra: Any
) -> dict[str, Any]:
    return {"account_id": account_id, "event_id": event_id, "reason": "user deleted", **extra}
