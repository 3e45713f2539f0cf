"""`GET /v1/events`: the events the emulator made (see `webhooks`), listed as Stripe lists them.

Stripe: "List events, going back up to 30 days", newest first, with `type` (a name, or a group
with `*` as a wildcard), `types[]` (up to 20 names; not with `type`), `created` (a unix time, or
`created[gt|gte|lt|lte]`), `limit` (1..100, default 10), `starting_after` / `ending_before`
cursors, and `delivery_success`. An event of a connected account carries `account` and is listed
only to a call acting as that account (`Stripe-Account`); the platform's own events have none.
A cursor naming an event that is not (or no longer) listed is 400 `resource_missing`.

Events are kept in memory (the last 10,000, see `WebhookDispatcher.events`) and those older than
`EmulatorConfig.event_retention_seconds` (30 days by default) are not listed.
"""

from __future__ import annotations

import fnmatch
import json
import time
from collections.abc import Callable, Mapping
from typing import Any

from aiohttp import web

from stripe_emulator import errors
from stripe_emulator.accounts import page, parse_limit
from stripe_emulator.pipeline import Answer, Call, serve
from stripe_emulator.state import EmulatorState

EVENTS_PATH = "/v1/events"
EVENTS = "events"
_RANGE = ("gt", "gte", "lt", "lte")
_PARAMS = frozenset(
    {"type", "types[]", "created", "limit", "starting_after", "ending_before", "delivery_success"}
    | {f"created[{op}]" for op in _RANGE}
)
Event = dict[str, Any]


def _created_filter(query: Mapping[str, str]) -> Callable[[int], bool] | errors.StripeError:
    bounds: list[tuple[str, int]] = []
    for name in ("created", *(f"created[{op}]" for op in _RANGE)):
        raw = query.get(name)
        if raw is None:
            continue
        try:
            bounds.append((name, int(raw)))
        except ValueError:
            return errors.invalid_param(
                f"Invalid integer: {raw}", name, code="parameter_invalid_integer"
            )

    def matches(created: int) -> bool:
        tests = {
            "created": created.__eq__,
            "created[gt]": created.__gt__,
            "created[gte]": created.__ge__,
            "created[lt]": created.__lt__,
            "created[lte]": created.__le__,
        }
        return all(tests[name](value) for name, value in bounds)

    return matches


def _type_filter(request: web.Request) -> Callable[[str], bool] | errors.StripeError:
    single = request.query.get("type")
    several = request.query.getall("types[]", [])
    if single is not None and several:
        return errors.invalid_param("You may pass either `type` or `types`, but not both.", "type")
    if len(several) > 20:
        return errors.invalid_param("You may pass at most 20 types.", "types")
    if single is not None:
        return lambda event_type: fnmatch.fnmatchcase(event_type, single)
    if several:
        return lambda event_type: event_type in several
    return lambda event_type: True


def _delivered(state: EmulatorState) -> dict[str, bool]:
    """Per event id: whether every delivery of it succeeded."""
    done: dict[str, bool] = {}
    for delivery in state.webhooks.deliveries:
        ok = delivery["status"] == "delivered"
        done[delivery["event_id"]] = done.get(delivery["event_id"], True) and ok
    return done


async def _list(state: EmulatorState, call: Call) -> Answer:
    request = call.request
    query = request.query
    error = next(
        (
            errors.invalid_param(f"Received unknown parameter: {name}", name)
            for name in query
            if name not in _PARAMS and not name.startswith("expand")
        ),
        None,
    )
    limit = parse_limit(query.get("limit"))
    created_ok, type_ok = _created_filter(query), _type_filter(request)
    for value in (limit, created_ok, type_ok):
        if error is None and isinstance(value, errors.StripeError):
            error = value
    if error is not None:
        return Answer.error(call, error)
    assert isinstance(limit, int) and callable(created_ok) and callable(type_ok)
    oldest = time.time() - state.config.event_retention_seconds
    visible = [
        e
        for e in state.webhooks.events
        if e.get("account") == call.stripe_account
        and e["livemode"] == call.livemode
        and e["created"] >= oldest
    ]
    positions = {e["id"]: n for n, e in enumerate(visible)}
    cursors: dict[str, int | None] = {}
    for name in ("starting_after", "ending_before"):
        raw = query.get(name)
        cursors[name] = None if raw is None else positions.get(raw)
        if raw is not None and cursors[name] is None:
            missing = errors.StripeError(
                400, "invalid_request_error", f"No such event: '{raw}'", "resource_missing", name
            )
            return Answer.error(call, missing)
    delivery = query.get("delivery_success")
    delivered = _delivered(state) if delivery is not None else {}
    candidates = [
        n
        for n, e in enumerate(visible)
        if type_ok(e["type"])
        and created_ok(e["created"])
        and (delivery is None or delivered.get(e["id"], True) == (delivery == "true"))
    ]
    chosen, has_more = page(candidates, limit, cursors["starting_after"], cursors["ending_before"])
    body = {
        "object": "list",
        "data": [visible[n] for n in chosen],
        "has_more": has_more,
        "url": EVENTS_PATH,
    }
    return Answer.ok(json.dumps(body, separators=(",", ":")).encode())


async def list_events(request: web.Request) -> web.StreamResponse:
    """`GET /v1/events`."""
    return await serve(request, EVENTS, None, _list)
