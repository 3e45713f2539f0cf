"""Operator tokens and session cookies: parsing, constant-time lookup, forgery and expiry."""

from __future__ import annotations

import pytest
from pydantic import SecretStr

from producer.dashboard.auth import (
    SESSION_SECONDS,
    BadOperatorTokens,
    operator_for_token,
    operator_from_cookie,
    parse_operator_tokens,
    session_cookie,
)

TOKENS = parse_operator_tokens(
    SecretStr("alice:tok_alice_0123456789ab, bob.ops:tok_bob_0123456789abcd")
)


def test_tokens_parse_and_bad_config_never_echoes_a_token() -> None:
    """name:token pairs parse; malformed entries and short tokens raise without the token."""
    assert sorted(TOKENS) == ["alice", "bob.ops"]
    assert parse_operator_tokens(None) == {}
    with pytest.raises(BadOperatorTokens) as short:
        parse_operator_tokens(SecretStr("carol:short"))
    assert "short" not in str(short.value).replace("shorter", "")
    with pytest.raises(BadOperatorTokens, match="entry 1"):
        parse_operator_tokens(SecretStr("no-colon-here-0123456789"))


def test_token_identifies_its_operator_and_nothing_else() -> None:
    """The presented token maps to its operator; unknown or empty tokens map to no one."""
    assert operator_for_token("tok_bob_0123456789abcd", TOKENS) == "bob.ops"
    assert operator_for_token("tok_bob_0123456789abce", TOKENS) is None
    assert operator_for_token("", TOKENS) is None


def test_cookie_round_trip_forgery_revocation_and_expiry() -> None:
    """A session cookie names its operator until it expires, is tampered with, or the
    operator's token is removed; it never contains the token."""
    cookie = session_cookie("bob.ops", TOKENS, now=1000.0)
    assert "tok_bob" not in cookie
    assert operator_from_cookie(cookie, TOKENS, now=1000.0 + 60) == "bob.ops"
    assert operator_from_cookie(cookie, TOKENS, now=1001.0 + SESSION_SECONDS) is None
    forged = cookie.replace("bob.ops", "alice", 1)
    assert operator_from_cookie(forged, TOKENS, now=1000.0) is None
    assert operator_from_cookie(cookie, {"alice": TOKENS["alice"]}, now=1000.0) is None
    for junk in (None, "", "a.b", "alice.notanumber.sig"):
        assert operator_from_cookie(junk, TOKENS) is None
