"""The real ``fcd`` commands as an on-call engineer meets them: piped at 80 columns (rich honours
``COLUMNS``), ids never cut, dates on long timelines, ``--json | head`` without a traceback,
``--code`` by HTTP status or Stripe code, counts by cause, ``fcd queue`` naming its Redis."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from typing import Any

from ledger.audit import TransitionDetails
from ledger.models import RequestSource, RequestStatus
from ledger.store import Ledger
from retention.runs import SweepRuns, SweepStatus
from tests.ledger.operator_support import failed, in_progress
from tests.retention.sweep_support import requested_run

STRIPE_ID = "req_wZeGoA1b2C3d4E5f6G7h"
LONG_ACCOUNT = "fca_1MzSgB2eZvKYlo2C0123456789abcdef"
CLI = [sys.executable, "-c", "from producer.cli import main; raise SystemExit(main())"]


def env_for(redis_url: str, ledger: Ledger, columns: int = 80) -> dict[str, str]:
    return {
        **os.environ,
        "FCD_REDIS_URL": redis_url,
        "FCD_KEY_PREFIX": ledger.prefix,
        "FCD_QUEUE_NAME": ledger.queue_name,
        "FCD_BULK_QUEUE_NAME": ledger.bulk_queue_name,
        "FCD_LOG_FORMAT": "json",
        "FCD_LOG_LEVEL": "WARNING",
        "COLUMNS": str(columns),
    }


def fcd(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*CLI, *args], env=env, capture_output=True, text=True, timeout=60, check=False
    )


async def conflict_failure(ledger: Ledger, account_id: str) -> Any:
    """A request that failed on HTTP 409 idempotency_key_in_use (as the worker records it)."""
    request = await in_progress(ledger, account_id)
    details = TransitionDetails(
        message="There is currently another in-progress request using this Stripe token "
        "(probably a retry); try again later",
        stripe_request_id=STRIPE_ID,
        http_status=409,
        stripe_error_code="idempotency_key_in_use",
    )
    updates = {
        "last_error": details.message,
        "last_error_code": "idempotency_key_in_use",
        "last_stripe_request_id": STRIPE_ID,
    }
    return await ledger.transition(request, RequestStatus.FAILED, details, updates=updates)


def assert_narrow(text: str, *whole: str) -> None:
    assert all(len(line) <= 80 for line in text.splitlines()), text
    assert "…" not in text, text
    for value in whole:
        assert value in text, f"{value} cut or missing in:\n{text}"


async def test_failed_at_80_columns_shows_every_id_whole(
    redis_url: str, bulk_ledger: Ledger
) -> None:
    """Piped at 80 columns `fcd failed` shows request, account and Stripe Request-Id whole and
    the cause with both HTTP status and code; at 200 columns it is a table, ids still whole."""
    request = await conflict_failure(bulk_ledger, LONG_ACCOUNT)
    other = await failed(bulk_ledger, "fca_other1", code="api_key_expired", http_status=401)
    narrow = fcd(["failed"], env_for(redis_url, bulk_ledger))
    assert narrow.returncode == 0, narrow.stderr
    assert_narrow(narrow.stdout, request.request_id, LONG_ACCOUNT, STRIPE_ID, other.request_id)
    assert "HTTP 409 idempotency_key_in_use" in narrow.stdout
    wide = fcd(["failed"], env_for(redis_url, bulk_ledger, columns=200))
    assert "┃ request" in wide.stdout and "…" not in wide.stdout
    assert request.request_id in wide.stdout and STRIPE_ID in wide.stdout


async def test_code_matches_http_status_or_stripe_code_and_by_cause_counts(
    redis_url: str, bulk_ledger: Ledger
) -> None:
    """`--code 409` and `--code idempotency_key_in_use` both find the 409 failure; `--by cause`
    counts failures per cause, most frequent first."""
    conflict = await conflict_failure(bulk_ledger, "fca_c1")
    await conflict_failure(bulk_ledger, "fca_c2")
    await failed(bulk_ledger, "fca_k1", code="api_key_expired", http_status=401)
    env = env_for(redis_url, bulk_ledger)
    for code in ("409", "idempotency_key_in_use"):
        found = fcd(["failed", "--code", code, "--json"], env)
        rows = [json.loads(line) for line in found.stdout.splitlines()]
        assert len(rows) == 2 and {r["http_status"] for r in rows} == {409}, found.stdout
    assert conflict.request_id in fcd(["failed", "--code", "409"], env).stdout
    assert fcd(["failed", "--code", "500", "--json"], env).stdout == ""
    causes = fcd(["failed", "--by", "cause", "--json"], env)
    assert [json.loads(line) for line in causes.stdout.splitlines()] == [
        {"cause": "HTTP 409 idempotency_key_in_use", "count": 2},
        {"cause": "HTTP 401 api_key_expired", "count": 1},
    ]
    table = fcd(["failed", "--by", "cause"], env)
    assert_narrow(table.stdout, "HTTP 409 idempotency_key_in_use")
    assert "3 failed, 2 causes" in table.stdout


async def test_timeline_at_80_columns_with_dates_when_it_spans_days(
    redis_url: str, bulk_ledger: Ledger
) -> None:
    """`fcd status` at 80 columns shows ids and Request-Ids whole; times carry no date within a
    day and a date on every record once the history spans more than a day."""
    request = await conflict_failure(bulk_ledger, LONG_ACCOUNT)
    env = env_for(redis_url, bulk_ledger)
    same_day = fcd(["status", request.request_id], env)
    assert_narrow(same_day.stdout, request.request_id, LONG_ACCOUNT, STRIPE_ID)
    today = time.strftime("%Y-%m-%d", time.gmtime())
    assert today not in same_day.stdout
    key = bulk_ledger.history_key(request.request_id)
    first = json.loads(await bulk_ledger.redis.lindex(key, 0))  # type: ignore[misc]
    first["ts"] = "2026-01-02T03:04:05.678000Z"
    await bulk_ledger.redis.lset(key, 0, json.dumps(first))  # type: ignore[misc]
    spanning = fcd(["status", request.request_id], env)
    assert_narrow(spanning.stdout, "2026-01-02 03:04:05.678", STRIPE_ID)
    assert spanning.stdout.count(f"{today} ") >= 2  # the later records carry their date too


async def test_json_piped_into_head_ends_quietly(redis_url: str, bulk_ledger: Ledger) -> None:
    """`fcd failed --json | head -n 1` through a real pipe: head gets one line, fcd stops on the
    closed pipe without a BrokenPipeError traceback (exit 141, as a Unix tool's SIGPIPE)."""
    for n in range(300):  # more than a pipe buffer of JSON lines
        await failed(bulk_ledger, f"fca_p{n}")
    shell = f"set -o pipefail; {' '.join(CLI[:2])} '{CLI[2]}' failed --json | head -n 1"
    done = subprocess.run(  # noqa: ASYNC221 (the test waits for the pipe on purpose)
        ["bash", "-c", shell], env=env_for(redis_url, bulk_ledger), capture_output=True,
        text=True, timeout=60, check=False,
    )  # fmt: skip
    assert len(done.stdout.splitlines()) == 1 and json.loads(done.stdout)["request_id"]
    assert "Traceback" not in done.stderr and "BrokenPipeError" not in done.stderr, done.stderr
    assert done.returncode == 141


async def test_queue_names_its_redis_and_watch_shows_rate_per_queue(
    redis_url: str, bulk_ledger: Ledger
) -> None:
    """`fcd queue` says which Redis it read (no password) and each queue's oldest pending;
    `--watch` prints a per-queue table with pending, workers, rate and ETA at 80 columns."""
    for n in range(2):
        await bulk_ledger.submit(f"fca_q{n}", source=RequestSource.OPERATOR, reference="t")
    env = env_for(redis_url, bulk_ledger)
    plain = fcd(["queue"], env)
    assert plain.returncode == 0, plain.stderr
    host_port = redis_url.split("://", 1)[1].rsplit("/", 1)[0].rpartition("@")[2]
    assert plain.stdout.splitlines()[0].startswith(f"redis: redis://{host_port}/")
    assert "queue urgent (" in plain.stdout and "queue bulk (" in plain.stdout
    watched = fcd(["queue", "--watch", "0.2", "--count", "2"], env)
    assert watched.returncode == 0, watched.stderr
    assert_narrow(watched.stdout, "pending", "eta")
    assert watched.stdout.count(f"redis redis://{host_port}/") == 2
    urgent_rows = [line for line in watched.stdout.splitlines() if "│ urgent" in line]
    assert len(urgent_rows) == 2 and urgent_rows[-1].split("│")[2].strip() == "2"


async def test_inconsistencies_fixed_reason_rules_and_cli_actor(
    redis_url: str, bulk_ledger: Ledger
) -> None:
    """`fcd submit` refuses an empty reason; `requeue --dry-run` needs none (and changes
    nothing); a real requeue needs one; audit records name the CLI process `cli:host:pid`."""
    env = env_for(redis_url, bulk_ledger)
    empty = fcd(["submit", "fca_r1", "--reason", "  "], env)
    assert empty.returncode == 2 and "--reason must not be empty" in empty.stderr
    request = await failed(bulk_ledger, "fca_r2")
    dry = fcd(["requeue", request.request_id, "--dry-run"], env)
    assert dry.returncode == 0 and "would be re-queued" in dry.stdout, dry.stderr
    assert (await bulk_ledger.get(request.request_id)).status == RequestStatus.FAILED
    missing = fcd(["requeue", request.request_id], env)
    assert missing.returncode == 2 and "--reason is required" in missing.stderr
    done = fcd(["requeue", request.request_id, "--reason", "key fixed"], env)
    assert done.returncode == 0, done.stderr
    assert (await bulk_ledger.history(request.request_id))[-1]["worker"].startswith("cli:")


async def test_sweeps_list_says_why_a_run_waits_and_cancel_stops_it(
    redis_url: str, bulk_ledger: Ledger
) -> None:
    """`fcd sweeps` at 80 columns shows a requested run waiting for a bulk worker (none alive);
    `fcd sweeps cancel RUN --reason` cancels it once; a second cancel exits 1."""
    runs = SweepRuns(bulk_ledger.redis, bulk_ledger.prefix, bulk_ledger.audit)
    run = await requested_run(runs)
    env = env_for(redis_url, bulk_ledger)
    listed = fcd(["sweeps"], env)
    assert_narrow(listed.stdout, run.run_id, "why: waiting for a bulk worker (none alive")
    cancelled = fcd(["sweeps", "cancel", run.run_id, "--reason", "wrong window"], env)
    assert cancelled.returncode == 0, cancelled.stderr
    assert "cancelled" in cancelled.stdout and "wrong window" in cancelled.stdout
    assert (await runs.get(run.run_id)).status == SweepStatus.CANCELLED
    again = fcd(["sweeps", "cancel", run.run_id, "--reason", "x"], env)
    assert again.returncode == 1 and "already cancelled" in again.stderr
