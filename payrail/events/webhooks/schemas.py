"""Parameters of /v1/webhook_endpoints and /v1/webhook_deliveries, in Stripe's shapes.

Messages never quote a URL as sent: merchants put tokens in webhook URLs."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import AfterValidator, Field

from payrail.api.pagination import ListParams
from payrail.api.schemas import Metadata, Params
from payrail.events.webhooks.addresses import MAX_URL
from payrail.events.webhooks.signing import SignatureFormat

# Every event type payrail writes to its outbox; `enabled_events` names these, or "*".
EVENT_TYPES = frozenset(
    {
        "merchant.created",
        "customer.created",
        "customer.updated",
        "customer.deleted",
        "payment_method.created",
        "payment_method.attached",
        "payment_method.detached",
        "ledger.account.created",
        "ledger.transaction.pending",
        "ledger.transaction.posted",
        "ledger.transaction.voided",
        "ledger.transaction.reversed",
        "connector_account.created",
        "connector_account.updated",
        "routing_rule.created",
        "routing_rule.deleted",
        "payment_intent.created",
        "payment_intent.updated",
        "payment_intent.succeeded",
        "payment_intent.amount_capturable_updated",
        "payment_intent.payment_failed",
        "payment_intent.requires_action",
        "payment_intent.canceled",
        "refund.created",
        "refund.updated",
        "refund.failed",
        "charge.dispute.created",
        "charge.dispute.updated",
        "charge.dispute.closed",
        "charge.dispute.funds_withdrawn",
        "charge.dispute.funds_reinstated",
        "webhook_endpoint.created",
        "webhook_endpoint.updated",
        "webhook_endpoint.deleted",
        "webhook_delivery.retry_scheduled",
        "product.created",
        "product.updated",
        "product.deleted",
        "price.created",
        "price.updated",
        "test_helpers.test_clock.created",
        "test_helpers.test_clock.advancing",
        "test_helpers.test_clock.ready",
        "test_helpers.test_clock.deleted",
        "customer.subscription.created",
        "customer.subscription.updated",
        "customer.subscription.deleted",
        "customer.subscription.paused",
        "customer.subscription.resumed",
        "invoice.created",
        "invoice.finalized",
        "invoice.paid",
        "invoice.payment_succeeded",
        "invoice.payment_failed",
        "invoice.updated",
        "invoice.voided",
        "invoice.marked_uncollectible",
        "credit_note.created",
        "credit_note.voided",
        "dunning_policy.updated",
        "reconciliation.run.completed",
        "reconciliation.break.opened",
        "reconciliation.break.escalated",
        "reconciliation.break.closed",
        "reconciliation.break.resolved",
    }
)
ALL_EVENTS = "*"
MAX_ENABLED_EVENTS = 200


def _event_type(value: str) -> str:
    if value != ALL_EVENTS and value not in EVENT_TYPES:
        raise ValueError(f"unknown event type '{value[:100]}'; use '*' for every type")
    return value


def _unique(values: list[str]) -> list[str]:
    """ "*" covers every other name; repeated names mean nothing more."""
    return [ALL_EVENTS] if ALL_EVENTS in values else list(dict.fromkeys(values))


EnabledEvents = Annotated[
    list[Annotated[str, AfterValidator(_event_type)]],
    Field(min_length=1, max_length=MAX_ENABLED_EVENTS),
    AfterValidator(_unique),
]
Url = Annotated[str, Field(min_length=1, max_length=MAX_URL)]
Description = Annotated[str, Field(max_length=5000)]


class EndpointCreate(Params):
    url: Url
    enabled_events: EnabledEvents
    description: Description | None = None
    metadata: Metadata = {}
    # payrail's own: Stripe's `Stripe-Signature`, or Standard Webhooks headers.
    signature_format: SignatureFormat = "stripe"


class EndpointUpdate(Params):
    url: Url | None = None
    enabled_events: EnabledEvents | None = None
    description: Description | None = None  # "" unsets, as in Stripe
    metadata: Metadata | None = None
    disabled: bool | None = None
    signature_format: SignatureFormat | None = None


DeliveryStatus = Literal["pending", "succeeded", "failed", "canceled"]
Id = Annotated[str, Field(max_length=100)]


class DeliveryListParams(ListParams):
    webhook_endpoint: Id | None = None
    event: Id | None = None
    status: DeliveryStatus | None = None
