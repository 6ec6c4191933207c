"""Parameters of /v1/customers, in Stripe's shapes."""

from __future__ import annotations

from typing import Annotated

from pydantic import Field

from payrail.api.pagination import ListParams
from payrail.api.schemas import Metadata, Params

Email = Annotated[str, Field(max_length=320, pattern=r"^[^@\s]+@[^@\s]+$")]
Text = Annotated[str, Field(max_length=350)]


class InvoiceSettings(Params):
    default_payment_method: Annotated[str, Field(max_length=100)] | None = None


class CustomerCreate(Params):
    email: Email | None = None
    name: Text | None = None
    phone: Annotated[str, Field(max_length=40)] | None = None
    description: Text | None = None
    metadata: Metadata = {}
    # A payment method to attach, as Stripe's `payment_method` on create.
    payment_method: Annotated[str, Field(max_length=100)] | None = None
    invoice_settings: InvoiceSettings = InvoiceSettings()


class CustomerUpdate(Params):
    # "" unsets a field, as in Stripe: one pattern, not a union, so errors name `email`.
    email: Annotated[str, Field(max_length=320, pattern=r"^$|^[^@\s]+@[^@\s]+$")] | None = None
    name: Text | None = None
    phone: Annotated[str, Field(max_length=40)] | None = None
    description: Text | None = None
    metadata: Metadata | None = None
    invoice_settings: InvoiceSettings | None = None


class CustomerListParams(ListParams):
    email: Email | None = None


class PaymentMethodAttach(Params):
    customer: Annotated[str, Field(max_length=100)]
