"""Parameters of /v1/subscriptions, in Stripe's shapes.

`change_at` on update is a payrail extension: `period_end` applies a price change when
the current period ends (a downgrade that keeps what was paid for), without prorations;
`now` (the default) applies it at once, as Stripe does.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field

from payrail.api.pagination import ListParams
from payrail.api.schemas import Metadata, Params
from payrail.payments.schemas import Expand, ObjectId

# Stripe's limit on trials: two years.
TRIAL_DAYS_MAX = 730
UnixTime = Annotated[int, Field(ge=0, le=2**33)]
ProrationBehavior = Literal["create_prorations", "always_invoice", "none"]
PaymentBehavior = Literal["allow_incomplete", "default_incomplete"]


class Item(Params):
    price: ObjectId
    quantity: Annotated[int, Field(ge=1, le=10_000)] = 1


class ItemUpdate(Params):
    id: ObjectId | None = None
    price: ObjectId | None = None
    quantity: Annotated[int, Field(ge=1, le=10_000)] | None = None


class EndBehavior(Params):
    missing_payment_method: Literal["create_invoice", "pause", "cancel"] = "create_invoice"


class TrialSettings(Params):
    end_behavior: EndBehavior = EndBehavior()


class PauseCollection(Params):
    behavior: Literal["keep_as_draft", "mark_uncollectible", "void"]
    resumes_at: UnixTime | None = None


class SubscriptionCreate(Params):
    customer: ObjectId
    # One item: tiers are sold one at a time (Basic, Premium, Premium+).
    items: Annotated[list[Item], Field(min_length=1, max_length=1)]
    default_payment_method: ObjectId | None = None
    trial_period_days: Annotated[int, Field(ge=0, le=TRIAL_DAYS_MAX)] | None = None
    trial_end: UnixTime | Literal["now"] | None = None
    trial_from_plan: bool = False
    trial_settings: TrialSettings = TrialSettings()
    cancel_at_period_end: bool = False
    cancel_at: UnixTime | None = None
    collection_method: Literal["charge_automatically", "send_invoice"] = "charge_automatically"
    days_until_due: Annotated[int, Field(ge=0, le=365)] | None = None
    payment_behavior: PaymentBehavior = "allow_incomplete"
    proration_behavior: ProrationBehavior = "create_prorations"
    off_session: bool = True
    description: Annotated[str, Field(max_length=500)] | None = None
    metadata: Metadata = {}
    expand: Expand = []


class SubscriptionUpdate(Params):
    items: Annotated[list[ItemUpdate], Field(min_length=1, max_length=1)] | None = None
    proration_behavior: ProrationBehavior = "create_prorations"
    proration_date: UnixTime | None = None
    change_at: Literal["now", "period_end"] = "now"
    payment_behavior: PaymentBehavior = "allow_incomplete"
    cancel_at_period_end: bool | None = None
    cancel_at: UnixTime | Literal[""] | None = None
    default_payment_method: ObjectId | Literal[""] | None = None
    pause_collection: PauseCollection | Literal[""] | None = None
    trial_end: Literal["now"] | None = None
    description: Annotated[str, Field(max_length=500)] | None = None
    metadata: Metadata | None = None
    off_session: bool = True
    expand: Expand = []


class CancellationDetails(Params):
    comment: Annotated[str, Field(max_length=5000)] | None = None
    feedback: (
        Literal[
            "customer_service",
            "low_quality",
            "missing_features",
            "other",
            "switched_service",
            "too_complex",
            "too_expensive",
            "unused",
        ]
        | None
    ) = None


class SubscriptionCancel(Params):
    cancellation_details: CancellationDetails = CancellationDetails()
    invoice_now: Literal[False] = False
    prorate: Literal[False] = False
    expand: Expand = []


class SubscriptionResume(Params):
    billing_cycle_anchor: Literal["now", "unchanged"] = "now"
    proration_behavior: ProrationBehavior = "create_prorations"
    expand: Expand = []


class SubscriptionListParams(ListParams):
    customer: ObjectId | None = None
    price: ObjectId | None = None
    status: (
        Literal[
            "incomplete",
            "incomplete_expired",
            "trialing",
            "active",
            "past_due",
            "unpaid",
            "canceled",
            "paused",
            "all",
            "ended",
        ]
        | None
    ) = None
    test_clock: ObjectId | None = None
