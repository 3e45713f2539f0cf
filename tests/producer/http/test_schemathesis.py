"""Property-based tests of the intake from its own OpenAPI document (schemathesis).

The app runs in a thread on a real loopback port; schemathesis generates valid (positive) and
invalid (negative) requests for every operation and sends them over HTTP with a service's token.
The server must never answer 5xx, every status must be documented and every documented JSON body
must match its schema. The number of generated cases is printed (``pytest -s`` shows it).
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest
import requests
import schemathesis
from aiohttp import web
from hypothesis import HealthCheck, Phase, given, settings
from schemathesis import GenerationMode
from schemathesis.checks import (
    not_a_server_error,
    response_schema_conformance,
    status_code_conformance,
)

from devenv.redis_server import free_port
from producer.http.app import create_app
from producer.http.openapi import build_openapi
from producer.http.settings import IntakeSettings
from tests.producer.http.conftest import BILLING

pytestmark = pytest.mark.integration

EXAMPLES_PER_OPERATION = 50


@contextmanager
def serve_in_thread(intake_settings: IntakeSettings) -> Iterator[str]:
    """Serve the intake from its own event loop in a thread; yield its base URL."""
    port = free_port()
    loop = asyncio.new_event_loop()
    runner = web.AppRunner(create_app(intake_settings), access_log=None, shutdown_timeout=1.0)
    started = threading.Event()

    def run() -> None:
        asyncio.set_event_loop(loop)
        loop.run_until_complete(runner.setup())
        loop.run_until_complete(web.TCPSite(runner, "127.0.0.1", port).start())
        started.set()
        loop.run_forever()
        loop.run_until_complete(runner.cleanup())
        loop.close()

    thread = threading.Thread(target=run, name="intake-under-test", daemon=True)
    thread.start()
    assert started.wait(10), "intake did not start"
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)


def modes_for(operation: Any) -> list[GenerationMode]:
    """Negative cases only where there is input to break (a body or a path parameter)."""
    has_input = operation.method.upper() == "POST" or "{" in operation.path
    return (
        [GenerationMode.POSITIVE, GenerationMode.NEGATIVE]
        if has_input
        else [GenerationMode.POSITIVE]
    )


def test_generated_requests_never_cause_server_errors(intake_settings: IntakeSettings) -> None:
    """No generated request (valid or invalid) gets a 5xx, an undocumented status or a body
    that contradicts the schema."""
    schema = schemathesis.openapi.from_dict(build_openapi())
    checks = [not_a_server_error, status_code_conformance, response_schema_conformance]
    generated = 0
    with serve_in_thread(intake_settings) as base_url, requests.Session() as session:
        for result in schema.get_all_operations():
            operation: Any = result.ok()  # type: ignore[union-attr]
            for mode in modes_for(operation):

                @given(case=operation.as_strategy(generation_mode=mode))
                @settings(
                    max_examples=EXAMPLES_PER_OPERATION,
                    deadline=None,
                    phases=[Phase.explicit, Phase.generate],
                    suppress_health_check=list(HealthCheck),
                    database=None,
                )
                def check(case: Any) -> None:
                    nonlocal generated
                    generated += 1
                    response = case.call(base_url=base_url, session=session, headers=BILLING)
                    case.validate_response(response, checks=checks)

                check()
    print(f"\nschemathesis: {generated} generated cases, 0 server errors")
    assert generated > 100
