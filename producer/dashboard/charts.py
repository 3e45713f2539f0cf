"""Throughput and outcome charts: requests that reached each terminal status, per time bucket.

Read from the ledger's terminal status indexes (sorted by the time of the last change, so a
request counts where it finished): one ``ZCOUNT`` per status and bucket, all in one pipeline.
The chart is plain SVG geometry computed here and drawn by ``templates/_chart.html`` (no script,
no CDN). A failed request re-queued since leaves the ``failed`` index, and so the chart.
"""

from __future__ import annotations

import itertools
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Final

from ledger.models import RequestStatus
from ledger.store import Ledger

COLORS: Final = (
    (RequestStatus.DISCONNECTED, "#12b76a"),
    (RequestStatus.ALREADY_DISCONNECTED, "#6ce9a6"),
    (RequestStatus.NOT_FOUND, "#98a2b3"),
    (RequestStatus.CANCELLED, "#fdb022"),
    (RequestStatus.FAILED, "#f04438"),
)
#: range name -> (seconds, buckets, bucket label)
RANGES: Final = {"hour": (3600, 12, "5 min"), "day": (86_400, 24, "hour")}
WIDTH, HEIGHT = 420, 110


@dataclass(frozen=True)
class Segment:
    status: str
    count: int
    color: str
    y: float
    h: float


@dataclass(frozen=True)
class Bar:
    x: float
    w: float
    label: str
    segments: list[Segment]


@dataclass(frozen=True)
class Tick:
    x: float
    label: str


@dataclass(frozen=True)
class Chart:
    range: str
    bucket_label: str
    total: int
    peak: int
    bars: list[Bar]
    ticks: list[Tick]
    legend: list[tuple[str, str, int]]
    width: int = WIDTH
    height: int = HEIGHT
    counts: dict[str, list[int]] = field(default_factory=dict)


async def outcome_chart(ledger: Ledger, range_name: str, now: float | None = None) -> Chart:
    """Finished requests per bucket and terminal status over the last hour or day."""
    span, buckets, bucket_label = RANGES[range_name]
    now = time.time() if now is None else now
    step = span / buckets
    edges = [now - span + i * step for i in range(buckets + 1)]
    async with ledger.redis.pipeline(transaction=False) as pipe:
        for status, _ in COLORS:
            for low, high in itertools.pairwise(edges):
                pipe.zcount(ledger.status_key(status), f"({low}", high)
        raw = await pipe.execute()
    counts = {
        status.value: [int(n) for n in raw[i * buckets : (i + 1) * buckets]]
        for i, (status, _) in enumerate(COLORS)
    }
    return _draw(range_name, bucket_label, edges, counts)


def _draw(
    range_name: str, bucket_label: str, edges: list[float], counts: dict[str, list[int]]
) -> Chart:
    buckets = len(edges) - 1
    totals = [sum(counts[s.value][i] for s, _ in COLORS) for i in range(buckets)]
    peak = max([*totals, 1])
    slot = WIDTH / buckets
    bars = []
    for i in range(buckets):
        y = float(HEIGHT)
        segments = []
        for status, color in COLORS:
            n = counts[status.value][i]
            if n:
                h = HEIGHT * n / peak
                y -= h
                segments.append(Segment(status.value, n, color, round(y, 2), round(h, 2)))
        label = datetime.fromtimestamp(edges[i], UTC).strftime("%H:%M")
        bars.append(Bar(round(i * slot + 1, 2), round(slot - 2, 2), label, segments))
    every = max(buckets // 4, 1)
    ticks = [Tick(bar.x, bar.label) for i, bar in enumerate(bars) if i % every == 0]
    legend = [(s.value, color, sum(counts[s.value])) for s, color in COLORS]
    return Chart(range_name, bucket_label, sum(totals), max(totals), bars, ticks, legend,
                 counts=counts)  # fmt: skip
