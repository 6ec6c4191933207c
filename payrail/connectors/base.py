"""The one interface every PSP connector implements, in typed values.

A connector answers with what the provider decided (`ProviderPayment`, `ProviderRefund`,
a decline included) or raises `ConnectorError` when no decision came back. The error's
classification says whether the request may have been processed (`in_doubt`: ask the
provider, never charge again) or certainly was not (`technical`: retry, or fail over).
Every call carries the caller's idempotency key, deterministic per attempt, so a retry
of the same attempt can never charge twice.

Providers also report changes on their own, by webhook: `parse_webhook` checks that a
delivery is the provider's (signature and age) and turns it into a `ProviderEvent`, or
raises `WebhookRejected`. Deliveries may repeat (dedupe on `ProviderEvent.id`) and arrive
out of order (drop one whose `sequence` is below the last applied for its object).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date
from typing import Any, Literal, Protocol, get_args

from payrail.connectors.declines import Classification, Decision
from payrail.vault.service import CardSecret

PaymentStatus = Literal["authorized", "captured", "declined", "requires_authentication", "voided"]
PAYMENT_STATUSES: frozenset[str] = frozenset(get_args(PaymentStatus))


@dataclass(frozen=True, slots=True)
class Authorization:
    idempotency_key: str
    amount: int
    currency: str  # ISO 4217, upper case
    capture: bool
    card: CardSecret
    reference: str  # payrail's id for the attempt, echoed in the provider's reports


@dataclass(frozen=True, slots=True)
class ProviderPayment:
    provider_id: str
    status: PaymentStatus
    amount: int
    amount_captured: int
    amount_refunded: int
    fee: int
    decline: Classification | None  # when status is "declined"


@dataclass(frozen=True, slots=True)
class ProviderRefund:
    provider_id: str
    payment_provider_id: str
    amount: int
    status: Literal["pending", "succeeded", "failed"]


@dataclass(frozen=True, slots=True)
class ProviderEvent:
    id: str  # the provider's event id, for deduplication
    type: str  # provider's type, e.g. "payment.captured"
    object_id: str  # the payment/refund/dispute id at the provider
    sequence: int  # per-object order; older ones are stale
    created: int
    payload: dict[str, Any]  # the object the event is about, as the provider sent it


class WebhookRejected(Exception):
    """Not a delivery to trust: bad or missing signature, too old (or new), unparsable.
    The message says which, never quoting the body or the secret; answer 400."""


class ConnectorError(Exception):
    """No decision came back. `classification.decision` is TECHNICAL (not processed) or
    IN_DOUBT (may have been processed)."""

    def __init__(self, classification: Classification) -> None:
        super().__init__(classification.code)
        self.classification = classification

    @property
    def in_doubt(self) -> bool:
        return self.classification.decision is Decision.IN_DOUBT


class Connector(Protocol):
    provider: str

    async def authorize(self, request: Authorization) -> ProviderPayment: ...

    async def capture(
        self, idempotency_key: str, provider_id: str, amount: int
    ) -> ProviderPayment: ...

    async def void(self, idempotency_key: str, provider_id: str) -> ProviderPayment: ...

    async def refund(
        self, idempotency_key: str, provider_id: str, amount: int
    ) -> ProviderRefund: ...

    async def payment_status(self, idempotency_key: str) -> ProviderPayment | None:
        """What the provider made of the request sent with this key; None if it never
        processed one (so the attempt certainly did not charge)."""
        ...

    async def refund_status(self, idempotency_key: str) -> ProviderRefund | None: ...

    def parse_webhook(self, headers: Mapping[str, str], body: bytes, now: int) -> ProviderEvent:
        """The event in a webhook delivery, once its signature over the raw ``body`` and
        its timestamp (against ``now``, unix seconds) check out; else `WebhookRejected`."""
        ...

    async def settlement_report(self, report_date: date, format: str) -> bytes:
        """The provider's settlement report of a day (UTC), as the file it publishes, in
        `format` (stripe, paypal, adyen) where it offers several; `ConnectorError` when it
        cannot be had (not out yet, provider down)."""
        ...
