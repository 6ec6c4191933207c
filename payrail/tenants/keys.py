"""API secret keys: shown once, stored as a SHA-256 digest.

The secret carries 192 random bits, so an unsalted digest cannot be brute-forced and
lets authentication find the key with one indexed lookup.
"""

from __future__ import annotations

import hashlib
import secrets


def new_secret(livemode: bool) -> str:
    return ("sk_live_" if livemode else "sk_test_") + secrets.token_urlsafe(24)


def digest(secret: str) -> bytes:
    return hashlib.sha256(secret.encode()).digest()


def redact(secret: str) -> str:
    """What an error message may show of a key: its mode prefix and last four."""
    prefix = secret[:8] if secret.startswith(("sk_test_", "sk_live_")) else ""
    return f"{prefix}{'*' * 12}{secret[-4:]}"
