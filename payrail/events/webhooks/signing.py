"""Signing secrets and the two signature formats a delivery may carry.

One secret serves both: `whsec_` and the base64 of 32 random bytes. Stripe's format
uses the whole string as the HMAC key (as `stripe.Webhook.construct_event` does);
Standard Webhooks uses the bytes the base64 part decodes to (standardwebhooks.com).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
from typing import Literal

SignatureFormat = Literal["stripe", "standard_webhooks"]
PREFIX = "whsec_"


def new_secret() -> str:
    return PREFIX + base64.b64encode(secrets.token_bytes(32)).decode()


def stripe_headers(secret: str, timestamp: int, body: bytes) -> dict[str, str]:
    """`Stripe-Signature: t=...,v1=...`: hex HMAC-SHA256 of "{t}.{body}"."""
    signed = f"{timestamp}.".encode() + body
    digest = hmac.new(secret.encode(), signed, hashlib.sha256).hexdigest()
    return {"Stripe-Signature": f"t={timestamp},v1={digest}"}


def verify_stripe_signature(
    secret: str, header: str, body: bytes, *, now: int, tolerance: int = 300
) -> None:
    """Check a `Stripe-Signature` header against the raw body, as the receiver of a
    delivery does, and as `stripe.Webhook.construct_event` checks it (for a receiver
    without the SDK, such as `payrail demo`'s): one of its `v1` signatures is the HMAC of
    "{t}.{body}" under the secret, and `t` is no more than `tolerance` seconds before
    `now`. Raises ValueError saying what is wrong. Written apart from `stripe_headers`,
    from Stripe's description, so that it checks the signer rather than repeats it."""
    pairs = [part.strip().partition("=") for part in header.split(",")]
    timestamps = [value for key, _, value in pairs if key == "t"]
    signatures = [value for key, _, value in pairs if key == "v1"]
    if not timestamps or not timestamps[0].isascii() or not timestamps[0].isdigit():
        raise ValueError("the header has no timestamp (t=...)")
    if not signatures:
        raise ValueError("the header has no v1 signature")
    timestamp = int(timestamps[0])
    signed = f"{timestamp}.".encode() + body
    expected = hmac.new(secret.encode(), signed, hashlib.sha256).hexdigest()
    if not any(hmac.compare_digest(expected.encode(), s.encode()) for s in signatures):
        raise ValueError("no v1 signature matches the body")
    if timestamp < now - tolerance:
        raise ValueError(f"the timestamp is more than {tolerance} s old")


def standard_headers(secret: str, message_id: str, timestamp: int, body: bytes) -> dict[str, str]:
    """Standard Webhooks: base64 HMAC-SHA256 of "{id}.{timestamp}.{body}" under the
    secret's decoded bytes, in `webhook-signature` as `v1,<signature>`."""
    key = base64.b64decode(secret.removeprefix(PREFIX))
    signed = f"{message_id}.{timestamp}.".encode() + body
    digest = base64.b64encode(hmac.new(key, signed, hashlib.sha256).digest()).decode()
    return {
        "webhook-id": message_id,
        "webhook-timestamp": str(timestamp),
        "webhook-signature": f"v1,{digest}",
    }


def signature_headers(
    signature_format: SignatureFormat, secret: str, event_id: str, timestamp: int, body: bytes
) -> dict[str, str]:
    """The signature headers of one attempt. The event id is the Standard Webhooks
    message id: the same on every retry, so a receiver can drop duplicates by it."""
    if signature_format == "stripe":
        return stripe_headers(secret, timestamp, body)
    return standard_headers(secret, event_id, timestamp, body)
