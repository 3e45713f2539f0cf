"""Verification of Stripe's ``Stripe-Signature`` header, as ``stripe.Webhook.construct_event`` does.

The header is ``t=<unix>,v1=<hex>[,v1=<hex>…]``; each ``v1`` is HMAC-SHA256, keyed with an endpoint
secret, of ``"{t}.{raw body}"``. The payload is accepted if any ``v1`` matches any configured
secret (several during a rotation), compared in constant time, and ``t`` is no older than the
tolerance. Error messages never contain a secret or a signature.
"""

from __future__ import annotations

import hashlib
import hmac
import time

from pydantic import SecretStr


class SignatureError(ValueError):
    """The payload is not provably from Stripe (missing, malformed, wrong or stale signature)."""


def verify_signature(
    payload: bytes,
    header: str | None,
    secrets: list[SecretStr],
    *,
    tolerance_seconds: int = 300,
    now: float | None = None,
) -> int:
    """Return the signature's timestamp if ``payload`` is signed; raise :class:`SignatureError`."""
    if not header:
        raise SignatureError("no Stripe-Signature header")
    timestamp, signatures = _parse(header)
    if not signatures:
        raise SignatureError("no v1 signature in Stripe-Signature")
    signed = f"{timestamp}.".encode() + payload
    matched = False
    for secret in secrets:
        expected = hmac.new(secret.get_secret_value().encode(), signed, hashlib.sha256).hexdigest()
        for candidate in signatures:
            matched |= hmac.compare_digest(expected, candidate)
    if not matched:
        raise SignatureError("no signature matches the payload")
    if (now if now is not None else time.time()) - timestamp > tolerance_seconds:
        raise SignatureError("signature timestamp is outside the tolerance")
    return timestamp


def sign_payload(payload: bytes, secret: SecretStr, timestamp: int) -> str:
    """The ``Stripe-Signature`` header Stripe would send for ``payload`` signed at ``timestamp``
    (for self-checks such as ``fcd doctor``; the secret never appears in the result)."""
    signed = f"{timestamp}.".encode() + payload
    digest = hmac.new(secret.get_secret_value().encode(), signed, hashlib.sha256).hexdigest()
    return f"t={timestamp},v1={digest}"


def _parse(header: str) -> tuple[int, list[str]]:
    timestamp: int | None = None
    signatures: list[str] = []
    for item in header.split(","):
        key, sep, value = item.strip().partition("=")
        if not sep:
            continue
        if key == "t":
            try:
                timestamp = int(value)
            except ValueError:
                raise SignatureError("malformed timestamp in Stripe-Signature") from None
        elif key == "v1":
            signatures.append(value)
    if timestamp is None:
        raise SignatureError("no timestamp in Stripe-Signature")
    return timestamp, signatures
