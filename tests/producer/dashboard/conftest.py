"""Dashboard fixtures: the real intake app, with operator tokens, on a loopback port."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer
from pydantic import SecretStr

from producer.http.app import create_app
from tests.producer.http.conftest import make_settings

OPERATORS = {"alice": "op_alice_0123456789abcdef", "bob": "op_bob_0123456789abcdef"}
OPERATOR_TOKENS = SecretStr(",".join(f"{name}:{token}" for name, token in OPERATORS.items()))


@pytest.fixture
async def dashboard(redis_url: str, namespace: str) -> AsyncIterator[TestClient[Any, Any]]:
    """A client of the intake app (dashboard included) served on 127.0.0.1."""
    settings = make_settings(redis_url, namespace, operator_tokens=OPERATOR_TOKENS)
    async with TestClient(TestServer(create_app(settings), host="127.0.0.1")) as client:
        yield client


async def sign_in(client: TestClient[Any, Any], operator: str = "alice") -> None:
    """Sign in through the form; the client keeps the session cookie."""
    response = await client.post(
        "/dashboard/login", data={"token": OPERATORS[operator]}, allow_redirects=False
    )
    assert response.status == 303, await response.text()
