"""The catalog's rules as plain functions over values, without a database: what a
request may say (intervals, amounts, currencies) and what a price update may change."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from payrail.api.schemas import parse
from payrail.billing.catalog.schemas import (
    MAX_INTERVAL_COUNT,
    PriceCreate,
    PriceListParams,
    PriceUpdate,
    ProductCreate,
)
from payrail.billing.catalog.service import (
    changed,
    check_archivable,
    check_product_source,
    price_object,
    unit_amount_of,
)
from payrail.errors import InvalidRequest

TERMS = "a price's terms (amount, currency, interval, product) never change"


def refused(model: Any, params: dict[str, Any]) -> InvalidRequest:
    with pytest.raises(InvalidRequest) as raised:
        parse(model, params)
    return raised.value


@pytest.mark.parametrize(
    ("interval", "longest"), [("day", 1095), ("week", 156), ("month", 36), ("year", 3)]
)
def test_a_billing_period_is_at_most_three_years(interval: str, longest: int) -> None:
    assert MAX_INTERVAL_COUNT[interval] == longest
    base = {"currency": "usd", "unit_amount": 100}
    fits = parse(
        PriceCreate, {**base, "recurring": {"interval": interval, "interval_count": longest}}
    )
    assert fits.recurring is not None
    assert (fits.recurring.interval, fits.recurring.interval_count) == (interval, longest)

    too_long = {"interval": interval, "interval_count": str(longest + 1)}
    error = refused(PriceCreate, {**base, "recurring": too_long})
    assert (error.param, error.code) == ("recurring[interval_count]", "parameter_invalid")
    assert error.message == (
        "Invalid recurring[interval_count]: the longest billing period is three years,"
        f" so at most {longest} for interval={interval}"
    )
    # The same bound holds for a product's default price.
    nested = {"currency": "usd", "unit_amount": 1, "recurring": too_long}
    error = refused(ProductCreate, {"name": "Basic", "default_price_data": nested})
    assert error.param == "default_price_data[recurring][interval_count]"


@pytest.mark.parametrize(
    ("recurring", "param"),
    [
        ({"interval": "fortnight"}, "recurring[interval]"),
        ({"interval": "month", "interval_count": 0}, "recurring[interval_count]"),
        ({"interval": "month", "interval_count": -1}, "recurring[interval_count]"),
        ({"interval": "month", "interval_count": 1.5}, "recurring[interval_count]"),
        ({"interval_count": 1}, "recurring[interval]"),
        ({"interval": "month", "trial_period_days": -1}, "recurring[trial_period_days]"),
        ({"interval": "month", "trial_period_days": 731}, "recurring[trial_period_days]"),
        ({"interval": "month", "usage_type": "metered"}, "recurring[usage_type]"),
    ],
)
def test_bad_recurring_terms_are_refused_naming_the_field(
    recurring: dict[str, Any], param: str
) -> None:
    error = refused(PriceCreate, {"currency": "usd", "unit_amount": 1, "recurring": recurring})
    assert error.param == param


def test_the_default_interval_count_is_one_and_trial_days_are_kept() -> None:
    params = parse(
        PriceCreate,
        {
            "currency": "usd",
            "unit_amount": 1,
            "recurring": {"interval": "week", "trial_period_days": "14"},
        },
    )
    assert params.recurring is not None
    assert (params.recurring.interval_count, params.recurring.trial_period_days) == (1, 14)


@pytest.mark.parametrize(
    ("params", "param", "message"),
    [
        (
            {"currency": "xyz", "unit_amount": 1},
            "currency",
            "Invalid currency: unknown currency 'xyz'",
        ),
        ({"currency": "usd", "unit_amount": -1}, "unit_amount", None),
        ({"currency": "usd", "unit_amount": 100_000_000}, "unit_amount", None),
        ({"currency": "usd", "unit_amount": 9.99}, "unit_amount", None),
        ({"currency": "usd", "unit_amount": "9.99"}, "unit_amount", None),
        ({"currency": "usd", "unit_amount": True}, "unit_amount", None),
        ({"currency": "usd", "unit_amount_decimal": "999.5"}, "unit_amount_decimal", None),
        ({"currency": "usd", "unit_amount_decimal": 999}, "unit_amount_decimal", None),
        ({"currency": "usd", "unit_amount_decimal": "100000000"}, "unit_amount_decimal", None),
        ({"currency": "usd", "unit_amount": 1, "lookup_key": "k" * 201}, "lookup_key", None),
        ({"currency": "usd", "unit_amount": 1, "tax_behavior": "exclusive"}, "tax_behavior", None),
    ],
)
def test_bad_amounts_and_currencies_are_refused_naming_the_field(
    params: dict[str, Any], param: str, message: str | None
) -> None:
    error = refused(PriceCreate, params)
    assert error.param == param
    if message is not None:
        assert error.message == message


def test_amount_bounds_are_stripes_eight_digits() -> None:
    for amount in (0, 99_999_999):
        assert parse(PriceCreate, {"currency": "usd", "unit_amount": amount}).unit_amount == amount
    error = refused(PriceCreate, {"currency": "usd", "unit_amount": 100_000_000})
    assert error.message == "Invalid unit_amount: Input should be less than or equal to 99999999"


def test_a_whole_unit_amount_decimal_is_taken_and_a_fraction_is_refused() -> None:
    for text, amount in (("1000", 1000), ("1000.00", 1000), ("0", 0)):
        params = parse(PriceCreate, {"currency": "usd", "unit_amount_decimal": text})
        assert params.unit_amount_decimal == amount
        assert unit_amount_of(params.unit_amount, params.unit_amount_decimal) == amount
    error = refused(PriceCreate, {"currency": "usd", "unit_amount_decimal": "1000.5"})
    assert "payrail prices are whole minor units" in error.message


def test_exactly_one_of_unit_amount_and_unit_amount_decimal() -> None:
    assert unit_amount_of(5, None) == 5
    assert unit_amount_of(None, 7) == 7
    with pytest.raises(InvalidRequest) as both:
        unit_amount_of(5, 5)
    assert both.value.param == "unit_amount_decimal"
    with pytest.raises(InvalidRequest) as neither:
        unit_amount_of(None, None, at="default_price_data")
    assert (neither.value.param, neither.value.code) == (
        "default_price_data[unit_amount]",
        "parameter_missing",
    )
    assert neither.value.message == "Missing required param: default_price_data[unit_amount]."


def test_exactly_one_of_product_and_product_data() -> None:
    check_product_source("prod_1", None)
    check_product_source(None, {"name": "Basic"})
    with pytest.raises(InvalidRequest) as both:
        check_product_source("prod_1", {"name": "Basic"})
    assert both.value.param == "product_data"
    with pytest.raises(InvalidRequest) as neither:
        check_product_source(None, None)
    assert (neither.value.param, neither.value.code) == ("product", "parameter_missing")


@pytest.mark.parametrize(
    "field",
    ["unit_amount", "unit_amount_decimal", "currency", "recurring", "product"],
)
def test_an_update_of_a_term_is_refused_naming_it(field: str) -> None:
    value: Any = {"interval": "year"} if field == "recurring" else "1"
    error = refused(PriceUpdate, {"nickname": "n", field: value})
    assert (error.param, error.code) == (field, "parameter_invalid")
    assert error.message == (
        f"Invalid {field}: {TERMS}: create a new price, and move subscribers to it"
    )


def test_what_an_update_may_change_is_the_documented_schema() -> None:
    properties = set(PriceUpdate.model_json_schema()["properties"])
    assert properties == {"active", "nickname", "lookup_key", "transfer_lookup_key", "metadata"}


def test_lookup_keys_accept_one_key_or_a_list() -> None:
    assert parse(PriceListParams, {"lookup_keys": "basic"}).lookup_keys == ["basic"]
    assert parse(PriceListParams, {"lookup_keys": ["a", "b"]}).lookup_keys == ["a", "b"]
    error = refused(PriceListParams, {"lookup_keys": [str(i) for i in range(11)]})
    assert error.param == "lookup_keys"


def test_the_default_price_cannot_be_archived() -> None:
    check_archivable("price_a", "price_b")
    check_archivable("price_a", None)
    with pytest.raises(InvalidRequest) as raised:
        check_archivable("price_a", "price_a")
    assert raised.value.param == "active"


def test_changed_keeps_only_what_differs() -> None:
    row = {"name": "Basic", "active": True, "metadata": {"a": "1"}}
    assert changed(row, {"name": "Basic", "active": False, "metadata": {"a": "1"}}) == {
        "active": False
    }
    assert changed(row, {}) == {}


def test_price_object_is_stripes_shape() -> None:
    row = {
        "id": "price_1",
        "livemode": False,
        "product_id": "prod_1",
        "type": "recurring",
        "currency": "JPY",
        "unit_amount": 980,
        "recurring_interval": "month",
        "recurring_interval_count": 1,
        "trial_period_days": 7,
        "active": True,
        "nickname": "Basic monthly",
        "lookup_key": "basic_monthly_jpy",
        "metadata": {},
        "created_at": datetime(2026, 1, 1, tzinfo=UTC),
    }
    assert price_object(row) == {
        "id": "price_1",
        "object": "price",
        "active": True,
        "billing_scheme": "per_unit",
        "created": 1767225600,
        "currency": "jpy",
        "custom_unit_amount": None,
        "livemode": False,
        "lookup_key": "basic_monthly_jpy",
        "metadata": {},
        "nickname": "Basic monthly",
        "product": "prod_1",
        "recurring": {
            "aggregate_usage": None,
            "interval": "month",
            "interval_count": 1,
            "meter": None,
            "trial_period_days": 7,
            "usage_type": "licensed",
        },
        "tax_behavior": "unspecified",
        "tiers_mode": None,
        "transform_quantity": None,
        "type": "recurring",
        "unit_amount": 980,
        "unit_amount_decimal": "980",
    }
    one_time = price_object({**row, "type": "one_time", "recurring_interval": None})
    assert one_time["recurring"] is None and one_time["type"] == "one_time"
