"""The admin API: account fixtures, user disconnects, the request log and run-time config."""

from __future__ import annotations

import aiohttp
import pytest

from stripe_emulator.requestlog import LoggedRequest, RequestLog
from tests.stripe_emulator.conftest import ACCOUNTS_PATH, StripeHttp


async def test_accounts_filter_by_status_and_limit(stripe_http: StripeHttp) -> None:
    """status= keeps only matching accounts; limit= caps how many come back; 0 means all."""
    everything = (await stripe_http.admin("GET", "/accounts?limit=0"))["data"]
    assert len(everything) == 40
    statuses = {a["status"] for a in everything}
    assert statuses <= {"active", "inactive", "disconnected"}
    for status in statuses:
        found = (await stripe_http.admin("GET", f"/accounts?status={status}&limit=0"))["data"]
        assert found == [a for a in everything if a["status"] == status]
    assert len((await stripe_http.admin("GET", "/accounts?limit=3"))["data"]) == 3


async def test_create_accounts_for_a_customer(stripe_http: StripeHttp) -> None:
    """POST /accounts creates accounts of the given status for the given customer."""
    body = {"count": 3, "status": "inactive", "customer": "cus_Fixture1"}
    created = (await stripe_http.admin("POST", "/accounts", body))["data"]
    assert len(created) == 3
    assert all(a["status"] == "inactive" for a in created)
    assert all(
        a["account_holder"] == {"type": "customer", "customer": "cus_Fixture1"} for a in created
    )
    listed = await stripe_http.admin("GET", "/accounts?customer=cus_Fixture1")
    assert [a["id"] for a in listed["data"]] == [a["id"] for a in created]
    reply = await stripe_http.call("GET", f"{ACCOUNTS_PATH}/{created[0]['id']}")
    assert reply.status == 200


async def test_created_accounts_without_holder_share_a_new_customer(
    stripe_http: StripeHttp,
) -> None:
    """Accounts created with no holder all belong to one new customer that owns nothing else."""
    created = (await stripe_http.admin("POST", "/accounts", {"count": 2}))["data"]
    holders = {a["account_holder"]["customer"] for a in created}
    assert len(holders) == 1
    (customer,) = holders
    assert customer.startswith("cus_")
    reply = await stripe_http.call(
        "GET", ACCOUNTS_PATH, params={"account_holder[customer]": customer}
    )
    assert {a["id"] for a in reply.body["data"]} == {a["id"] for a in created}


async def test_create_rejects_both_holders(stripe_http: StripeHttp) -> None:
    """customer and account together are refused with 400."""
    with pytest.raises(aiohttp.ClientResponseError) as raised:
        await stripe_http.admin("POST", "/accounts", {"customer": "cus_A", "account": "acct_B"})
    assert raised.value.status == 400


async def test_user_disconnect_changes_the_account(stripe_http: StripeHttp) -> None:
    """A user disconnect at the bank makes the account disconnected for the API too."""
    account_id = (await stripe_http.account_ids())[0]
    changed = await stripe_http.admin("POST", f"/accounts/{account_id}/user-disconnect")
    assert changed["status"] == "disconnected"
    reply = await stripe_http.call("GET", f"{ACCOUNTS_PATH}/{account_id}")
    assert reply.body["status"] == "disconnected"


async def test_unknown_account_is_404(stripe_http: StripeHttp) -> None:
    """The admin API answers 404 for an account that does not exist."""
    with pytest.raises(aiohttp.ClientResponseError) as raised:
        await stripe_http.admin("GET", "/accounts/fca_missing")
    assert raised.value.status == 404


async def test_request_log_records_and_clears(stripe_http: StripeHttp) -> None:
    """Every /v1 call is logged with its fields; admin calls are not; DELETE clears the log."""
    account_id = (await stripe_http.account_ids())[0]
    await stripe_http.disconnect(account_id, headers={"Idempotency-Key": "log-1"})
    log = (await stripe_http.admin("GET", "/requests"))["data"]
    assert len(log) == 1
    entry = log[0]
    assert set(entry) == {
        "ts", "end_ts", "method", "path", "account_id", "status", "api_key_suffix",
        "idempotency_key", "stripe_account", "replayed", "limiter", "request_id", "fault",
    }  # fmt: skip
    assert (entry["method"], entry["status"], entry["idempotency_key"]) == ("POST", 200, "log-1")
    await stripe_http.admin("DELETE", "/requests")
    assert (await stripe_http.admin("GET", "/requests"))["data"] == []


async def test_config_masks_secrets_and_updates(stripe_http: StripeHttp) -> None:
    """GET /config never shows API keys; POST /config changes the mode and limits."""
    config = await stripe_http.admin("GET", "/config")
    assert stripe_http.api_key not in str(config)
    assert config["limits"] is None
    updated = await stripe_http.admin(
        "POST", "/config", {"already_disconnected_mode": "400", "limits": {"endpoint_rate": 5}}
    )
    assert updated["already_disconnected_mode"] == "400"
    assert updated["limits"]["endpoint_rate"] == 5
    cleared = await stripe_http.admin("POST", "/config", {"limits": None})
    assert cleared["limits"] is None
    assert cleared["already_disconnected_mode"] == "400"


async def test_bad_config_is_400(stripe_http: StripeHttp) -> None:
    """An invalid config update is refused with 400 and changes nothing."""
    with pytest.raises(aiohttp.ClientResponseError) as raised:
        await stripe_http.admin("POST", "/config", {"already_disconnected_mode": "500"})
    assert raised.value.status == 400
    assert (await stripe_http.admin("GET", "/config"))["already_disconnected_mode"] == "200"


def test_request_log_is_bounded_and_filters_by_time() -> None:
    """Unit: the log keeps only its newest `size` entries; `since` keeps later arrivals."""
    log = RequestLog(size=3)
    for n in range(5):
        log.append(
            LoggedRequest(
                float(n), float(n), "GET", "/", None, 200, "abcd", None, None, False, None, f"r{n}"
            )
        )
    assert [entry["request_id"] for entry in log.render()] == ["r2", "r3", "r4"]
    assert [entry["request_id"] for entry in log.render(since=4.0)] == ["r4"]
