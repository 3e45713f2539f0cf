"""Server-rendered HTML for the dashboard: Jinja2 templates (``templates/``) with autoescape on.

Every value that came from Redis, a query string or a form is escaped by Jinja itself (autoescape
for every template, :class:`jinja2.StrictUndefined` so a misspelt name fails loudly in tests
instead of rendering empty). The filters below format times and ages the same way everywhere.
Templates whose name starts with ``_`` are fragments: the page includes them, and the live
endpoints (``/dashboard/live/<panel>``) return them alone for the refresh script.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from jinja2 import Environment, PackageLoader, StrictUndefined

from ledger.durations import format_age

LIVE_REFRESH_MS = 3000


def when(ts: float | None) -> str:
    if ts is None:
        return ""
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def age(seconds: float | None) -> str:
    return "-" if seconds is None else format_age(seconds)


def rate(limiter: dict[str, Any] | None) -> str:
    if limiter is None:
        return "no snapshot"
    value = float(limiter.get("effective_global_rate", 0.0))
    return f"{value:.1f}/s (factor {float(limiter.get('rate_factor', 1.0)):.2f})"


def ts(value: Any, with_date: bool = False) -> str:
    """An audit record's ISO time as ``HH:MM:SS.mmm`` (with the date when asked)."""
    text = str(value or "")
    return f"{text[:10]} {text[11:23]}" if with_date else text[11:23]


def change(record: dict[str, Any]) -> str:
    """``queued → in_progress`` for a status change, else the event's last word."""
    event = str(record.get("event", "")).rpartition(".")[2]
    if event != "status_changed" or record.get("from") == record.get("to"):
        return event
    return f"{record.get('from') or 'new'} → {record.get('to')}"


_ENV = Environment(
    loader=PackageLoader("producer.dashboard", "templates"),
    autoescape=True,
    undefined=StrictUndefined,
    trim_blocks=True,
    lstrip_blocks=True,
)
_ENV.filters.update(when=when, age=age, rate=rate, ts=ts, change=change)
_DEFAULTS: dict[str, Any] = {
    "operator": None,
    "header": None,
    "message": None,
    "live": False,
    "live_ms": LIVE_REFRESH_MS,
    "nav": "",
}


def render(template: str, **context: Any) -> str:
    """A page or fragment; pages get the base layout's defaults."""
    return _ENV.get_template(template).render({**_DEFAULTS, **context})
