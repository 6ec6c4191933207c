"""Prometheus metrics, served by the API at `/metrics` (docs/operations.md lists them).

One registry per process. Label values are bounded sets (consumer names, topics,
partitions, outcome words), never ids.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

REGISTRY = CollectorRegistry(auto_describe=True)

outbox_unpublished = Gauge(
    "payrail_outbox_unpublished_events",
    "Events committed to the outbox and not yet published, as the relay last counted.",
    registry=REGISTRY,
)
outbox_oldest_unpublished_seconds = Gauge(
    "payrail_outbox_oldest_unpublished_seconds",
    "Age of the oldest event not yet published, as the relay last saw it.",
    registry=REGISTRY,
)
relay_published = Counter(
    "payrail_relay_published_events_total",
    "Events the relay published and marked published.",
    ["transport"],
    registry=REGISTRY,
)
relay_failures = Counter(
    "payrail_relay_publish_failures_total",
    "Batches the transport did not take; the relay keeps them and tries again.",
    ["transport"],
    registry=REGISTRY,
)
consumer_lag = Gauge(
    "payrail_consumer_lag_events",
    "Records appended to a partition and not yet committed by the consumer group.",
    ["consumer", "topic", "partition"],
    registry=REGISTRY,
)
consumer_handled = Counter(
    "payrail_consumer_events_total",
    "Events a consumer took, by outcome: handled, duplicate (already in its inbox), dead_lettered.",
    ["consumer", "outcome"],
    registry=REGISTRY,
)
consumer_retries = Counter(
    "payrail_consumer_retries_total",
    "Handler attempts that failed and were retried.",
    ["consumer"],
    registry=REGISTRY,
)
consumer_handle_seconds = Histogram(
    "payrail_consumer_handle_seconds",
    "Time to handle one event, inbox row and commit included.",
    ["consumer"],
    registry=REGISTRY,
)
webhook_attempts = Counter(
    "payrail_webhook_attempts_total",
    "Webhook delivery attempts, by what was decided: succeeded, retry (failed, tried again "
    "later), failed (gave up after 3 days), gone (410: the endpoint is disabled), lost "
    "(the outcome was not recorded: the claim had run out).",
    ["verdict"],
    registry=REGISTRY,
)
webhook_attempt_seconds = Histogram(
    "payrail_webhook_attempt_seconds",
    "Time a merchant's endpoint took to answer one delivery attempt.",
    buckets=(0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
    registry=REGISTRY,
)
webhook_due = Gauge(
    "payrail_webhook_deliveries_due",
    "Pending deliveries whose next attempt is due, as the webhooks worker last counted.",
    registry=REGISTRY,
)
payment_attempts = Counter(
    "payrail_payment_attempts_total",
    "Card authorizations, counted once each when its outcome is recorded (an in-doubt one "
    "when it is resolved). outcome: succeeded, authorized (held for a manual capture), "
    "declined (the issuer refused), requires_authentication, failed_technical (no decision: "
    "provider outage, rate limit, bad credentials, an authorization voided before it was "
    "known). decline_code: payrail's code from connectors/declines.py, empty on success. "
    "connector: the provider (sandbox, stripe, adyen, paypal). country: the card's billing "
    "country, or unknown. mode: live or test.",
    ["connector", "currency", "country", "outcome", "decline_code", "mode"],
    registry=REGISTRY,
)
dunning_backlog_invoices = Gauge(
    "payrail_dunning_backlog_invoices",
    "Open invoices charged automatically that dunning is still working on: an attempt "
    "failed, and a retry or the final action is still to come.",
    ["currency", "mode"],
    registry=REGISTRY,
)
dunning_backlog_amount = Gauge(
    "payrail_dunning_backlog_amount",
    "What those invoices still owe, in the currency's minor unit.",
    ["currency", "mode"],
    registry=REGISTRY,
)
dunning_backlog_oldest_age_seconds = Gauge(
    "payrail_dunning_backlog_oldest_age_seconds",
    "Time since the first failed attempt of the longest-dunned invoice in the backlog; 0 "
    "when the backlog is empty.",
    ["mode"],
    registry=REGISTRY,
)
dunning_overdue_seconds = Gauge(
    "payrail_dunning_overdue_seconds",
    "How long ago the most overdue retry or final action of the backlog fell due; 0 when "
    "none is due. Seconds are normal; hours mean dunning is not getting through its work.",
    ["mode"],
    registry=REGISTRY,
)


def mode(livemode: bool) -> str:
    """The `mode` label: test-mode traffic is merchants' integration tests, which no
    alert on live payments should count."""
    return "live" if livemode else "test"


def attempt_outcome(charge_status: str) -> str:
    """The `outcome` label of an authorization whose charge now has this status."""
    return _OUTCOMES[charge_status]


_OUTCOMES: dict[str, str] = {
    "captured": "succeeded",
    "authorized": "authorized",
    "declined": "declined",
    "requires_authentication": "requires_authentication",
    "failed": "failed_technical",
    # The provider voided it before payrail heard of it (an authorization that expired
    # while in doubt): no money, and no issuer said no.
    "voided": "failed_technical",
}
