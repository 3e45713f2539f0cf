"""``GET /v1/events``: the events of disconnects, listed as Stripe lists them, and the options for
what Stripe leaves undocumented (an inactive account's disconnect, ``request`` on our events)."""

from __future__ import annotations

from typing import Any

import aiohttp

from stripe_emulator import RunningEmulator, run_emulator
from tests.stripe_emulator.conftest import StripeHttp, small_config

EVENT_TYPE = "financial_connections.account.disconnected"


async def events(
    stripe_http: StripeHttp, headers: dict[str, str] | None = None, **params: str
) -> Any:
    reply = await stripe_http.call("GET", "/v1/events", params=params, headers=headers)
    return reply


async def disconnect_all(stripe_http: StripeHttp, count: int) -> list[str]:
    ids = (await stripe_http.account_ids())[:count]
    for n, account_id in enumerate(ids):
        reply = await stripe_http.disconnect(account_id, headers={"Idempotency-Key": f"e-{n}"})
        assert reply.status == 200
    return ids


async def test_events_are_listed_newest_first_with_cursors(stripe_http: StripeHttp) -> None:
    """Five disconnects make five events: newest first, pages of two with starting_after reach
    every one, ending_before walks back towards the newest, and each names its request."""
    ids = await disconnect_all(stripe_http, 5)
    first = await events(stripe_http, limit="2", type=EVENT_TYPE)
    assert first.status == 200 and first.body["url"] == "/v1/events" and first.body["has_more"]
    seen = list(first.body["data"])
    while seen and len(seen) < 10:
        more = await events(stripe_http, limit="2", starting_after=seen[-1]["id"])
        seen += more.body["data"]
        if not more.body["has_more"]:
            break
    assert [e["data"]["object"]["id"] for e in seen] == list(reversed(ids))
    assert [e["request"]["idempotency_key"] for e in seen] == [f"e-{n}" for n in range(4, -1, -1)]
    newer = await events(stripe_http, limit="2", ending_before=seen[-1]["id"])
    assert [e["id"] for e in newer.body["data"]] == [seen[-3]["id"], seen[-2]["id"]]
    assert newer.body["has_more"]


async def test_type_created_and_bad_cursors_filter_as_stripe_does(stripe_http: StripeHttp) -> None:
    """``type`` takes a wildcard, ``created[gte]`` bounds the list, an unknown cursor is 400
    resource_missing, ``type`` with ``types[]`` is 400."""
    await disconnect_all(stripe_http, 2)
    everything = (await events(stripe_http)).body["data"]
    wildcard = (await events(stripe_http, type="financial_connections.account.*")).body["data"]
    assert wildcard == everything and len(everything) == 2
    assert (await events(stripe_http, type="customer.created")).body["data"] == []
    future = str(everything[0]["created"] + 1)
    bounded = await stripe_http.call("GET", "/v1/events", params={"created[gte]": future})
    assert bounded.status == 200 and bounded.body["data"] == []
    bad = await events(stripe_http, starting_after="evt_1Missing")
    assert bad.status == 400 and bad.body["error"]["code"] == "resource_missing"
    both = await stripe_http.call(
        "GET",
        "/v1/events",
        params=[("type", EVENT_TYPE), ("types[]", EVENT_TYPE)],  # type: ignore[arg-type]
    )
    assert both.status == 400


async def test_events_older_than_the_retention_are_not_listed(
    stripe_http: StripeHttp, emulator: RunningEmulator
) -> None:
    """Stripe lists events "going back up to 30 days": an event aged past the retention (its
    ``created`` moved 30 days and a second back) is gone, and a cursor naming it is 400."""
    await disconnect_all(stripe_http, 2)
    older, newer = emulator.state.webhooks.events
    older["created"] -= 30 * 86400 + 1
    assert [e["id"] for e in (await events(stripe_http)).body["data"]] == [newer["id"]]
    assert (await events(stripe_http, starting_after=older["id"])).status == 400


async def test_a_connected_accounts_events_are_listed_acting_as_it(stripe_http: StripeHttp) -> None:
    """An event of a connected account carries ``account`` and is listed only with its
    Stripe-Account; the platform's list leaves it out."""
    [acct] = [a["id"] for a in (await stripe_http.admin("POST", "/connected-accounts"))["data"]]
    body = {"count": 1, "stripe_account": acct}
    [fca] = [a["id"] for a in (await stripe_http.admin("POST", "/accounts", body))["data"]]
    await stripe_http.disconnect(fca, headers={"Stripe-Account": acct})
    assert (await events(stripe_http)).body["data"] == []
    [event] = (await events(stripe_http, {"Stripe-Account": acct})).body["data"]
    assert event["account"] == acct and event["data"]["object"]["id"] == fca


async def test_event_request_mode_null_leaves_our_request_out(
    session: aiohttp.ClientSession,
) -> None:
    """Option ``event_request_mode="null"`` (undocumented whether Stripe names the request on
    our own disconnect's event): the event's request id and key are null."""
    async with run_emulator(small_config(event_request_mode="null")) as emulator:
        stripe_http = StripeHttp(emulator.url, session)
        await disconnect_all(stripe_http, 1)
        [event] = (await events(stripe_http)).body["data"]
        assert event["request"] == {"id": None, "idempotency_key": None}


async def test_inactive_disconnect_mode_400_refuses_an_inactive_account(
    session: aiohttp.ClientSession,
) -> None:
    """Option ``inactive_disconnect_mode="400"``: disconnecting an inactive account is a stored
    400 and the account stays inactive; the default disconnects it."""
    async with run_emulator(small_config(inactive_disconnect_mode="400")) as emulator:
        stripe_http = StripeHttp(emulator.url, session)
        [inactive] = (await stripe_http.account_ids(status="inactive"))[:1]
        refused = await stripe_http.disconnect(inactive, headers={"Idempotency-Key": "i-1"})
        assert refused.status == 400
        assert refused.body["error"]["code"] == "financial_connections_account_inactive"
        again = await stripe_http.disconnect(inactive, headers={"Idempotency-Key": "i-1"})
        assert again.headers["Idempotent-Replayed"] == "true"
        assert (await stripe_http.admin("GET", f"/accounts/{inactive}"))["status"] == "inactive"
        await stripe_http.admin("POST", "/config", {"inactive_disconnect_mode": "200"})
        done = await stripe_http.disconnect(inactive)
        assert done.status == 200 and done.body["status"] == "disconnected"
