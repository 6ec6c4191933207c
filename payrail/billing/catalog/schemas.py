"""Parameters of /v1/products and /v1/prices, in Stripe's shapes."""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal

from pydantic import BeforeValidator, Field, ValidationInfo, WithJsonSchema, field_validator
from pydantic.json_schema import SkipJsonSchema

from payrail.api.pagination import ListParams
from payrail.api.schemas import Currency, Metadata, Params

Interval = Literal["day", "week", "month", "year"]
# Stripe's longest billing period: three years, in any of its units.
MAX_INTERVAL_COUNT: dict[str, int] = {"day": 1095, "week": 156, "month": 36, "year": 3}
# Stripe's bound: eight digits of minor units.
MAX_UNIT_AMOUNT = 99_999_999
MAX_TRIAL_DAYS = 730

ObjectId = Annotated[str, Field(min_length=1, max_length=100)]
ProductName = Annotated[str, Field(min_length=1, max_length=250)]
Description = Annotated[str, Field(max_length=5000)]
Nickname = Annotated[str, Field(max_length=250)]
LookupKey = Annotated[str, Field(min_length=1, max_length=200)]

_WHOLE_DECIMAL = re.compile(r"[0-9]+(\.0+)?")


def _whole_number(value: object) -> object:
    """Money is never a float: 12.5, 12.0 and True are refused; "12" (forms) is fine."""
    if isinstance(value, bool | float) or (
        isinstance(value, str) and not (value.isascii() and value.isdigit())
    ):
        raise ValueError("must be an integer amount in the currency's minor unit")
    return value


def _whole_decimal(value: object) -> object:
    """Stripe's decimal string of minor units, taken only when it is a whole number: a
    fraction of a minor unit cannot be charged, and payrail never rounds money."""
    if not isinstance(value, str) or _WHOLE_DECIMAL.fullmatch(value) is None:
        raise ValueError(
            "payrail prices are whole minor units; give unit_amount, or a"
            " unit_amount_decimal without a fraction (e.g. '1000')"
        )
    return int(value.split(".")[0])


UnitAmount = Annotated[int, Field(ge=0, le=MAX_UNIT_AMOUNT), BeforeValidator(_whole_number)]
UnitAmountDecimal = Annotated[
    int,
    Field(ge=0, le=MAX_UNIT_AMOUNT),
    BeforeValidator(_whole_decimal),
    WithJsonSchema({"type": "string", "pattern": f"^{_WHOLE_DECIMAL.pattern}$"}),
]
IntervalCount = Annotated[int, Field(ge=1), BeforeValidator(_whole_number)]


class PriceDataRecurring(Params):
    interval: Interval
    interval_count: IntervalCount = 1

    @field_validator("interval_count")
    @classmethod
    def _within_three_years(cls, count: int, info: ValidationInfo) -> int:
        interval = info.data.get("interval")  # absent when the interval itself was invalid
        if interval is not None and count > MAX_INTERVAL_COUNT[interval]:
            raise ValueError(
                "the longest billing period is three years, so at most"
                f" {MAX_INTERVAL_COUNT[interval]} for interval={interval}"
            )
        return count


class Recurring(PriceDataRecurring):
    # Deprecated on Stripe's prices, still accepted: the default trial of a subscription.
    trial_period_days: (
        Annotated[int, Field(ge=0, le=MAX_TRIAL_DAYS), BeforeValidator(_whole_number)] | None
    ) = None


class DefaultPriceData(Params):
    currency: Currency
    unit_amount: UnitAmount | None = None
    unit_amount_decimal: UnitAmountDecimal | None = None
    recurring: PriceDataRecurring | None = None


class ProductCreate(Params):
    name: ProductName
    description: Description | None = None
    active: bool = True
    metadata: Metadata = {}
    default_price_data: DefaultPriceData | None = None


class ProductUpdate(Params):
    name: ProductName | None = None
    # "" unsets, as in Stripe.
    description: Description | None = None
    active: bool | None = None
    metadata: Metadata | None = None
    default_price: Annotated[str, Field(max_length=100)] | None = None


class ProductListParams(ListParams):
    active: bool | None = None


class ProductData(Params):
    name: ProductName
    active: bool = True
    metadata: Metadata = {}


class PriceCreate(Params):
    currency: Currency
    product: ObjectId | None = None
    product_data: ProductData | None = None
    unit_amount: UnitAmount | None = None
    unit_amount_decimal: UnitAmountDecimal | None = None
    recurring: Recurring | None = None
    active: bool = True
    nickname: Nickname | None = None
    lookup_key: LookupKey | None = None
    transfer_lookup_key: bool = False
    metadata: Metadata = {}


def _terms_never_change(value: object) -> object:
    raise ValueError(
        "a price's terms (amount, currency, interval, product) never change: create a new"
        " price, and move subscribers to it"
    )


# Named so that an attempt to change one is refused naming it, not as an unknown parameter.
Term = SkipJsonSchema[Annotated[Any, BeforeValidator(_terms_never_change)]]


class PriceUpdate(Params):
    active: bool | None = None
    # "" unsets the nickname or the lookup key, as in Stripe.
    nickname: Nickname | None = None
    lookup_key: Annotated[str, Field(max_length=200)] | None = None
    transfer_lookup_key: bool = False
    metadata: Metadata | None = None
    unit_amount: Term = None
    unit_amount_decimal: Term = None
    currency: Term = None
    recurring: Term = None
    product: Term = None


def _as_list(value: object) -> object:
    """`lookup_keys=k` (one, unbracketed) means the list [k]."""
    return [value] if isinstance(value, str) else value


class PriceListRecurring(Params):
    interval: Interval | None = None


class PriceListParams(ListParams):
    active: bool | None = None
    product: ObjectId | None = None
    type: Literal["one_time", "recurring"] | None = None
    currency: Currency | None = None
    lookup_keys: (
        Annotated[list[LookupKey], Field(min_length=1, max_length=10), BeforeValidator(_as_list)]
        | None
    ) = None
    recurring: PriceListRecurring | None = None
