"""Operator sign-in for the dashboard: a token per operator, then a signed session cookie.

``FCD_OPERATOR_TOKENS`` holds ``name:token`` pairs separated by commas; the name is what audit
records show as the operator. Signing in compares the presented token with every configured one
with ``hmac.compare_digest`` (no early exit), so timing does not reveal which token was close.

The cookie holds ``name.expiry.signature``, where the signature is an HMAC-SHA256 of
``name.expiry`` keyed by that operator's token: the token itself never leaves the sign-in form,
removing a token from the setting invalidates its sessions, and a forged or expired cookie is
simply "not signed in". The cookie is ``HttpOnly`` and ``SameSite=Strict`` (so another site cannot
post a re-queue with it) and scoped to ``/dashboard``; POSTs also reject a foreign ``Origin``.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
import time
from urllib.parse import urlsplit

from aiohttp import web
from pydantic import SecretStr

COOKIE = "fcd_operator"
COOKIE_PATH = "/dashboard"
SESSION_SECONDS = 12 * 3600
OPERATOR_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$")
MIN_TOKEN_CHARS = 16


class BadOperatorTokens(ValueError):
    """``FCD_OPERATOR_TOKENS`` cannot be read; the message never contains a token."""


def parse_operator_tokens(raw: SecretStr | None) -> dict[str, SecretStr]:
    """Operator name -> token; empty if unset (then nobody can sign in)."""
    if raw is None:
        return {}
    tokens: dict[str, SecretStr] = {}
    items = [item.strip() for item in raw.get_secret_value().split(",") if item.strip()]
    for position, item in enumerate(items, start=1):
        name, sep, token = item.partition(":")
        name, token = name.strip(), token.strip()
        if not sep or not OPERATOR_NAME_RE.match(name):
            raise BadOperatorTokens(f"FCD_OPERATOR_TOKENS entry {position} is not name:token")
        if len(token) < MIN_TOKEN_CHARS:
            raise BadOperatorTokens(
                f"FCD_OPERATOR_TOKENS: token of {name!r} is shorter than {MIN_TOKEN_CHARS} chars"
            )
        tokens[name] = SecretStr(token)
    return tokens


def operator_for_token(presented: str, tokens: dict[str, SecretStr]) -> str | None:
    """The operator whose token this is, comparing against every token in constant time."""
    given = presented.strip().encode("utf-8", "backslashreplace")
    found: str | None = None
    for name, token in tokens.items():
        if hmac.compare_digest(given, token.get_secret_value().encode()):
            found = name
    return found


def _signature(name: str, expiry: int, token: SecretStr) -> str:
    mac = hmac.new(token.get_secret_value().encode(), f"{name}.{expiry}".encode(), hashlib.sha256)
    return base64.urlsafe_b64encode(mac.digest()).decode().rstrip("=")


def session_cookie(name: str, tokens: dict[str, SecretStr], now: float | None = None) -> str:
    """A cookie value that proves ``name`` signed in, valid for :data:`SESSION_SECONDS`."""
    expiry = int((time.time() if now is None else now) + SESSION_SECONDS)
    return f"{name}.{expiry}.{_signature(name, expiry, tokens[name])}"


def operator_from_cookie(
    value: str | None, tokens: dict[str, SecretStr], now: float | None = None
) -> str | None:
    """The signed-in operator, or ``None`` for a missing, forged, revoked or expired cookie."""
    if not value:
        return None
    parts = value.rsplit(".", 2)
    if len(parts) != 3:
        return None
    name, expiry_text, signature = parts
    token = tokens.get(name)
    if token is None or not expiry_text.isdigit():
        return None
    expected = _signature(name, int(expiry_text), token)
    if not hmac.compare_digest(expected.encode(), signature.encode("utf-8", "backslashreplace")):
        return None
    if int(expiry_text) < (time.time() if now is None else now):
        return None
    return name


def set_session(response: web.StreamResponse, request: web.Request, value: str) -> None:
    response.set_cookie(
        COOKIE,
        value,
        max_age=SESSION_SECONDS,
        path=COOKIE_PATH,
        httponly=True,
        samesite="Strict",
        secure=request.secure,
    )


def clear_session(response: web.StreamResponse) -> None:
    response.del_cookie(COOKIE, path=COOKIE_PATH)


def same_origin(request: web.Request) -> bool:
    """False if the browser says the POST came from another site (defence beside SameSite)."""
    origin = request.headers.get("Origin")
    if origin is None or origin == "null":
        return origin is None
    return urlsplit(origin).netloc == request.host
