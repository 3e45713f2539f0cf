"""``/metrics`` of the intake: the fleet-wide exposition of :mod:`control.exposition`.

The intake adds only what it alone can read cheaply: the webhook inbox's pending count.
"""

from __future__ import annotations

from control.exposition import render_metrics as render_fleet_metrics
from producer.http.state import Services


async def render_metrics(svc: Services) -> str:
    """The whole exposition text."""
    return await render_fleet_metrics(
        svc.ledger,
        webhook_inbox=await svc.inbox.pending(),
        webhook_dead_letters=await svc.inbox.dead_letters(),
    )
