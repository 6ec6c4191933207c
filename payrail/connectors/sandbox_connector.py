"""The connector for payrail's sandbox PSP (docs/sandbox-psp.md), over real HTTP.

Whether a failed call may have charged is decided by what reached the wire: a refused
connection sent nothing (technical); a timeout or a dropped connection after sending may
have been processed (in doubt). The sandbox documents one 5xx as unprocessed, 503
`unavailable`, so that one alone is technical; any other 5xx is in doubt.

Its webhooks are signed as Stripe's are (docs/sandbox-psp.md, "Webhooks"); `parse_webhook`
checks them the way Stripe's libraries check `Stripe-Signature`.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Mapping
from datetime import date
from typing import Any

import httpx
import orjson

from payrail.connectors.base import (
    PAYMENT_STATUSES,
    Authorization,
    ConnectorError,
    ProviderEvent,
    ProviderPayment,
    ProviderRefund,
    WebhookRejected,
)
from payrail.connectors.declines import classify, classify_transport

PROVIDER = "sandbox"
SIGNATURE_HEADER = "Sandbox-Signature"
DEFAULT_WEBHOOK_SECRET = "whsec_sandbox"
# How far a delivery's signed timestamp may be from now, either way: Stripe's default. A
# captured delivery replayed later than this is refused.
WEBHOOK_TOLERANCE_SECONDS = 300
# A day's report of a busy account is large; it is fetched once a day, off the payment path.
REPORT_TIMEOUT = 120.0
# Unix seconds have 10 digits until 2286; more is garbage (and int() of a huge string is slow).
_MAX_TIMESTAMP_DIGITS = 12


def _unreadable(exc: Exception) -> ConnectorError:
    """An answer we cannot read came back to a request that was sent: it may have charged."""
    error = ConnectorError(classify_transport(sent=True, status=None))
    error.__cause__ = exc
    return error


def _payment(body: dict[str, Any]) -> ProviderPayment:
    try:
        if body["status"] not in PAYMENT_STATUSES:
            # A status we do not know may mean it is still being worked on: never read
            # it as a failure the customer could retry.
            raise ValueError(f"unknown payment status {body['status']!r}")
        code = body.get("decline_code")
        return ProviderPayment(
            provider_id=body["id"],
            status=body["status"],
            amount=body["amount"],
            amount_captured=body["amount_captured"],
            amount_refunded=body["amount_refunded"],
            fee=body["fee"],
            decline=classify(PROVIDER, code) if body["status"] == "declined" and code else None,
        )
    except (KeyError, TypeError, AttributeError, ValueError) as exc:
        raise _unreadable(exc) from exc


def _refund(body: dict[str, Any]) -> ProviderRefund:
    try:
        return ProviderRefund(body["id"], body["payment"], body["amount"], body["status"])
    except (KeyError, TypeError) as exc:
        raise _unreadable(exc) from exc


class SandboxConnector:
    provider = PROVIDER

    def __init__(
        self,
        base_url: str,
        secret: str,
        *,
        timeout: float = 10.0,
        transport: httpx.AsyncBaseTransport | None = None,
        webhook_secret: str = DEFAULT_WEBHOOK_SECRET,
    ) -> None:
        if not webhook_secret:
            raise ValueError("the webhook secret must not be empty")
        self._webhook_secret = webhook_secret.encode()
        self._http = httpx.AsyncClient(
            base_url=base_url,
            headers={"Authorization": f"Bearer {secret}"},
            timeout=httpx.Timeout(timeout, connect=min(timeout, 2.0)),
            transport=transport,
        )

    async def aclose(self) -> None:
        await self._http.aclose()

    async def _call(
        self, method: str, path: str, *, key: str | None = None, **kwargs: Any
    ) -> dict[str, Any]:
        headers = {"Idempotency-Key": key} if key is not None else {}
        try:
            reply = await self._http.request(method, path, headers=headers, **kwargs)
        except (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout) as exc:
            raise ConnectorError(classify_transport(sent=False, status=None)) from exc
        except httpx.HTTPError as exc:
            raise ConnectorError(classify_transport(sent=True, status=None)) from exc
        if 200 <= reply.status_code < 300:
            try:
                body: dict[str, Any] = reply.json()
                return body
            except ValueError as exc:
                raise _unreadable(exc) from exc
        if reply.status_code < 400:
            # A redirect or an informational answer to a request that was sent: it may
            # have been processed, and it says nothing about how.
            raise _unreadable(ValueError(f"HTTP {reply.status_code}"))
        code = _error_code(reply)
        if reply.status_code == 503 and code == "unavailable":
            raise ConnectorError(classify_transport(sent=False, status=None))
        if reply.status_code == 402 and code is not None:
            raise ConnectorError(classify(PROVIDER, code))
        raise ConnectorError(classify_transport(sent=True, status=reply.status_code))

    async def authorize(self, request: Authorization) -> ProviderPayment:
        card = request.card
        body = {
            "amount": request.amount,
            "currency": request.currency.lower(),
            "capture": request.capture,
            "card": {
                "number": card.number,
                "exp_month": card.exp_month,
                "exp_year": card.exp_year,
                **({"cvc": card.cvc} if card.cvc is not None else {}),
            },
            "reference": request.reference,
        }
        return _payment(
            await self._call("POST", "/v1/payments", key=request.idempotency_key, json=body)
        )

    async def capture(self, idempotency_key: str, provider_id: str, amount: int) -> ProviderPayment:
        path = f"/v1/payments/{provider_id}/capture"
        return _payment(
            await self._call("POST", path, key=idempotency_key, json={"amount": amount})
        )

    async def void(self, idempotency_key: str, provider_id: str) -> ProviderPayment:
        path = f"/v1/payments/{provider_id}/void"
        return _payment(await self._call("POST", path, key=idempotency_key, json={}))

    async def refund(self, idempotency_key: str, provider_id: str, amount: int) -> ProviderRefund:
        path = f"/v1/payments/{provider_id}/refunds"
        return _refund(await self._call("POST", path, key=idempotency_key, json={"amount": amount}))

    async def payment_status(self, idempotency_key: str) -> ProviderPayment | None:
        found = await self._call("GET", "/v1/payments", params={"idempotency_key": idempotency_key})
        return _payment(found["data"][0]) if found["data"] else None

    async def refund_status(self, idempotency_key: str) -> ProviderRefund | None:
        found = await self._call("GET", "/v1/refunds", params={"idempotency_key": idempotency_key})
        return _refund(found["data"][0]) if found["data"] else None

    def parse_webhook(self, headers: Mapping[str, str], body: bytes, now: int) -> ProviderEvent:
        return parse_event(self._webhook_secret, headers, body, now)

    async def settlement_report(self, report_date: date, format: str) -> bytes:
        params = {"date": report_date.isoformat(), "format": format}
        try:
            reply = await self._http.get(
                "/sandbox/settlement_reports", params=params, timeout=REPORT_TIMEOUT
            )
        except httpx.HTTPError as exc:
            raise ConnectorError(classify_transport(sent=False, status=None)) from exc
        if reply.status_code != 200:
            raise ConnectorError(classify_transport(sent=True, status=reply.status_code))
        return reply.content


def _header(headers: Mapping[str, str], name: str) -> str | None:
    # Framework header maps ignore case; a plain dict may not.
    value = headers.get(name)
    if value is not None:
        return value
    wanted = name.lower()
    return next((value for key, value in headers.items() if key.lower() == wanted), None)


def _signature_parts(header: str) -> tuple[int, list[bytes]]:
    """The timestamp and every ``v1`` signature of ``t=<unix>,v1=<hex>[,v1=<hex>...]``;
    other schemes are ignored, as Stripe's libraries ignore them."""
    timestamps: list[str] = []
    signatures: list[bytes] = []
    for item in header.split(","):
        scheme, _, value = item.strip().partition("=")
        if scheme == "t":
            timestamps.append(value)
        elif scheme == "v1" and value:
            signatures.append(value.encode())
    if len(timestamps) != 1 or not signatures:
        raise WebhookRejected(f"{SIGNATURE_HEADER} needs one timestamp and a v1 signature.")
    stamp = timestamps[0]
    if not (stamp.isascii() and stamp.isdigit() and len(stamp) <= _MAX_TIMESTAMP_DIGITS):
        raise WebhookRejected(f"{SIGNATURE_HEADER} has a malformed timestamp.")
    return int(stamp), signatures


def _verify(secret: bytes, headers: Mapping[str, str], body: bytes, now: int) -> None:
    header = _header(headers, SIGNATURE_HEADER)
    if header is None:
        raise WebhookRejected(f"The {SIGNATURE_HEADER} header is missing.")
    timestamp, signatures = _signature_parts(header)
    expected = hmac.new(secret, f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()
    # Every candidate is compared in full, in constant time: which one matched, or how much
    # of a forgery did, leaks nothing. Several v1 values come while a secret is rolled.
    matched = False
    for candidate in signatures:
        matched |= hmac.compare_digest(expected.encode(), candidate)
    if not matched:
        raise WebhookRejected(f"No {SIGNATURE_HEADER} v1 signature matches the body.")
    # Checked after the signature, so the timestamp judged is one the provider signed.
    if abs(now - timestamp) > WEBHOOK_TOLERANCE_SECONDS:
        raise WebhookRejected(
            f"The webhook timestamp is more than {WEBHOOK_TOLERANCE_SECONDS} s from now."
        )


def _integer(value: object) -> int | None:
    return value if type(value) is int else None  # bool is an int subclass


def parse_event(secret: bytes, headers: Mapping[str, str], body: bytes, now: int) -> ProviderEvent:
    """A verified sandbox webhook as a `ProviderEvent` whose payload is the event's
    ``data.object``; `WebhookRejected` otherwise."""
    _verify(secret, headers, body, now)
    try:
        event = orjson.loads(body)
    except orjson.JSONDecodeError:
        # from None: the decode error keeps the whole body in its ``doc``.
        raise WebhookRejected("The webhook body is not JSON.") from None
    if not isinstance(event, dict):
        raise WebhookRejected("The webhook body is not a sandbox event.")
    data = event.get("data")
    payload = data.get("object") if isinstance(data, dict) else None
    object_id = payload.get("id") if isinstance(payload, dict) else None
    event_id, event_type = event.get("id"), event.get("type")
    created, sequence = _integer(event.get("created")), _integer(event.get("sequence"))
    if (
        event.get("object") != "event"
        or not isinstance(event_id, str)
        or not event_id
        or not isinstance(event_type, str)
        or not isinstance(payload, dict)
        or not isinstance(object_id, str)
        or created is None
        or sequence is None
        or sequence < 1
    ):
        raise WebhookRejected("The webhook body is not a sandbox event.")
    return ProviderEvent(event_id, event_type, object_id, sequence, created, payload)


def _error_code(reply: httpx.Response) -> str | None:
    try:
        code = reply.json()["error"]["code"]
    except (ValueError, KeyError, TypeError):
        return None
    return code if isinstance(code, str) else None
