"""Stripe-style object ids: a type prefix and 24 random base62 characters."""

from __future__ import annotations

import secrets
import string

_ALPHABET = (string.ascii_letters + string.digits).encode()
# Maps each random byte to a base62 character in one C call. 256 is not a multiple of 62,
# so a few characters are slightly likelier: ~141 bits of randomness remain, plenty for
# unguessable, collision-free ids.
_TO_BASE62 = bytes(_ALPHABET[i % len(_ALPHABET)] for i in range(256))


def new_id(prefix: str) -> str:
    return f"{prefix}_{secrets.token_bytes(24).translate(_TO_BASE62).decode()}"
