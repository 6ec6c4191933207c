"""/v1/prices over the API, as Stripe documents it: create (on a product, or with
product_data), retrieve, update (only active, nickname, lookup_key, metadata: a price's
terms never change), list with Stripe's filters. Lookup keys are unique per merchant and
mode, and move with transfer_lookup_key. A refused request changes nothing."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
import pytest
from psycopg_pool import AsyncConnectionPool

from payrail.clock import ManualClock, unix
from payrail.tenants.service import NewMerchant
from tests.billing.catalog.helpers import (
    PRICES,
    PRODUCTS,
    Headers,
    Json,
    assert_error,
    catalog_state,
    event_types,
    get,
    ids,
    new_price,
    new_product,
    ok,
    post,
)
from tests.conftest import new_merchant

TERMS = (
    "a price's terms (amount, currency, interval, product) never change: create a new"
    " price, and move subscribers to it"
)


@pytest.fixture
async def product(client: httpx.AsyncClient, auth: Headers) -> Json:
    return await new_product(client, auth, name="Premium")


@pytest.mark.parametrize("as_form", [False, True], ids=["json", "form"])
async def test_create_returns_a_stripe_price(
    client: httpx.AsyncClient,
    auth: Headers,
    pool: AsyncConnectionPool,
    clock: ManualClock,
    product: Json,
    as_form: bool,
) -> None:
    body = {
        "product": product["id"],
        "currency": "USD",
        "unit_amount": 1499,
        "recurring": {"interval": "month", "interval_count": 1, "trial_period_days": 14},
        "nickname": "Premium monthly",
        "lookup_key": "premium_monthly_usd",
        "metadata": {"tier": "premium"},
    }
    price = ok(await post(client, PRICES, auth, body, as_form=as_form))
    assert price["id"].startswith("price_")
    assert price == {
        "id": price["id"],
        "object": "price",
        "active": True,
        "billing_scheme": "per_unit",
        "created": unix(clock.now()),
        "currency": "usd",
        "custom_unit_amount": None,
        "livemode": False,
        "lookup_key": "premium_monthly_usd",
        "metadata": {"tier": "premium"},
        "nickname": "Premium monthly",
        "product": product["id"],
        "recurring": {
            "aggregate_usage": None,
            "interval": "month",
            "interval_count": 1,
            "meter": None,
            "trial_period_days": 14,
            "usage_type": "licensed",
        },
        "tax_behavior": "unspecified",
        "tiers_mode": None,
        "transform_quantity": None,
        "type": "recurring",
        "unit_amount": 1499,
        "unit_amount_decimal": "1499",
    }
    assert ok(await client.get(f"{PRICES}/{price['id']}", headers=auth)) == price
    assert (await event_types(pool))[-1] == ("price.created", price["id"])
    async with pool.connection() as conn:
        cur = await conn.execute(
            "SELECT payload FROM events WHERE aggregate_id = %s AND type = 'price.created'",
            (price["id"],),
        )
        assert [row[0] for row in await cur.fetchall()] == [price]
    # Creating a price does not make it the product's default.
    assert (
        ok(await client.get(f"{PRODUCTS}/{product['id']}", headers=auth))["default_price"] is None
    )


async def test_one_time_free_and_decimal_prices(
    client: httpx.AsyncClient, auth: Headers, product: Json
) -> None:
    one_time = await new_price(client, auth, product=product["id"], unit_amount=2500)
    assert (one_time["type"], one_time["recurring"]) == ("one_time", None)
    free = await new_price(
        client, auth, product=product["id"], unit_amount=0, recurring={"interval": "year"}
    )
    assert (free["unit_amount"], free["unit_amount_decimal"]) == (0, "0")
    assert free["recurring"]["interval_count"] == 1
    assert free["recurring"]["trial_period_days"] is None
    decimal = await new_price(client, auth, product=product["id"], unit_amount_decimal="1200.00")
    assert (decimal["unit_amount"], decimal["unit_amount_decimal"]) == (1200, "1200")
    archived = await new_price(client, auth, product=product["id"], unit_amount=1, active=False)
    assert archived["active"] is False


async def test_product_data_makes_the_product_with_the_price(
    client: httpx.AsyncClient, auth: Headers, pool: AsyncConnectionPool
) -> None:
    body = {
        "currency": "inr",
        "unit_amount": 19900,
        "recurring": {"interval": "month"},
        "product_data": {"name": "Premium+", "metadata": {"tier": "3"}},
    }
    price = ok(await post(client, PRICES, auth, body, as_form=True))
    product = ok(await client.get(f"{PRODUCTS}/{price['product']}", headers=auth))
    assert (product["name"], product["metadata"], product["active"]) == (
        "Premium+",
        {"tier": "3"},
        True,
    )
    assert product["default_price"] is None
    assert (await event_types(pool))[-2:] == [
        ("product.created", product["id"]),
        ("price.created", price["id"]),
    ]


@pytest.mark.parametrize(
    ("body", "status", "param", "code"),
    [
        ({"recurring": {"interval": "fortnight"}}, 400, "recurring[interval]", "parameter_invalid"),
        (
            {"recurring": {"interval": "month", "interval_count": 0}},
            400,
            "recurring[interval_count]",
            "parameter_invalid",
        ),
        (
            {"recurring": {"interval": "month", "interval_count": 37}},
            400,
            "recurring[interval_count]",
            "parameter_invalid",
        ),
        (
            {"recurring": {"interval": "week", "interval_count": 157}},
            400,
            "recurring[interval_count]",
            "parameter_invalid",
        ),
        (
            {"recurring": {"interval": "day", "interval_count": 1096}},
            400,
            "recurring[interval_count]",
            "parameter_invalid",
        ),
        (
            {"recurring": {"interval": "year", "interval_count": 4}},
            400,
            "recurring[interval_count]",
            "parameter_invalid",
        ),
        ({"currency": "xyz"}, 400, "currency", "parameter_invalid"),
        ({"currency": None}, 400, "currency", "parameter_missing"),
        ({"unit_amount": -1}, 400, "unit_amount", "parameter_invalid"),
        ({"unit_amount": 100_000_000}, 400, "unit_amount", "parameter_invalid"),
        ({"unit_amount": 9.5}, 400, "unit_amount", "parameter_invalid"),
        ({"unit_amount": None}, 400, "unit_amount", "parameter_missing"),
        ({"unit_amount_decimal": "9.5"}, 400, "unit_amount_decimal", "parameter_invalid"),
        ({"unit_amount_decimal": "950"}, 400, "unit_amount_decimal", None),
        ({"product": "prod_missing"}, 404, "product", "resource_missing"),
        ({"product": None}, 400, "product", "parameter_missing"),
        ({"product_data": {"name": "Other"}}, 400, "product_data", None),
        ({"product": None, "product_data": {}}, 400, "product_data[name]", "parameter_missing"),
        ({"lookup_key": ""}, 400, "lookup_key", "parameter_invalid"),
        ({"billing_scheme": "tiered"}, 400, "billing_scheme", "parameter_unknown"),
    ],
)
async def test_a_bad_create_is_refused_naming_the_field_and_changes_nothing(
    client: httpx.AsyncClient,
    auth: Headers,
    pool: AsyncConnectionPool,
    product: Json,
    body: Json,
    status: int,
    param: str,
    code: str | None,
) -> None:
    full: Json = {"product": product["id"], "currency": "usd", "unit_amount": 950, **body}
    full = {k: v for k, v in full.items() if v is not None}
    before = await catalog_state(pool)
    message = assert_error(await post(client, PRICES, auth, full), status, param, code)
    assert param in message
    assert await catalog_state(pool) == before


async def test_update_changes_only_how_a_price_is_found_and_shown(
    client: httpx.AsyncClient, auth: Headers, pool: AsyncConnectionPool, product: Json
) -> None:
    price = await new_price(
        client,
        auth,
        product=product["id"],
        unit_amount=1499,
        recurring={"interval": "month"},
        nickname="old",
        lookup_key="premium_monthly",
        metadata={"a": "1"},
    )
    path = f"{PRICES}/{price['id']}"
    body = {"nickname": "Premium (monthly)", "metadata": {"a": "", "b": "2"}, "active": False}
    updated = ok(await post(client, path, auth, body, as_form=True))
    assert updated == {
        **price,
        "nickname": "Premium (monthly)",
        "metadata": {"b": "2"},
        "active": False,
    }
    assert ok(await client.get(path, headers=auth)) == updated
    assert (await event_types(pool))[-1] == ("price.updated", price["id"])

    unset = ok(await post(client, path, auth, {"nickname": "", "lookup_key": ""}))
    assert (unset["nickname"], unset["lookup_key"]) == (None, None)
    # An update that changes nothing writes nothing and emits nothing.
    before = await catalog_state(pool)
    assert ok(await post(client, path, auth, {"nickname": "", "active": False})) == unset
    assert ok(await post(client, path, auth, {})) == unset
    assert await catalog_state(pool) == before


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("unit_amount", 1599),
        ("unit_amount_decimal", "1599"),
        ("currency", "eur"),
        ("recurring", {"interval": "year"}),
        ("product", "prod_other"),
    ],
)
@pytest.mark.parametrize("as_form", [False, True], ids=["json", "form"])
async def test_an_update_of_a_term_is_refused_naming_the_field(
    client: httpx.AsyncClient,
    auth: Headers,
    pool: AsyncConnectionPool,
    product: Json,
    field: str,
    value: Any,
    as_form: bool,
) -> None:
    price = await new_price(
        client, auth, product=product["id"], unit_amount=1499, recurring={"interval": "month"}
    )
    before = await catalog_state(pool)
    reply = await post(
        client, f"{PRICES}/{price['id']}", auth, {"nickname": "n", field: value}, as_form=as_form
    )
    assert assert_error(reply, 400, field) == f"Invalid {field}: {TERMS}"
    assert await catalog_state(pool) == before
    assert ok(await client.get(f"{PRICES}/{price['id']}", headers=auth)) == price


async def test_the_default_price_of_a_product_cannot_be_archived(
    client: httpx.AsyncClient, auth: Headers, pool: AsyncConnectionPool
) -> None:
    product = await new_product(
        client, auth, default_price_data={"currency": "usd", "unit_amount": 900}
    )
    path = f"{PRICES}/{product['default_price']}"
    before = await catalog_state(pool)
    message = assert_error(await post(client, path, auth, {"active": False}), 400, "active", None)
    assert message.startswith(
        "This price cannot be archived because it is the default price of its product."
    )
    assert await catalog_state(pool) == before
    ok(await post(client, f"{PRODUCTS}/{product['id']}", auth, {"default_price": ""}))
    assert ok(await post(client, path, auth, {"active": False}))["active"] is False


async def test_lookup_keys_are_unique_per_merchant_and_move_with_transfer_lookup_key(
    client: httpx.AsyncClient,
    auth: Headers,
    merchant: NewMerchant,
    pool: AsyncConnectionPool,
    clock: ManualClock,
    product: Json,
) -> None:
    terms = {"product": product["id"], "recurring": {"interval": "month"}}
    old = await new_price(client, auth, unit_amount=1499, lookup_key="premium", **terms)
    other = await new_price(client, auth, unit_amount=1, product=product["id"])

    before = await catalog_state(pool)
    taken = await post(
        client,
        PRICES,
        auth,
        {"currency": "usd", "unit_amount": 1599, "lookup_key": "premium", **terms},
    )
    message = assert_error(taken, 400, "lookup_key", None)
    assert message.startswith(f"A price (`{old['id']}`) already uses that lookup key.")
    assert_error(
        await post(client, f"{PRICES}/{other['id']}", auth, {"lookup_key": "premium"}),
        400,
        "lookup_key",
        None,
    )
    assert await catalog_state(pool) == before
    # Other merchants, and live mode, have lookup keys of their own.
    rival = await new_merchant(pool, clock, "Rival")
    rival_auth = {"Authorization": f"Bearer {rival.test_secret}"}
    rival_product = await new_product(client, rival_auth)
    await new_price(
        client, rival_auth, product=rival_product["id"], unit_amount=1, lookup_key="premium"
    )
    live = {"Authorization": f"Bearer {merchant.live_secret}"}
    live_product = await new_product(client, live)
    await new_price(client, live, product=live_product["id"], unit_amount=1, lookup_key="premium")
    async with pool.connection() as conn:
        cur = await conn.execute("SELECT count(*) FROM prices WHERE lookup_key = 'premium'")
        assert await cur.fetchone() == (3,)
    # Keeping one's own key is no change.
    same = await post(client, f"{PRICES}/{old['id']}", auth, {"lookup_key": "premium"})
    assert ok(same)["lookup_key"] == "premium"

    new = await new_price(
        client, auth, unit_amount=1599, lookup_key="premium", transfer_lookup_key=True, **terms
    )
    assert new["lookup_key"] == "premium"
    assert ok(await client.get(f"{PRICES}/{old['id']}", headers=auth))["lookup_key"] is None
    assert (await event_types(pool))[-2:] == [
        ("price.updated", old["id"]),
        ("price.created", new["id"]),
    ]
    assert ids(await get(client, PRICES, auth, lookup_keys="premium")) == [new["id"]]

    # And back, by update.
    moved = await post(
        client,
        f"{PRICES}/{old['id']}",
        auth,
        {"lookup_key": "premium", "transfer_lookup_key": True},
    )
    assert ok(moved)["lookup_key"] == "premium"
    assert ok(await client.get(f"{PRICES}/{new['id']}", headers=auth))["lookup_key"] is None
    assert (await event_types(pool))[-2:] == [
        ("price.updated", new["id"]),
        ("price.updated", old["id"]),
    ]


async def test_list_filters_and_paginates(
    client: httpx.AsyncClient, auth: Headers, pool: AsyncConnectionPool, clock: ManualClock
) -> None:
    basic = await new_product(client, auth, name="Basic")
    premium = await new_product(client, auth, name="Premium")
    month = {"interval": "month"}
    year = {"interval": "year"}
    made = [
        await new_price(
            client, auth, product=basic["id"], unit_amount=999, recurring=month, lookup_key="b_m"
        ),
        await new_price(
            client, auth, product=basic["id"], unit_amount=9990, recurring=year, lookup_key="b_y"
        ),
        await new_price(
            client, auth, product=premium["id"], currency="eur", unit_amount=1499, recurring=month
        ),
        await new_price(
            client, auth, product=premium["id"], currency="jpy", unit_amount=1980, recurring=month
        ),
        await new_price(client, auth, product=premium["id"], unit_amount=5000),
        await new_price(client, auth, product=premium["id"], unit_amount=1, active=False),
    ]
    other = await new_merchant(pool, clock, "Other")
    other_auth = {"Authorization": f"Bearer {other.test_secret}"}
    other_product = await new_product(client, other_auth)
    await new_price(
        client, other_auth, product=other_product["id"], unit_amount=1, lookup_key="b_m"
    )

    def at(*indexes: int) -> list[str]:
        return [made[i]["id"] for i in indexes]

    everything = await get(client, PRICES, auth)
    assert everything["url"] == PRICES and everything["has_more"] is False
    assert ids(everything) == at(5, 4, 3, 2, 1, 0)
    assert ids(await get(client, PRICES, auth, active="true")) == at(4, 3, 2, 1, 0)
    assert ids(await get(client, PRICES, auth, active="false")) == at(5)
    assert ids(await get(client, PRICES, auth, product=basic["id"])) == at(1, 0)
    assert ids(await get(client, PRICES, auth, type="one_time")) == at(5, 4)
    assert ids(await get(client, PRICES, auth, type="recurring")) == at(3, 2, 1, 0)
    assert ids(await get(client, PRICES, auth, currency="JPY")) == at(3)
    assert ids(await get(client, PRICES, auth, currency="usd")) == at(5, 4, 1, 0)
    assert ids(await get(client, PRICES, auth, **{"recurring[interval]": "month"})) == at(3, 2, 0)
    assert ids(await get(client, PRICES, auth, **{"recurring[interval]": "year"})) == at(1)
    both = await client.get(
        PRICES, headers=auth, params=[("lookup_keys[]", "b_m"), ("lookup_keys[]", "b_y")]
    )
    assert ids(ok(both)) == at(1, 0)
    indexed = await client.get(
        PRICES, headers=auth, params=[("lookup_keys[0]", "b_y"), ("lookup_keys[1]", "nope")]
    )
    assert ids(ok(indexed)) == at(1)
    combined = await get(
        client, PRICES, auth, product=premium["id"], type="recurring", currency="eur", active="true"
    )
    assert ids(combined) == at(2)

    page = await get(client, PRICES, auth, type="recurring", limit=3)
    assert (ids(page), page["has_more"]) == (at(3, 2, 1), True)
    page = await get(client, PRICES, auth, type="recurring", limit=3, starting_after=made[1]["id"])
    assert (ids(page), page["has_more"]) == (at(0), False)
    page = await get(client, PRICES, auth, limit=2, ending_before=made[2]["id"])
    assert (ids(page), page["has_more"]) == (at(4, 3), True)

    for params, param in [
        ({"type": "metered"}, "type"),
        ({"currency": "xyz"}, "currency"),
        ({"recurring[interval]": "hour"}, "recurring[interval]"),
        ({"recurring[usage_type]": "metered"}, "recurring[usage_type]"),
        ({"active": "perhaps"}, "active"),
        ({"starting_after": "price_missing"}, "starting_after"),
    ]:
        reply = await client.get(PRICES, headers=auth, params=params)
        assert reply.status_code == 400, reply.text
        assert reply.json()["error"]["param"] == param


async def test_another_merchants_price_is_not_found(
    client: httpx.AsyncClient, auth: Headers, pool: AsyncConnectionPool, clock: ManualClock
) -> None:
    other = await new_merchant(pool, clock, "Other")
    other_auth = {"Authorization": f"Bearer {other.test_secret}"}
    theirs = await new_price(
        client, other_auth, product=(await new_product(client, other_auth))["id"], unit_amount=1
    )
    path = f"{PRICES}/{theirs['id']}"
    before = await catalog_state(pool)
    assert_error(await client.get(path, headers=auth), 404, "id", "resource_missing")
    for body in ({}, {"nickname": "mine"}, {"active": False}):
        assert_error(await post(client, path, auth, body), 404, "id", "resource_missing")
    mine = await new_product(client, auth)
    reply = await post(client, f"{PRODUCTS}/{mine['id']}", auth, {"default_price": theirs["id"]})
    assert_error(reply, 404, "default_price", "resource_missing")
    assert ids(await get(client, PRICES, auth)) == []
    assert (await catalog_state(pool))[1] == before[1]


async def test_concurrent_takers_of_one_lookup_key_leave_one_holder_and_no_error(
    client: httpx.AsyncClient, auth: Headers, pool: AsyncConnectionPool, product: Json
) -> None:
    body = {"product": product["id"], "currency": "usd", "unit_amount": 1, "lookup_key": "k"}
    fresh = await asyncio.gather(*(post(client, PRICES, auth, body) for _ in range(4)))
    assert sorted(reply.status_code for reply in fresh) == [200, 400, 400, 400]
    for reply in fresh:
        if reply.status_code == 400:
            assert_error(reply, 400, "lookup_key", None)

    moving = {**body, "transfer_lookup_key": True}
    moved = await asyncio.gather(*(post(client, PRICES, auth, moving) for _ in range(4)))
    assert [reply.status_code for reply in moved] == [200] * 4
    async with pool.connection() as conn:
        cur = await conn.execute("SELECT id FROM prices WHERE lookup_key = 'k'")
        holders = [row[0] for row in await cur.fetchall()]
    assert len(holders) == 1 and holders[0] in {ok(reply)["id"] for reply in moved}
    assert ids(await get(client, PRICES, auth, lookup_keys="k")) == holders


async def test_a_create_retried_with_its_idempotency_key_makes_one_price(
    client: httpx.AsyncClient, auth: Headers, pool: AsyncConnectionPool, product: Json
) -> None:
    body = {"product": product["id"], "currency": "usd", "unit_amount": 999}
    headers = {**auth, "Idempotency-Key": "price-basic-1"}
    first = await client.post(PRICES, json=body, headers=headers)
    again = await client.post(PRICES, json=body, headers=headers)
    assert ok(again) == ok(first)
    assert again.headers["Idempotent-Replayed"] == "true"
    assert ids(await get(client, PRICES, auth)) == [ok(first)["id"]]
    assert [t for t, _ in await event_types(pool)].count("price.created") == 1
