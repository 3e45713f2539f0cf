"""Connect: FC accounts of connected accounts, Stripe-Account checks and ``GET /v1/accounts``."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
import stripe
from hypothesis import given
from hypothesis import strategies as st

from stripe_emulator import DEFAULT_API_KEY, RunningEmulator
from stripe_emulator.connect import Without
from tests.stripe_emulator.conftest import ACCOUNTS_PATH, StripeHttp


async def connect(stripe_http: StripeHttp, count: int = 1) -> list[str]:
    created = await stripe_http.admin("POST", "/connected-accounts", {"count": count})
    return [a["id"] for a in created["data"]]


async def accounts_on(stripe_http: StripeHttp, owner: str, count: int) -> list[str]:
    body: dict[str, Any] = {"count": count, "stripe_account": owner}
    return [a["id"] for a in (await stripe_http.admin("POST", "/accounts", body))["data"]]


async def listed(stripe_http: StripeHttp, headers: dict[str, str] | None = None) -> list[str]:
    ids: list[str] = []
    params = {"limit": "100"}
    while True:
        reply = await stripe_http.call("GET", ACCOUNTS_PATH, params=params, headers=headers)
        assert reply.status == 200, reply.body
        ids += [a["id"] for a in reply.body["data"]]
        if not reply.body["has_more"]:
            return ids
        params["starting_after"] = ids[-1]


async def test_a_connected_accounts_fc_accounts_are_seen_only_acting_as_it(
    stripe_http: StripeHttp,
) -> None:
    """FC accounts on a connected account: listed, retrieved and disconnected only with its
    Stripe-Account; the platform's unfiltered list covers its own accounts only, and a platform
    account is a 404 when acting as the connected account."""
    [acct] = await connect(stripe_http)
    own = await accounts_on(stripe_http, acct, 3)
    as_connected = {"Stripe-Account": acct}
    platform = await listed(stripe_http)
    assert len(platform) == 40 and not set(own) & set(platform)
    assert await listed(stripe_http, as_connected) == list(reversed(own))
    hidden = await stripe_http.call("GET", f"{ACCOUNTS_PATH}/{own[0]}")
    assert hidden.status == 404 and hidden.body["error"]["code"] == "resource_missing"
    seen = await stripe_http.call("GET", f"{ACCOUNTS_PATH}/{own[0]}", headers=as_connected)
    assert seen.status == 200
    other_side = await stripe_http.call(
        "GET", f"{ACCOUNTS_PATH}/{platform[0]}", headers=as_connected
    )
    assert other_side.status == 404
    assert (await stripe_http.disconnect(own[0])).status == 404
    done = await stripe_http.disconnect(own[0], headers=as_connected)
    assert done.status == 200 and done.body["status"] == "disconnected"


@pytest.mark.parametrize("revoked", [False, True], ids=["never-connected", "revoked"])
async def test_a_stripe_account_the_key_cannot_act_as_is_403_account_invalid(
    stripe_http: StripeHttp, revoked: bool
) -> None:
    """A Stripe-Account never connected, or whose platform access was revoked, gets Stripe's
    403 account_invalid (key masked to its last four characters) on every endpoint."""
    if revoked:
        [acct] = await connect(stripe_http)
        [fca] = await accounts_on(stripe_http, acct, 1)
        await stripe_http.admin("POST", f"/connected-accounts/{acct}/revoke")
    else:
        acct, fca = "acct_1NeverConnected", (await stripe_http.account_ids())[0]
    headers = {"Stripe-Account": acct}
    for reply in (
        await stripe_http.call("GET", ACCOUNTS_PATH, headers=headers),
        await stripe_http.call("GET", f"{ACCOUNTS_PATH}/{fca}", headers=headers),
        await stripe_http.disconnect(fca, headers={**headers, "Idempotency-Key": "k-403"}),
    ):
        assert reply.status == 403
        error = reply.body["error"]
        assert error["code"] == "account_invalid" and error["type"] == "invalid_request_error"
        assert f"does not have access to account '{acct}'" in error["message"]
        assert DEFAULT_API_KEY not in error["message"] and DEFAULT_API_KEY[-4:] in error["message"]
    log = (await stripe_http.admin("GET", "/requests"))["data"]
    assert [e["stripe_account"] for e in log[-3:]] == [acct] * 3


async def test_v1_accounts_pages_through_the_platforms_connected_accounts(
    stripe_http: StripeHttp,
) -> None:
    """GET /v1/accounts lists connected accounts newest first with cursors; a revoked one is
    gone; acting as a connected account it is 403."""
    ids = await connect(stripe_http, 5)
    await stripe_http.admin("POST", f"/connected-accounts/{ids[1]}/revoke")
    seen: list[str] = []
    params = {"limit": "2"}
    while True:
        reply = await stripe_http.call("GET", "/v1/accounts", params=params)
        assert reply.status == 200 and reply.body["url"] == "/v1/accounts"
        assert all(a["object"] == "account" for a in reply.body["data"])
        seen += [a["id"] for a in reply.body["data"]]
        if not reply.body["has_more"]:
            break
        params["starting_after"] = seen[-1]
    assert seen == [ids[4], ids[3], ids[2], ids[0]]
    back = await stripe_http.call("GET", "/v1/accounts", params={"ending_before": ids[2]})
    assert [a["id"] for a in back.body["data"]] == [ids[4], ids[3]]
    refused = await stripe_http.call("GET", "/v1/accounts", headers={"Stripe-Account": ids[0]})
    assert refused.status == 403


async def test_idempotency_keys_are_scoped_per_account_acted_as(stripe_http: StripeHttp) -> None:
    """The same Idempotency-Key used as the platform and as a connected account are two
    requests (Stripe scopes keys to the account)."""
    [acct] = await connect(stripe_http)
    [theirs] = await accounts_on(stripe_http, acct, 1)
    ours = (await stripe_http.account_ids())[0]
    first = await stripe_http.disconnect(ours, headers={"Idempotency-Key": "shared-k"})
    second = await stripe_http.disconnect(
        theirs, headers={"Idempotency-Key": "shared-k", "Stripe-Account": acct}
    )
    assert first.status == second.status == 200
    assert second.body["id"] == theirs and "Idempotent-Replayed" not in second.headers


def _sdk_list(url: str, acct: str) -> str:
    client = stripe.StripeClient(
        DEFAULT_API_KEY, base_addresses={"api": url}, max_network_retries=0
    )
    try:
        client.v1.financial_connections.accounts.list(options={"stripe_account": acct})
    except stripe.PermissionError as exc:
        error = exc.error
        return f"{exc.http_status} {error.code if error is not None else None}"
    return "no error"


async def test_stripe_python_raises_permission_error_for_a_revoked_account(
    stripe_http: StripeHttp, emulator: RunningEmulator
) -> None:
    """stripe-python maps the emulator's 403 to ``stripe.PermissionError`` (account_invalid)."""
    [acct] = await connect(stripe_http)
    await stripe_http.admin("POST", f"/connected-accounts/{acct}/revoke")
    assert await asyncio.to_thread(_sdk_list, emulator.url, acct) == "403 account_invalid"


@given(st.integers(0, 60), st.sets(st.integers(0, 59)))
def test_without_is_the_sorted_complement(total: int, excluded: set[int]) -> None:
    """``Without`` indexes, slices, iterates and bisects like the materialised complement."""
    kept = sorted(excluded & set(range(total)))
    lazy = Without(total, kept)
    eager = [i for i in range(total) if i not in excluded]
    assert len(lazy) == len(eager)
    assert [lazy[i] for i in range(len(lazy))] == eager == list(lazy)
    assert list(lazy[1:5]) == eager[1:5]
