"""The official `stripe` SDK, pointed at payrail over real HTTP, manages a catalog as it
would Stripe's: a product, its monthly and yearly prices, listing them, renaming a price,
and failing — as on Stripe — to change a price's amount."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any, cast

import pytest
import stripe

from payrail.tenants.service import NewMerchant


@pytest.fixture
def sdk(
    live_server: str, merchant: NewMerchant, monkeypatch: pytest.MonkeyPatch
) -> Iterator[stripe.StripeClient]:
    # No telemetry header, no retries: a failing request fails the test.
    monkeypatch.setattr(stripe, "enable_telemetry", False)
    yield stripe.StripeClient(
        merchant.test_secret, base_addresses={"api": live_server}, max_network_retries=0
    )


def test_a_product_with_monthly_and_yearly_prices(sdk: stripe.StripeClient) -> None:
    product = sdk.v1.products.create({"name": "Premium", "metadata": {"tier": "2"}})
    assert isinstance(product, stripe.Product)
    assert product.id.startswith("prod_") and product.metadata["tier"] == "2"

    monthly = sdk.v1.prices.create(
        {
            "product": product.id,
            "currency": "eur",
            "unit_amount": 1199,
            "recurring": {"interval": "month"},
            "lookup_key": "premium_monthly_eur",
        }
    )
    yearly = sdk.v1.prices.create(
        {
            "product": product.id,
            "currency": "eur",
            "unit_amount": 11990,
            "recurring": {"interval": "year", "interval_count": 1},
            "lookup_key": "premium_yearly_eur",
        }
    )
    assert isinstance(monthly, stripe.Price)
    assert (monthly.unit_amount, monthly.currency, monthly.type) == (1199, "eur", "recurring")
    assert monthly.recurring is not None and monthly.recurring.interval == "month"
    assert yearly.recurring is not None and yearly.recurring.interval == "year"

    listed = sdk.v1.prices.list({"product": product.id})
    assert [p.id for p in listed.data] == [yearly.id, monthly.id]
    assert listed.has_more is False
    by_key = sdk.v1.prices.list({"lookup_keys": ["premium_monthly_eur"]})
    assert [p.id for p in by_key.data] == [monthly.id]
    yearly_only = sdk.v1.prices.list({"recurring": {"interval": "year"}, "active": True})
    assert [p.id for p in yearly_only.data] == [yearly.id]
    assert [p.id for p in sdk.v1.products.list({"active": True}).data] == [product.id]

    renamed = sdk.v1.prices.update(monthly.id, {"nickname": "Premium monthly"})
    assert renamed.nickname == "Premium monthly" and renamed.unit_amount == 1199
    assert sdk.v1.prices.retrieve(monthly.id).nickname == "Premium monthly"

    with pytest.raises(stripe.InvalidRequestError) as raised:
        sdk.v1.prices.update(monthly.id, cast(Any, {"unit_amount": 1299}))
    assert raised.value.http_status == 400
    assert raised.value.param == "unit_amount"
    assert "never change: create a new price" in str(raised.value.user_message)
    assert sdk.v1.prices.retrieve(monthly.id).unit_amount == 1199

    # With prices, the product can be archived but not deleted.
    with pytest.raises(stripe.InvalidRequestError):
        sdk.v1.products.delete(product.id)
    archived = sdk.v1.products.update(product.id, {"active": False})
    assert archived.active is False
    spare = sdk.v1.products.create({"name": "Spare"})
    assert sdk.v1.products.delete(spare.id).deleted is True
