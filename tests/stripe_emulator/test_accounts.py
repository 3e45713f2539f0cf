"""The seeded data set: deterministic, realistic, compact at a million accounts; id codec; paging."""

from __future__ import annotations

import time
from collections import Counter

import aiohttp
from hypothesis import given
from hypothesis import strategies as st

from stripe_emulator import run_emulator
from stripe_emulator.accounts import TWO_YEARS, AccountStore, page
from stripe_emulator.ids import IdCodec
from tests.stripe_emulator.conftest import ACCOUNTS_PATH, StripeHttp, small_config

REFERENCE = 1_780_000_000
SUBCATEGORIES = {
    "cash": {"checking", "savings", "other"},
    "credit": {"mortgage", "line_of_credit", "credit_card", "other"},
    "investment": {"other"},
    "other": {"other"},
}


def test_same_seed_same_data_other_seed_other_ids() -> None:
    """Two stores with one seed are identical; another seed gives other ids."""
    first, second = AccountStore(500, 3, REFERENCE), AccountStore(500, 3, REFERENCE)
    assert [first.get(i) for i in range(500)] == [second.get(i) for i in range(500)]
    other = AccountStore(500, 4, REFERENCE)
    assert {first.get(i)["id"] for i in range(500)}.isdisjoint(
        other.get(i)["id"] for i in range(500)
    )
    assert other.index_of(first.get(0)["id"]) is None


def test_fields_are_realistic_and_consistent() -> None:
    """Ids have Stripe's prefixes and lengths; categories pair with legal subcategories;
    timestamps fall in the two years before the reference; refreshes follow permissions."""
    store = AccountStore(2000, 1, REFERENCE)
    for index in range(store.total):
        account = store.get(index)
        assert account["id"].startswith("fca_") and len(account["id"]) == 28
        assert account["subcategory"] in SUBCATEGORIES[account["category"]]
        assert REFERENCE - TWO_YEARS <= account["created"] <= REFERENCE
        holder = account["account_holder"]
        assert holder[holder["type"]].startswith(
            "cus_" if holder["type"] == "customer" else "acct_"
        )
        for field, permission in (("balance", "balances"), ("transaction", "transactions")):
            refresh = account[f"{field}_refresh"]
            assert (refresh is not None) == (permission in account["permissions"])
            if refresh is not None:
                assert account["created"] <= refresh["last_attempted_at"] <= REFERENCE
                assert refresh["status"] in {"pending", "succeeded", "failed"}


def test_status_mix_and_holder_sizes() -> None:
    """Statuses mix active, inactive and disconnected; holders own 1 to 5 accounts, some several."""
    store = AccountStore(5000, 2, REFERENCE)
    statuses = Counter(store.status(i) for i in range(store.total))
    assert statuses["active"] > statuses["inactive"] > 0 and statuses["disconnected"] > 0
    holders = Counter(
        store.get(i)["account_holder"].get("customer") or store.get(i)["account_holder"]["account"]
        for i in range(store.total)
    )
    assert set(holders.values()) == {1, 2, 3, 4, 5}
    kinds = Counter(store.get(i)["account_holder"]["type"] for i in range(store.total))
    assert kinds["account"] > 0 and kinds["customer"] > kinds["account"]


def test_status_shortcut_matches_full_account() -> None:
    """`status(index)` agrees with the built account, before and after a change."""
    store = AccountStore(300, 5, REFERENCE)
    assert all(store.status(i) == store.get(i)["status"] for i in range(300))
    active = next(i for i in range(300) if store.status(i) == "active")
    assert store.disconnect(active)
    assert not store.disconnect(active)
    assert store.status(active) == store.get(active)["status"] == "disconnected"
    assert b'"disconnected"' in store.body(active)


def test_million_accounts_are_cheap() -> None:
    """A million accounts build in well under two seconds and any one is found by id."""
    started = time.perf_counter()
    store = AccountStore(1_000_000, 9, REFERENCE)
    assert time.perf_counter() - started < 2.0
    last = store.get(999_999)
    assert store.index_of(last["id"]) == 999_999
    holder = last["account_holder"]
    assert 999_999 in store.holder_indexes(holder["type"], holder[holder["type"]])


def test_id_codec_round_trips_and_rejects_foreign_ids() -> None:
    """Encoding then decoding gives the index back; tampered or foreign ids decode to None."""
    codec = IdCodec("fca_", 11, tag_len=12, lead="1")
    for index in (0, 1, 61, 62, 10**6, 2**40):
        assert codec.decode(codec.encode(index)) == index
    good = codec.encode(5)
    assert codec.decode(good[:-1] + ("A" if good[-1] != "A" else "B")) is None
    assert codec.decode("fca_1Pgc76B7WZ01zgkWqlYVCIub") is None
    assert codec.decode("cus_" + good[4:]) is None


@given(
    size=st.integers(0, 60),
    limit=st.integers(1, 10),
    cursor=st.integers(-1, 61),
    backwards=st.booleans(),
)
def test_page_matches_a_naive_model(size: int, limit: int, cursor: int, backwards: bool) -> None:
    """Property: `page` equals slicing the newest-first list around the cursor."""
    candidates = list(range(0, size * 2, 2))
    newest_first = candidates[::-1]
    if backwards:
        newer = [i for i in newest_first if i > cursor]
        expected = newer[-limit:]
        data, has_more = page(candidates, limit, None, cursor)
        assert (data, has_more) == (expected, len(newer) > limit)
    else:
        older = [i for i in newest_first if i < cursor]
        data, has_more = page(candidates, limit, cursor, None)
        assert (data, has_more) == (older[:limit], len(older) > limit)


async def test_million_account_emulator_serves_over_http(session: aiohttp.ClientSession) -> None:
    """An emulator of a million accounts starts fast and serves the newest and oldest ones."""
    config = small_config(accounts=1_000_000)
    async with run_emulator(config) as emulator:
        stripe_http = StripeHttp(emulator.url, session)
        newest = await stripe_http.call("GET", ACCOUNTS_PATH, params={"limit": "1"})
        assert newest.body["has_more"] is True
        oldest_id = emulator.state.accounts.account_ids.encode(0)
        oldest = await stripe_http.call("GET", f"{ACCOUNTS_PATH}/{oldest_id}")
        assert oldest.status == 200
        assert oldest.body["created"] < newest.body["data"][0]["created"]


def test_json_cache_is_bounded_and_invalidated() -> None:
    """Unit: the JSON cache never exceeds its size and never serves a body from before a change."""
    store = AccountStore(100, 4, REFERENCE, cache_size=10)
    for index in range(100):
        store.body(index)
    assert len(store._bodies) == 10
    active = next(i for i in range(90, 100) if store.status(i) == "active")
    assert b'"status":"active"' in store.body(active)
    store.disconnect(active)
    assert b'"status":"disconnected"' in store.body(active)
