"""Parameters of /v1/payment_methods (type card), in Stripe's shapes.

The card fields are plain strings and integers here; the vault checks them (Luhn, brand,
expiry) with messages that never repeat what was entered."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field

from payrail.api.schemas import Metadata, Params


class CardParams(Params):
    number: Annotated[str, Field(max_length=30)] | None = None
    exp_month: int | None = None
    exp_year: int | None = None
    cvc: Annotated[str, Field(max_length=10)] | None = None
    # A Stripe test token (tok_visa, ...) instead of the fields above.
    token: Annotated[str, Field(max_length=100)] | None = None


class Address(Params):
    line1: Annotated[str, Field(max_length=200)] | None = None
    line2: Annotated[str, Field(max_length=200)] | None = None
    city: Annotated[str, Field(max_length=100)] | None = None
    state: Annotated[str, Field(max_length=100)] | None = None
    postal_code: Annotated[str, Field(max_length=20)] | None = None
    country: Annotated[str, Field(pattern=r"^[A-Za-z]{2}$")] | None = None


class BillingDetails(Params):
    name: Annotated[str, Field(max_length=200)] | None = None
    email: Annotated[str, Field(max_length=320)] | None = None
    phone: Annotated[str, Field(max_length=40)] | None = None
    address: Address = Address()


class PaymentMethodCreate(Params):
    type: Literal["card"]
    card: CardParams
    billing_details: BillingDetails = BillingDetails()
    metadata: Metadata = {}
