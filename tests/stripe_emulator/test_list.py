"""The list endpoint: envelope, holder filters, limits and cursors, as Stripe pages."""

from __future__ import annotations

from typing import Any

from tests.stripe_emulator.conftest import ACCOUNTS_PATH, StripeHttp


async def _all_ids(stripe_http: StripeHttp, **params: str) -> list[str]:
    ids: list[str] = []
    cursor: dict[str, str] = {}
    while True:
        reply = await stripe_http.call(
            "GET", ACCOUNTS_PATH, params={"limit": "7", **params, **cursor}
        )
        assert reply.status == 200
        ids += [account["id"] for account in reply.body["data"]]
        if not reply.body["has_more"]:
            return ids
        cursor = {"starting_after": ids[-1]}


async def test_envelope_and_default_limit(stripe_http: StripeHttp) -> None:
    """A list answers {object: list, data, has_more, url}, ten items by default."""
    reply = await stripe_http.call("GET", ACCOUNTS_PATH)
    assert reply.status == 200
    assert reply.body["object"] == "list"
    assert reply.body["url"] == ACCOUNTS_PATH
    assert len(reply.body["data"]) == 10
    assert reply.body["has_more"] is True


async def test_paging_visits_every_account_once_newest_first(stripe_http: StripeHttp) -> None:
    """starting_after pages through all accounts, each once, in descending `created` order."""
    ids = await _all_ids(stripe_http)
    assert len(ids) == len(set(ids)) == 40
    created = []
    for account_id in ids[:10]:
        reply = await stripe_http.call("GET", f"{ACCOUNTS_PATH}/{account_id}")
        created.append(reply.body["created"])
    assert created == sorted(created, reverse=True)


async def test_ending_before_pages_backwards(stripe_http: StripeHttp) -> None:
    """ending_before returns the items just before the cursor, newest first, with has_more."""
    ids = await _all_ids(stripe_http)
    reply = await stripe_http.call(
        "GET", ACCOUNTS_PATH, params={"limit": "3", "ending_before": ids[10]}
    )
    assert [a["id"] for a in reply.body["data"]] == ids[7:10]
    assert reply.body["has_more"] is True
    first = await stripe_http.call(
        "GET", ACCOUNTS_PATH, params={"limit": "3", "ending_before": ids[2]}
    )
    assert [a["id"] for a in first.body["data"]] == ids[0:2]
    assert first.body["has_more"] is False


async def test_customer_filter_returns_only_that_customers_accounts(
    stripe_http: StripeHttp,
) -> None:
    """account_holder[customer] returns exactly the accounts that customer holds."""
    every: list[dict[str, Any]] = (await stripe_http.admin("GET", "/accounts?limit=0"))["data"]
    holders = [a["account_holder"] for a in every]
    customer = next(h["customer"] for h in holders if h["type"] == "customer")
    expected = {a["id"] for a in every if a["account_holder"].get("customer") == customer}
    got = await _all_ids(stripe_http, **{"account_holder[customer]": customer})
    assert set(got) == expected
    assert len(got) == len(expected)


async def test_account_filter_returns_connected_account_holdings(stripe_http: StripeHttp) -> None:
    """account_holder[account] returns the accounts held by that connected account."""
    every: list[dict[str, Any]] = (await stripe_http.admin("GET", "/accounts?limit=0"))["data"]
    created = await stripe_http.admin("POST", "/accounts", {"count": 2, "account": "acct_1Test"})
    got = await _all_ids(stripe_http, **{"account_holder[account]": "acct_1Test"})
    assert set(got) == {a["id"] for a in created["data"]}
    connected = [a for a in every if a["account_holder"]["type"] == "account"]
    for account in connected[:1]:
        holder = account["account_holder"]["account"]
        assert account["id"] in await _all_ids(stripe_http, **{"account_holder[account]": holder})


async def test_unknown_customer_lists_nothing(stripe_http: StripeHttp) -> None:
    """A customer that holds no accounts gets an empty list, not an error."""
    reply = await stripe_http.call(
        "GET", ACCOUNTS_PATH, params={"account_holder[customer]": "cus_Nobody"}
    )
    assert reply.status == 200
    assert reply.body["data"] == []
    assert reply.body["has_more"] is False


async def test_customer_and_account_filters_are_exclusive(stripe_http: StripeHttp) -> None:
    """Giving both account_holder[customer] and account_holder[account] is a 400."""
    params = {"account_holder[customer]": "cus_A", "account_holder[account]": "acct_B"}
    reply = await stripe_http.call("GET", ACCOUNTS_PATH, params=params)
    assert reply.status == 400
    assert reply.body["error"]["type"] == "invalid_request_error"


async def test_limit_bounds(stripe_http: StripeHttp) -> None:
    """limit must be an integer from 1 to 100; 100 is allowed."""
    for bad in ("0", "101", "ten"):
        reply = await stripe_http.call("GET", ACCOUNTS_PATH, params={"limit": bad})
        assert reply.status == 400, bad
        assert reply.body["error"]["param"] == "limit"
    reply = await stripe_http.call("GET", ACCOUNTS_PATH, params={"limit": "100"})
    assert len(reply.body["data"]) == 40


async def test_unknown_cursor_and_parameter_are_rejected(stripe_http: StripeHttp) -> None:
    """An unknown starting_after id, or an unknown parameter, is a 400 naming it."""
    reply = await stripe_http.call("GET", ACCOUNTS_PATH, params={"starting_after": "fca_x"})
    assert reply.status == 400
    assert reply.body["error"]["param"] == "starting_after"
    reply = await stripe_http.call("GET", ACCOUNTS_PATH, params={"status": "active"})
    assert reply.status == 400
    assert reply.body["error"]["param"] == "status"
