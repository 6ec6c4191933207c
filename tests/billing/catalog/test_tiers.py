"""The catalog of the issue, made through the API: tiers are products (Basic, Premium,
Premium+), each sold monthly and yearly in USD, EUR, JPY and INR, amounts in each
currency's minor unit (JPY has none: ¥980 is 980; INR has two: ₹149 is 14900). Then a
price change: a new price takes the lookup key, and the old price — which subscribers
keep until moved — is archived with its terms untouched."""

from __future__ import annotations

import httpx
from psycopg_pool import AsyncConnectionPool

from payrail.billing.catalog import service
from payrail.money import Money
from tests.billing.catalog.helpers import (
    PRICES,
    PRODUCTS,
    Headers,
    Json,
    get,
    ids,
    new_price,
    new_product,
    ok,
    post,
)

# What a pricing page shows, in major units: (monthly, yearly) per tier and currency.
PAGE: dict[str, dict[str, tuple[str, str]]] = {
    "Basic": {
        "USD": ("6.99", "69.90"),
        "EUR": ("5.99", "59.90"),
        "JPY": ("980", "9800"),
        "INR": ("149", "1490"),
    },
    "Premium": {
        "USD": ("13.99", "139.90"),
        "EUR": ("11.99", "119.90"),
        "JPY": ("1490", "14900"),
        "INR": ("499", "4990"),
    },
    "Premium+": {
        "USD": ("22.99", "229.90"),
        "EUR": ("17.99", "179.90"),
        "JPY": ("1980", "19800"),
        "INR": ("649", "6490"),
    },
}
# The same, as the API takes it: integer minor units, written out to be checked by eye.
MINOR_UNITS: dict[str, dict[str, tuple[int, int]]] = {
    "Basic": {"USD": (699, 6990), "EUR": (599, 5990), "JPY": (980, 9800), "INR": (14900, 149000)},
    "Premium": {
        "USD": (1399, 13990),
        "EUR": (1199, 11990),
        "JPY": (1490, 14900),
        "INR": (49900, 499000),
    },
    "Premium+": {
        "USD": (2299, 22990),
        "EUR": (1799, 17990),
        "JPY": (1980, 19800),
        "INR": (64900, 649000),
    },
}
INTERVALS = ("month", "year")


def lookup_key(tier: str, interval: str, currency: str) -> str:
    slug = tier.lower().replace("+", "_plus")
    return f"{slug}_{interval}ly_{currency.lower()}"


def test_the_page_converts_to_these_minor_units() -> None:
    for tier, currencies in PAGE.items():
        for currency, shown in currencies.items():
            converted = tuple(Money.parse(text, currency).amount for text in shown)
            assert converted == MINOR_UNITS[tier][currency], (tier, currency)


async def make_catalog(client: httpx.AsyncClient, auth: Headers) -> dict[str, Json]:
    """Each tier's product, and its 8 prices; returns the prices by lookup key."""
    prices: dict[str, Json] = {}
    for rank, (tier, currencies) in enumerate(MINOR_UNITS.items(), start=1):
        product = await new_product(client, auth, name=tier, metadata={"rank": str(rank)})
        for currency, amounts in currencies.items():
            for interval, amount in zip(INTERVALS, amounts, strict=True):
                key = lookup_key(tier, interval, currency)
                body = {
                    "product": product["id"],
                    "currency": currency.lower(),
                    "unit_amount": amount,
                    "recurring": {"interval": interval},
                    "lookup_key": key,
                    "nickname": f"{tier} {interval}ly ({currency})",
                }
                prices[key] = ok(await post(client, PRICES, auth, body, as_form=True))
        monthly_usd = prices[lookup_key(tier, "month", "USD")]["id"]
        ok(await post(client, f"{PRODUCTS}/{product['id']}", auth, {"default_price": monthly_usd}))
    return prices


async def test_the_tier_catalog(
    client: httpx.AsyncClient, auth: Headers, pool: AsyncConnectionPool
) -> None:
    prices = await make_catalog(client, auth)
    assert len(prices) == 24

    products = (await get(client, PRODUCTS, auth))["data"]
    assert [p["name"] for p in products] == ["Premium+", "Premium", "Basic"]
    for product in products:
        default = ok(await client.get(f"{PRICES}/{product['default_price']}", headers=auth))
        assert (default["currency"], default["recurring"]["interval"]) == ("usd", "month")
        assert default["product"] == product["id"]

    basic_jpy = prices["basic_monthly_jpy"]
    assert (basic_jpy["currency"], basic_jpy["unit_amount"], basic_jpy["unit_amount_decimal"]) == (
        "jpy",
        980,
        "980",
    )
    premium_plus_inr = prices["premium_plus_yearly_inr"]
    assert (premium_plus_inr["currency"], premium_plus_inr["unit_amount"]) == ("inr", 649000)
    assert premium_plus_inr["recurring"]["interval"] == "year"
    assert prices["premium_monthly_eur"]["unit_amount"] == 1199

    # A pricing page for one currency: the six prices, found by lookup key.
    keys = [lookup_key(t, i, "JPY") for t in MINOR_UNITS for i in INTERVALS]
    page = ok(await client.get(PRICES, headers=auth, params={"lookup_keys[]": keys, "limit": 100}))
    assert sorted((p["nickname"], p["unit_amount"]) for p in page["data"]) == [
        ("Basic monthly (JPY)", 980),
        ("Basic yearly (JPY)", 9800),
        ("Premium monthly (JPY)", 1490),
        ("Premium yearly (JPY)", 14900),
        ("Premium+ monthly (JPY)", 1980),
        ("Premium+ yearly (JPY)", 19800),
    ]
    yearly_inr = await get(client, PRICES, auth, currency="inr", **{"recurring[interval]": "year"})
    assert [p["unit_amount"] for p in yearly_inr["data"]] == [649000, 499000, 149000]
    premium = prices["premium_monthly_usd"]["product"]
    assert len(ids(await get(client, PRICES, auth, product=premium, limit=100))) == 8

    # Premium monthly in USD goes from 13.99 to 14.99: a new price takes the lookup key;
    # the old one, which a subscriber uses, is archived and keeps its terms.
    old = prices["premium_monthly_usd"]
    async with pool.connection() as conn, conn.transaction():
        await service.mark_used(conn, [old["id"]])
    new = await new_price(
        client,
        auth,
        product=premium,
        unit_amount=Money.parse("14.99", "USD").amount,
        recurring={"interval": "month"},
        lookup_key="premium_monthly_usd",
        transfer_lookup_key=True,
        nickname="Premium monthly (USD)",
    )
    assert new["unit_amount"] == 1499 and new["id"] != old["id"]
    ok(await post(client, f"{PRODUCTS}/{premium}", auth, {"default_price": new["id"]}))
    archived = ok(await post(client, f"{PRICES}/{old['id']}", auth, {"active": False}))
    assert archived == {**old, "active": False, "lookup_key": None}
    assert (archived["unit_amount"], archived["currency"]) == (1399, "usd")
    found = await get(client, PRICES, auth, lookup_keys="premium_monthly_usd")
    assert ids(found) == [new["id"]]
    active_usd_monthly = await get(
        client, PRICES, auth, currency="usd", active="true", **{"recurring[interval]": "month"}
    )
    assert [p["unit_amount"] for p in active_usd_monthly["data"]] == [1499, 2299, 699]
