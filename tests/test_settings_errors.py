"""Bad configuration is a clear one-line error and exit 2, and never echoes a secret."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

pytestmark = pytest.mark.process

SECRET = "sk_live_doNotPrintThis123"


def run(module: str, **env: str) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("FCD_")}
    return subprocess.run(
        [sys.executable, "-m", module, *(["--burst"] if module == "worker" else [])],
        env={**clean, **env},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_worker_with_inconsistent_settings_exits_2_without_the_key() -> None:
    """A lease shorter than the job timeout is refused by name; the API key is not printed."""
    done = run("worker", FCD_STRIPE_API_KEY=SECRET, FCD_IN_PROGRESS_LEASE_SECONDS="100")
    assert done.returncode == 2
    assert "FCD_IN_PROGRESS_LEASE_SECONDS" in done.stderr
    assert SECRET not in done.stderr + done.stdout
    assert "Traceback" not in done.stderr


def test_worker_without_a_key_names_the_variable() -> None:
    """A missing required secret names FCD_STRIPE_API_KEY."""
    done = run("worker")
    assert done.returncode == 2 and "FCD_STRIPE_API_KEY" in done.stderr


def test_intake_with_malformed_tokens_exits_2_without_echoing_them() -> None:
    """Malformed FCD_API_TOKENS (which hold secrets) are reported without their value."""
    done = run(
        "producer",
        FCD_API_TOKENS=f"billing={SECRET}",
        FCD_STRIPE_WEBHOOK_SECRETS="whsec_x",
    )
    assert done.returncode == 2, done.stderr
    assert "FCD_API_TOKENS" in done.stderr
    assert SECRET not in done.stderr + done.stdout


def test_sentinel_settings_errors_name_the_variable_without_the_password() -> None:
    """Sentinel mode without its master name, or mixed with FCD_REDIS_URL, is exit 2 naming the
    variables; FCD_REDIS_PASSWORD is never printed."""
    password = "redis-pw-doNotPrint-42"
    missing = run(
        "worker",
        FCD_STRIPE_API_KEY=SECRET,
        FCD_REDIS_SENTINELS="s1:26379,s2:26379",
        FCD_REDIS_PASSWORD=password,
    )
    assert missing.returncode == 2 and "FCD_REDIS_SENTINEL_MASTER" in missing.stderr
    mixed = run(
        "producer",
        FCD_API_TOKENS='{"billing": "tok_billing_0123456789abcdef"}',
        FCD_STRIPE_WEBHOOK_SECRETS="whsec_x",
        FCD_REDIS_SENTINELS="s1:26379",
        FCD_REDIS_SENTINEL_MASTER="ledger",
        FCD_REDIS_URL=f"redis://:{password}@cache:6379/0",
    )
    assert mixed.returncode == 2 and "not both" in mixed.stderr
    for done in (missing, mixed):
        assert password not in done.stderr + done.stdout
        assert SECRET not in done.stderr + done.stdout
        assert "Traceback" not in done.stderr
