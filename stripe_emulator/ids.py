"""Stripe-looking object ids that encode their own index, so a million accounts need no id table.

An id is a prefix, then the index scrambled by a seeded bijection of 64-bit integers written in
base 62 (11 characters), then a few characters of a keyed hash that make ids of different seeds
(and made-up ids) fail to decode. `IdCodec.decode` returns the index, or None for a foreign id.
"""

from __future__ import annotations

import hashlib
import string

ALPHABET = string.digits + string.ascii_letters
_INDEX = {c: i for i, c in enumerate(ALPHABET)}
_MASK = (1 << 64) - 1
_MULTIPLIER = 0x9E3779B97F4A7C15  # odd, hence invertible modulo 2**64
_INVERSE = pow(_MULTIPLIER, -1, 1 << 64)
_BODY_LEN = 11


_PAIRS = [a + b for a in ALPHABET for b in ALPHABET]  # two digits per divmod: twice as fast


def to_base62(value: int, width: int) -> str:
    """The last `width` base-62 digits of `value`, left-padded with '0'."""
    parts = []
    while value:
        value, pair = divmod(value, 3844)
        parts.append(_PAIRS[pair])
    return "".join(reversed(parts))[-width:].rjust(width, "0")


def from_base62(text: str) -> int | None:
    """The integer `text` spells in base 62, or None if it has a character outside the alphabet."""
    value = 0
    for char in text:
        digit = _INDEX.get(char)
        if digit is None:
            return None
        value = value * 62 + digit
    return value


class IdCodec:
    """Encodes and decodes indexes as ids of one prefix (`fca_`, `cus_`, ...) for one seed."""

    def __init__(self, prefix: str, seed: int, tag_len: int, lead: str = "") -> None:
        self.prefix = prefix
        self._lead = lead
        self._tag_len = tag_len
        self._key = hashlib.blake2b(f"{prefix}{seed}".encode(), digest_size=16).digest()
        self._offset = int.from_bytes(self._key[:8], "little")
        self._head = len(prefix) + len(lead)

    def encode(self, index: int) -> str:
        """The id of `index`."""
        scrambled = ((index + self._offset) * _MULTIPLIER) & _MASK
        return f"{self.prefix}{self._lead}{to_base62(scrambled, _BODY_LEN)}{self._tag(index)}"

    def decode(self, object_id: str) -> int | None:
        """The index `object_id` encodes, or None if this codec did not make it."""
        head = self._head
        if len(object_id) != head + _BODY_LEN + self._tag_len:
            return None
        if not object_id.startswith(self.prefix + self._lead):
            return None
        scrambled = from_base62(object_id[head : head + _BODY_LEN])
        if scrambled is None or scrambled > _MASK:
            return None
        index = ((scrambled * _INVERSE) - self._offset) & _MASK
        if object_id[head + _BODY_LEN :] != self._tag(index):
            return None
        return index

    def _tag(self, index: int) -> str:
        digest = hashlib.blake2b(index.to_bytes(8, "little"), key=self._key, digest_size=8)
        return to_base62(int.from_bytes(digest.digest(), "little"), self._tag_len)
