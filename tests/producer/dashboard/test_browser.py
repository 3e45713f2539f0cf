"""The dashboard in a real headless Chromium (one already on the machine, driven by Playwright).

One test per page, each at a 900 px wide window (the layout must fit it: no horizontal scroll of
the page): the overview (live cards and charts, pause and resume with a reason), requests (browse
by status, filter, bulk re-queue through the confirmation that acts on exactly the rows shown),
a request's timeline (re-queued, then run by a real worker process against the emulator),
sweeps (why a run waits, cancel with a reason) and workers (a new worker appears without a
reload). Screenshots are kept in ``artifacts/`` (gitignored) for a human to look at.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from aiohttp.test_utils import TestServer
from playwright.async_api import Browser, Page, async_playwright

from control.pause import get_pause
from control.workers import WorkerRegistry
from devenv.browser import BrowserUnavailable, find_chromium
from devenv.processes import ProcessGroup
from ledger.models import RequestStatus
from ledger.store import Ledger
from producer.http.app import create_app
from retention.runs import SweepRun, SweepRuns, SweepStatus, new_sweep_id
from tests.emulator_admin import EmulatorAdmin
from tests.ledger.operator_support import failed, submitted
from tests.producer.dashboard.conftest import OPERATOR_TOKENS, OPERATORS
from tests.producer.http.conftest import make_settings
from tests.producer.process_helpers import env_for, wait_for_exit
from tests.retention.sweep_support import requested_run

pytestmark = pytest.mark.process

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


def _chromium_or_fail() -> Path:
    try:
        return find_chromium()
    except BrowserUnavailable as exc:
        missing = str(exc)
    pytest.fail(missing, pytrace=False)


@pytest.fixture
async def browser() -> AsyncIterator[Browser]:
    """A Chromium found on the machine (see :mod:`devenv.browser`); none fails the test with how
    to get one (never a skip: a skipped browser test checks nothing)."""
    chromium = _chromium_or_fail()
    async with async_playwright() as playwright:
        launched = await playwright.chromium.launch(executable_path=chromium, args=CHROMIUM_ARGS)
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


WIDTH = 900


async def _narrow_page(browser: Browser, base_url: str) -> Page:
    page = await browser.new_page(viewport={"width": WIDTH, "height": 900})
    await _sign_in(page, base_url)
    return page


async def _fits(page: Page) -> None:
    """The page itself never scrolls sideways at 900 px (wide tables scroll in their box)."""
    assert await page.evaluate("document.documentElement.scrollWidth") <= WIDTH


async def _shot(page: Page, name: str) -> None:
    ARTIFACTS.mkdir(exist_ok=True)
    await page.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=True)


async def test_overview_refreshes_live_and_pauses_with_a_reason(
    browser: Browser, base_url: str, ledger: Ledger
) -> None:
    """The overview's cards and charts update without a reload when a request fails; pause with
    a reason shows PAUSED in the header (recorded with the operator); resume lifts it."""
    await submitted(ledger, "fca_live0")
    page = await _narrow_page(browser, base_url)
    loaded_at = await page.evaluate("window.fcdLoadedAt")
    cards = "".join((await page.text_content("#overview") or "").split())
    assert "failed,lasthour0" in cards
    await failed(ledger, "fca_live1")
    await page.wait_for_function(
        "document.querySelector('#overview').innerText.replace(/\\s/g, '')"
        ".includes('failed,lasthour1')"
    )
    await page.wait_for_function(
        "document.querySelector('#chart-hour').innerText.includes('(1 in all')"
    )
    assert await page.evaluate("window.fcdLoadedAt") == loaded_at  # no reload happened
    await _fits(page)
    await _shot(page, "dashboard-overview")
    await page.fill("input[aria-label='Pause all workers reason']", "INC-9 Stripe incident")
    await page.click("button:text('Pause all workers')")
    await page.wait_for_selector("#paused-badge")
    assert "Paused by alice" in (await page.text_content("div.flash") or "")
    state = await get_pause(ledger.redis, key=ledger.pause_key)
    assert state is not None and (state.operator, state.source) == ("alice", "dashboard")
    await _shot(page, "dashboard-overview-paused")
    await page.fill("input[aria-label='Resume reason']", "incident over")
    await page.click("button:text('Resume')")
    await page.wait_for_selector("text=Resumed by alice")
    assert await page.locator("#paused-badge").count() == 0
    await page.close()


async def test_requests_bulk_requeue_acts_on_exactly_the_rows_shown(
    browser: Browser, base_url: str, ledger: Ledger
) -> None:
    """Browse failed requests, filter by HTTP status, confirm a bulk re-queue that lists the
    ids shown: a request that fails after the list was drawn is not re-queued."""
    shown = [await failed(ledger, f"fca_shown{i}", code="lock_timeout", http_status=429)
             for i in range(2)]  # fmt: skip
    other = await failed(ledger, "fca_other1", code="secret_key_required", http_status=403)
    page = await _narrow_page(browser, base_url)
    await page.goto(f"{base_url}/dashboard/requests?status=failed")
    assert await page.locator("#requests tr[data-request]").count() == 3
    await page.fill("#filters input[name=code]", "429")
    await page.click("#filters button")
    rows = page.locator("#requests tr[data-request]")
    assert await rows.count() == 2
    await _fits(page)
    await _shot(page, "dashboard-requests")
    await page.click("button:text('Re-queue the 2 shown')")
    await page.wait_for_selector("#confirm-ids")
    listed = await page.text_content("#confirm-ids") or ""
    assert all(r.request_id in listed for r in shown) and other.request_id not in listed
    late = await failed(ledger, "fca_late1", code="lock_timeout", http_status=429)
    await page.fill("#confirm input[name=reason]", "Stripe throttling over")
    await _fits(page)
    await _shot(page, "dashboard-confirm")
    await page.click("#confirm button.danger")
    await page.wait_for_selector("text=Re-queued 2 of 2.")
    assert [(await ledger.get(r.request_id)).status for r in shown] == ["queued", "queued"]
    assert (await ledger.get(late.request_id)).status == RequestStatus.FAILED
    assert (await ledger.get(other.request_id)).status == RequestStatus.FAILED
    await page.goto(f"{base_url}/dashboard/requests?status=queued")
    assert await page.locator("#requests tr[data-request]").count() == 2
    await page.close()


async def test_operator_finds_failed_request_requeues_it_and_sees_it_finish(
    browser: Browser,
    base_url: str,
    ledger: Ledger,
    admin: EmulatorAdmin,
    group: ProcessGroup,
    redis_url: str,
) -> None:
    """Find a failed request by its code, open it, re-queue it with a reason: the page shows
    it queued; after a worker runs, its timeline shows it disconnected, with who and why."""
    [account] = await admin.create_accounts(1)
    target = await failed(ledger, account, code="api_key_expired", attempts=3)
    await failed(ledger, "fca_unrelated1", code="403", http_status=403)
    page = await _narrow_page(browser, base_url)
    await page.goto(f"{base_url}/dashboard/requests?status=failed&code=api_key_expired")
    rows = page.locator("#requests tr[data-request]")
    assert await rows.count() == 1
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
    await _fits(page)
    await _shot(page, "dashboard-request")
    assert (await ledger.get(target.request_id)).status == RequestStatus.DISCONNECTED
    await page.close()


async def test_sweeps_page_says_why_a_run_waits_and_cancels_it(
    browser: Browser, base_url: str, ledger: Ledger
) -> None:
    """A requested sweep shows "waiting for a bulk worker (none alive …)"; Cancel asks for a
    reason on its own page, then the run shows cancelled with who and why."""
    runs = SweepRuns(ledger.redis, ledger.prefix, ledger.audit)
    waiting = await requested_run(runs)
    finished = await runs.create(
        SweepRun(
            run_id=new_sweep_id(), policy="closed-customers", trigger="schedule", apply=True,
            source="stripe", status=SweepStatus.SUBMITTING, started_at=time.time() - 600,
            scanned=1200, selected=400, submitted=250,
        )
    )  # fmt: skip
    page = await _narrow_page(browser, base_url)
    await page.goto(f"{base_url}/dashboard/sweeps")
    row = page.locator(f"tr[data-run='{waiting.run_id}']")
    assert "waiting for a bulk worker (none alive" in (await row.text_content() or "")
    assert "submitted 250" in (await page.text_content(f"tr[data-run='{finished.run_id}']") or "")
    await _fits(page)
    await _shot(page, "dashboard-sweeps")
    await row.locator("a:text('Cancel…')").click()
    await page.fill("input[name=reason]", "wrong retention window")
    await page.click("button:text('Cancel this run')")
    await page.wait_for_selector("text=cancelled by alice: wrong retention window")
    assert (await runs.get(waiting.run_id)).status == SweepStatus.CANCELLED
    assert "cancelled" in (await page.text_content(f"tr[data-run='{waiting.run_id}']") or "")
    await page.close()


async def test_workers_page_lists_workers_and_a_new_one_appears_live(
    browser: Browser, base_url: str, ledger: Ledger
) -> None:
    """The workers page lists each live worker (host, pid, queue, jobs running, heartbeat);
    a worker that starts beating appears without a reload."""
    registry = WorkerRegistry(ledger.redis, ledger.prefix)
    up = time.time() - 3600
    await registry.beat("web-1:101", queue="urgent", jobs_running=4, max_jobs=20, started_at=up)
    page = await _narrow_page(browser, base_url)
    await page.goto(f"{base_url}/dashboard/workers")
    loaded_at = await page.evaluate("window.fcdLoadedAt")
    assert await page.locator("#workers tr[data-worker]").count() == 1
    await registry.beat("bulk-1:202", queue="bulk", jobs_running=1, max_jobs=20, started_at=up)
    await page.wait_for_selector("tr[data-worker='bulk-1:202']")
    assert await page.evaluate("window.fcdLoadedAt") == loaded_at
    assert "4 / 20" in (await page.text_content("tr[data-worker='web-1:101']") or "")
    await _fits(page)
    await _shot(page, "dashboard-workers")
    await page.close()
