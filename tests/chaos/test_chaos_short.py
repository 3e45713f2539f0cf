"""The chaos harness's short variant (``bench/chaos.py --short``) as a test: real processes, a
real Redis with AOF killed with -9 and restarted, worker SIGKILLs and a SIGTERM, Stripe fault
storms, a 429 burst and refused connections; every invariant is read from the result the
harness computed from the ledger, the audit files and the emulator's log (nothing timed)."""

from __future__ import annotations

from pathlib import Path

import pytest

from devenv.chaos import run, short_config

pytestmark = pytest.mark.process


async def test_short_chaos_run_keeps_every_invariant(tmp_path: Path) -> None:
    result = await run(short_config(), tmp_path)
    broken = {
        item.name: (item.value, result.findings.examples.get(item.name))
        for item in result.findings.invariants
        if not item.ok
    }
    assert not broken, f"{broken}; logs in {tmp_path}"
    faults = result.faults
    assert faults["worker SIGKILLs"] >= 3
    assert faults["Redis kill -9 (restart, AOF replay)"] == 1
    assert faults["Stripe 500s injected"] > 0
    assert faults["Stripe calls hung past the client timeout"] > 0
    assert faults["Stripe 429s (rate limited)"] > 0
    assert faults["connection-refusal windows"] == 1
    assert faults["worker exits not caused by the harness (restarted)"] == 0
    figures = result.figures
    assert figures["accepted submissions (202)"] >= 300
    assert figures["customer-level parents"] == result.config.customers
    assert figures["requests in the ledger (account)"] >= result.config.sweep_accounts + 300
