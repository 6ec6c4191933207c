"""Parameters of /v1/payment_intents and /v1/refunds, in Stripe's shapes."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field

from payrail.api.pagination import ListParams
from payrail.api.schemas import Currency, Metadata, MinorUnits, Params

ObjectId = Annotated[str, Field(min_length=1, max_length=100)]
Description = Annotated[str, Field(max_length=1000)]
CaptureMethod = Literal["automatic", "manual"]
Expand = list[Annotated[str, Field(max_length=100)]]


class RetrieveParams(Params):
    """A GET of one object: Stripe's SDKs may send expand[], which nothing expands yet."""

    expand: Expand = []


class PaymentIntentCreate(Params):
    amount: MinorUnits
    currency: Currency
    customer: ObjectId | None = None
    payment_method: ObjectId | None = None
    payment_method_types: list[Literal["card"]] = ["card"]
    capture_method: CaptureMethod = "automatic"
    confirm: bool = False
    description: Description | None = None
    metadata: Metadata = {}
    expand: Expand = []


class PaymentIntentUpdate(Params):
    description: Description | None = None
    metadata: Metadata | None = None
    expand: Expand = []


class PaymentIntentConfirm(Params):
    payment_method: ObjectId | None = None
    capture_method: CaptureMethod | None = None
    expand: Expand = []


class PaymentIntentCapture(Params):
    amount_to_capture: MinorUnits | None = None
    expand: Expand = []


class PaymentIntentCancel(Params):
    cancellation_reason: (
        Literal["duplicate", "fraudulent", "requested_by_customer", "abandoned"] | None
    ) = None
    expand: Expand = []


class PaymentIntentListParams(ListParams):
    customer: ObjectId | None = None


RefundReason = Literal["duplicate", "fraudulent", "requested_by_customer"]


class RefundCreate(Params):
    payment_intent: ObjectId | None = None
    charge: ObjectId | None = None
    amount: MinorUnits | None = None
    reason: RefundReason | None = None
    metadata: Metadata = {}
    expand: Expand = []


class RefundListParams(ListParams):
    payment_intent: ObjectId | None = None
    charge: ObjectId | None = None
