"""A sweep run as an operator finds it: requested by ``fcd sweep``, not yet picked up."""

from __future__ import annotations

import time

from retention.runs import SweepRun, SweepRuns, SweepStatus, new_sweep_id


async def requested_run(runs: SweepRuns, policy: str = "stale-links") -> SweepRun:
    """A Stripe-sourced dry run recorded as ``requested`` now."""
    return await runs.create(
        SweepRun(
            run_id=new_sweep_id(), policy=policy, trigger="cli", source="stripe",
            status=SweepStatus.REQUESTED, started_at=time.time(),
        )
    )  # fmt: skip
