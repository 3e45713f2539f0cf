"""The dashboard in a real headless Chromium (Debian's ``chromium``, driven by Playwright).

An operator signs in, finds a failed request, re-queues it with a reason, and sees it move:
``failed`` -> ``queued``, then ``disconnected`` once a real worker process has run it against the
emulator. Screenshots are kept in ``artifacts/`` (gitignored) for a human to look at.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from aiohttp.test_utils import TestServer
from playwright.async_api import Browser, Page, async_playwright

from devenv.processes import ProcessGroup
from ledger.models import RequestStatus
from ledger.store import Ledger
from producer.http.app import create_app
from tests.emulator_admin import EmulatorAdmin
from tests.ledger.operator_support import failed, submitted
from tests.producer.dashboard.conftest import OPERATOR_TOKENS, OPERATORS
from tests.producer.http.conftest import make_settings
from tests.producer.process_helpers import env_for, wait_for_exit

pytestmark = pytest.mark.process

CHROMIUM = os.environ.get("FCD_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
ARTIFACTS = Path(__file__).resolve().parents[3] / "artifacts"


@pytest.fixture
async def browser() -> AsyncIterator[Browser]:
    """Debian's Chromium; a missing binary fails in CI (the Makefile installs it), else skips."""
    if shutil.which(CHROMIUM) is None:
        if os.environ.get("CI"):
            pytest.fail(f"{CHROMIUM} is missing; `make install-browser` installs it")
        pytest.skip(f"{CHROMIUM} not installed (apt-get install -y chromium)")
    async with async_playwright() as playwright:
        launched = await playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield launched
        await launched.close()


@pytest.fixture
async def base_url(redis_url: str, namespace: str) -> AsyncIterator[str]:
    """The real intake app, dashboard included, on a loopback port."""
    settings = make_settings(redis_url, namespace, operator_tokens=OPERATOR_TOKENS)
    server = TestServer(create_app(settings), host="127.0.0.1")
    await server.start_server()
    yield str(server.make_url("")).rstrip("/")
    await server.close()


async def _sign_in(page: Page, base_url: str) -> None:
    await page.goto(f"{base_url}/dashboard")
    assert page.url.endswith("/dashboard/login")
    await page.fill("input[name=token]", OPERATORS["alice"])
    await page.click("button[type=submit]")
    await page.wait_for_url(f"{base_url}/dashboard")
    assert await page.text_content("#operator") == "alice"


async def test_operator_finds_failed_request_requeues_it_and_sees_it_finish(
    browser: Browser,
    base_url: str,
    ledger: Ledger,
    admin: EmulatorAdmin,
    group: ProcessGroup,
    redis_url: str,
) -> None:
    """Sign in, filter the failed list by code, open the request, re-queue it with a reason:
    the page shows it queued; after a worker runs, its timeline shows it disconnected."""
    [account] = await admin.create_accounts(1)
    target = await failed(ledger, account, code="api_key_expired", attempts=3)
    await failed(ledger, "fca_unrelated1", code="403", http_status=403)
    await submitted(ledger, "fca_waiting1")
    page = await browser.new_page(viewport={"width": 1400, "height": 900})
    await _sign_in(page, base_url)
    assert await page.locator("#failed tr[data-request]").count() == 2
    await page.fill("#filters input[name=code]", "api_key_expired")
    await page.click("#filters button")
    rows = page.locator("#failed tr[data-request]")
    assert await rows.count() == 1
    assert await rows.first.get_attribute("data-request") == target.request_id
    ARTIFACTS.mkdir(exist_ok=True)
    await page.screenshot(path=str(ARTIFACTS / "dashboard.png"), full_page=True)
    await rows.first.locator(f"a:text('{target.request_id}')").click()
    await page.wait_for_url(f"**/dashboard/requests/{target.request_id}")
    assert "failed" in (await page.text_content("h2") or "")
    await page.fill("input[name=reason]", "Stripe key rotated")
    await page.click("button:text('Re-queue')")
    await page.wait_for_selector("div.flash[role=status]")
    assert "re-queued as job" in (await page.text_content("div.flash") or "")
    assert "queued" in (await page.text_content("h2") or "")
    assert (await ledger.get(target.request_id)).attempts == 0
    group.start("worker", ["-m", "worker", "--burst"], env_for(ledger, redis_url, admin.base))
    await wait_for_exit(group, "worker")
    await page.reload()
    assert "disconnected" in (await page.text_content("h2") or "")
    timeline = await page.text_content("#timeline") or ""
    assert "alice" in timeline and "Stripe key rotated" in timeline
    await page.screenshot(path=str(ARTIFACTS / "dashboard-request.png"), full_page=True)
    assert (await ledger.get(target.request_id)).status == RequestStatus.DISCONNECTED
    await page.close()
