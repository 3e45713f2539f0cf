"""Server-rendered HTML for the dashboard: plain forms, no JavaScript, every value escaped.

Each function returns a complete page or a fragment as a string; :func:`esc` is applied to every
value that came from Redis, a query string or a form, so nothing stored can inject markup.
"""

from __future__ import annotations

import html
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote

from control.overview import QueueOverview
from ledger.models import DisconnectRequest, RequestStatus
from producer.durations import format_age

_STYLE = """
body{font:14px/1.45 system-ui,sans-serif;margin:0;color:#1d2330;background:#f5f6f8}
header{background:#1d2330;color:#fff;padding:10px 20px;display:flex;gap:20px;align-items:center}
header a{color:#cfe0ff} header form{margin-left:auto} main{padding:16px 20px;max-width:1400px}
h1{font-size:18px;margin:0} h2{font-size:16px;margin:22px 0 8px}
table{border-collapse:collapse;background:#fff;width:100%;box-shadow:0 1px 2px #0002}
th,td{padding:6px 8px;border-bottom:1px solid #e3e6ea;text-align:left;vertical-align:top}
th{background:#eef0f3;font-weight:600} code{font-size:12px}
.cards{display:flex;gap:12px;flex-wrap:wrap}
.card{background:#fff;padding:10px 14px;min-width:140px;box-shadow:0 1px 2px #0002}
.card b{display:block;font-size:22px} .bad b{color:#b42318} .ok b{color:#067647}
.flash{padding:8px 12px;margin:10px 0;background:#ecfdf3;border:1px solid #abefc6}
.flash.error{background:#fef3f2;border-color:#fecdca}
.status{padding:1px 6px;border-radius:8px;background:#eef0f3;font-size:12px}
.status.failed{background:#fee4e2} .status.queued{background:#d1e9ff}
.status.disconnected,.status.already_disconnected{background:#d1fadf}
.status.in_progress,.status.retry_scheduled{background:#fef0c7}
form.inline{display:flex;gap:6px} input[type=text],input[type=password]{padding:4px 6px}
button{padding:4px 10px;cursor:pointer;white-space:nowrap}
"""


def esc(value: Any) -> str:
    return html.escape("" if value is None else str(value), quote=True)


def when(ts: float | None) -> str:
    if ts is None:
        return ""
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def page(title: str, body: str, operator: str | None = None) -> str:
    nav = ""
    if operator is not None:
        nav = (
            '<a href="/dashboard">Overview</a>'
            '<form class="inline" method="get" action="/dashboard/lookup">'
            '<input type="text" name="ref" placeholder="dr_… or fca_…" aria-label="look up">'
            "<button>Look up</button></form>"
            f'<span>signed in as <b id="operator">{esc(operator)}</b></span>'
            '<form method="post" action="/dashboard/logout"><button>Sign out</button></form>'
        )
    return (
        '<!doctype html><html lang="en"><head><meta charset="utf-8">'
        f"<title>{esc(title)} · fc-disconnect</title><style>{_STYLE}</style></head>"
        f"<body><header><h1>fc-disconnect</h1>{nav}</header><main>{body}</main></body></html>"
    )


def flash(message: str | None, ok: bool) -> str:
    if not message:
        return ""
    kind = "flash" if ok else "flash error"
    return f'<div class="{kind}" role="status">{esc(message)}</div>'


def status_badge(status: RequestStatus | str) -> str:
    value = status.value if isinstance(status, RequestStatus) else status
    return f'<span class="status {esc(value)}">{esc(value)}</span>'


def request_link(request_id: str) -> str:
    return f'<a href="/dashboard/requests/{quote(request_id)}">{esc(request_id)}</a>'


def login_page(message: str | None, configured: bool) -> str:
    note = "" if configured else flash("Sign-in is not configured (FCD_OPERATOR_TOKENS).", False)
    form = (
        '<form method="post" action="/dashboard/login">'
        '<p><label>Operator token <input type="password" name="token" autocomplete="off" '
        'required autofocus></label></p><p><button type="submit">Sign in</button></p></form>'
    )
    return page("Sign in", f"<h2>Sign in</h2>{note}{flash(message, False)}{form}")


def _card(label: str, value: Any, tone: str = "") -> str:
    return f'<div class="card {tone}"><span>{esc(label)}</span><b>{esc(value)}</b></div>'


def overview_cards(overview: QueueOverview) -> str:
    oldest = overview.oldest_pending_age_seconds
    cards = [
        _card("paused", "YES" if overview.paused else "no", "bad" if overview.paused else "ok"),
        *(_card(f"queue {q.name}", f"{q.due} due / {q.deferred} later") for q in overview.queues),
        _card("in flight", overview.in_flight),
        _card("retry scheduled", overview.retry_scheduled),
        _card("oldest pending", "-" if oldest is None else format_age(oldest)),
        _card(
            "failed, last hour", overview.failed_last_hour, "bad" * bool(overview.failed_last_hour)
        ),
        _card("rate", _rate(overview.limiter)),
        _card("limiter waits", "-" if overview.limiter is None else overview.limiter.get("waits")),
    ]
    pause = ""
    if overview.paused:
        p = overview.paused
        pause = flash(f"Paused by {p.get('operator')} at {p.get('at')}: {p.get('reason')}", False)
    return f'{pause}<div class="cards" id="overview">{"".join(cards)}</div>'


def _rate(limiter: dict[str, Any] | None) -> str:
    if limiter is None:
        return "no snapshot"
    rate = float(limiter.get("effective_global_rate", 0.0))
    return f"{rate:.1f}/s (factor {float(limiter.get('rate_factor', 1.0)):.2f})"


def failed_table(failed: Sequence[DisconnectRequest], now: float, filters: dict[str, str]) -> str:
    rows = []
    for r in failed:
        rows.append(
            f'<tr data-request="{esc(r.request_id)}"><td>{request_link(r.request_id)}</td>'
            f"<td>{esc(r.account_id)}</td><td>{r.attempts}</td>"
            f"<td><code>{esc(r.last_error_code)}</code></td><td>{esc(r.last_error)}</td>"
            f"<td><code>{esc(r.last_stripe_request_id)}</code></td>"
            f"<td>{esc(format_age(now - r.updated_at))}</td>"
            f"<td>{action_form(r.request_id, 'requeue', 'Re-queue')}</td></tr>"
        )
    body = "".join(rows) or '<tr><td colspan="8">No failed requests match.</td></tr>'
    head = "".join(
        f"<th>{h}</th>"
        for h in ("request", "account", "tries", "code", "last error", "Request-Id", "age", "")
    )
    bulk = ""
    if failed:
        hidden = "".join(
            f'<input type="hidden" name="{esc(k)}" value="{esc(v)}">' for k, v in filters.items()
        )
        bulk = (
            '<form class="inline" method="post" action="/dashboard/failed/requeue">'
            f'{hidden}<input type="text" name="reason" placeholder="reason" required>'
            f"<button>Re-queue all {len(failed)} shown</button></form>"
        )
    return f'<table id="failed"><tr>{head}</tr>{body}</table><p>{bulk}</p>'


def filter_form(filters: dict[str, str]) -> str:
    return (
        '<form class="inline" method="get" action="/dashboard" id="filters">'
        f'<input type="text" name="code" placeholder="error code" value="{esc(filters.get("code"))}">'
        f'<input type="text" name="since" placeholder="since e.g. 2h" '
        f'value="{esc(filters.get("since"))}"><button>Filter</button></form>'
    )


def action_form(request_id: str, action: str, label: str) -> str:
    """A POST form that cannot be sent without a reason (``required``)."""
    return (
        f'<form class="inline" method="post" action="/dashboard/requests/{quote(request_id)}/'
        f'{action}"><input type="text" name="reason" placeholder="reason" required '
        f'aria-label="{esc(label)} reason"><button>{esc(label)}</button></form>'
    )


def overview_page(
    operator: str,
    overview: QueueOverview,
    failed: Sequence[DisconnectRequest],
    filters: dict[str, str],
    now: float,
    message: tuple[str, bool] | None,
) -> str:
    body = (flash(*message) if message else "") + (
        f"{overview_cards(overview)}<h2>Failed requests</h2>{filter_form(filters)}"
        f"{failed_table(failed, now, filters)}"
    )
    return page("Overview", body, operator)


def _last_error(request: DisconnectRequest) -> str:
    if not request.last_error and not request.last_error_code:
        return ""
    return (
        f" · last error <code>{esc(request.last_error_code)}</code> {esc(request.last_error)}"
        f" (Stripe Request-Id <code>{esc(request.last_stripe_request_id)}</code>)"
    )


def _history_rows(history: Iterable[dict[str, Any]]) -> str:
    rows = []
    for h in history:
        rows.append(
            f"<tr><td>{esc(h.get('ts'))}</td><td>{esc(str(h.get('event')).rpartition('.')[2])}</td>"
            f"<td>{esc(h.get('from'))}</td><td>{esc(h.get('to'))}</td><td>{esc(h.get('attempt'))}</td>"
            f"<td>{esc(h.get('http_status'))}</td><td><code>{esc(h.get('stripe_request_id'))}</code>"
            f"</td><td>{esc(h.get('operator'))}</td><td>{esc(h.get('message'))}</td></tr>"
        )
    return "".join(rows)


def request_page(
    operator: str,
    request: DisconnectRequest,
    history: Sequence[dict[str, Any]],
    message: tuple[str, bool] | None,
) -> str:
    actions = ""
    if request.status == RequestStatus.FAILED:
        actions = action_form(request.request_id, "requeue", "Re-queue")
    elif request.status in (RequestStatus.QUEUED, RequestStatus.RETRY_SCHEDULED):
        actions = action_form(request.request_id, "cancel", "Cancel")
    summary = (
        f"<h2>{esc(request.request_id)} {status_badge(request.status)}</h2>"
        f'<p id="summary">account <b>{esc(request.account_id)}</b> · attempts {request.attempts}'
        f" · source {esc(request.source.value)}:{esc(request.reference)} · created "
        f"{esc(when(request.created_at))}{_last_error(request)}</p>{actions}"
    )
    head = "".join(
        f"<th>{h}</th>"
        for h in (
            "time (UTC)",
            "event",
            "from",
            "to",
            "try",
            "HTTP",
            "Request-Id",
            "operator",
            "message",
        )
    )
    table = f'<h2>Timeline</h2><table id="timeline"><tr>{head}</tr>{_history_rows(history)}</table>'
    return page(
        request.request_id, (flash(*message) if message else "") + summary + table, operator
    )
