"""Reading Prometheus text in tests: one value per ``name{labels}`` sample."""

from __future__ import annotations

import re

_SAMPLE = re.compile(r"^(?P<name>[a-z_]+)(?P<labels>\{[^}]*\})? (?P<value>\S+)$")


def parse_samples(text: str) -> dict[str, float]:
    """``'fcd_paused' -> 1.0``, ``'fcd_workers{queue="urgent"}' -> 2.0``; comments skipped."""
    samples = {}
    for line in text.splitlines():
        match = _SAMPLE.match(line)
        if match:
            samples[match["name"] + (match["labels"] or "")] = float(match["value"])
    return samples


def series_names(text: str) -> list[str]:
    """The metric families the text declares (``# TYPE`` lines), in order."""
    return [line.split()[2] for line in text.splitlines() if line.startswith("# TYPE ")]
