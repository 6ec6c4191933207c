"""Parameters of /v1/customers, in Stripe's shapes.

`time_zone` is a payrail extension, not a Stripe parameter: the IANA name of the zone in
which the customer's billing periods are cut (at midnight and month ends), "UTC" unless
given. A name zoneinfo does not know is a 400 naming time_zone.
"""

from __future__ import annotations

import zoneinfo
from functools import cache
from typing import Annotated

from pydantic import AfterValidator, Field

from payrail.api.pagination import ListParams
from payrail.api.schemas import Metadata, Params

Email = Annotated[str, Field(max_length=320, pattern=r"^[^@\s]+@[^@\s]+$")]
Text = Annotated[str, Field(max_length=350)]


@cache
def _known_zones() -> frozenset[str]:
    # "localtime" is the host's own zone under another name, not an IANA zone.
    return frozenset(zoneinfo.available_timezones() - {"localtime"})


def _time_zone(value: str) -> str:
    if value not in _known_zones():
        raise ValueError(f"unknown time zone '{value}'; use an IANA name such as Europe/Paris")
    return value


TimeZone = Annotated[str, Field(max_length=64), AfterValidator(_time_zone)]


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
    # A test clock to bill the customer by; set at creation only, as in Stripe.
    test_clock: Annotated[str, Field(max_length=100)] | None = None
    time_zone: TimeZone = "UTC"


class CustomerUpdate(Params):
    # "" unsets a field, as in Stripe: one pattern, not a union, so errors name `email`.
    email: Annotated[str, Field(max_length=320, pattern=r"^$|^[^@\s]+@[^@\s]+$")] | None = None
    name: Text | None = None
    phone: Annotated[str, Field(max_length=40)] | None = None
    description: Text | None = None
    metadata: Metadata | None = None
    invoice_settings: InvoiceSettings | None = None
    time_zone: TimeZone | None = None


class CustomerListParams(ListParams):
    email: Email | None = None


class PaymentMethodAttach(Params):
    customer: Annotated[str, Field(max_length=100)]
