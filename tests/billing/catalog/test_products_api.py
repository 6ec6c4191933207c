"""/v1/products over the API, as Stripe documents it: create (with a default price),
retrieve, update, list with the `active` filter and cursor pagination, and delete, which
Stripe allows only for a product without prices. A refused request changes nothing."""

from __future__ import annotations

from datetime import timedelta

import httpx
import pytest
from psycopg_pool import AsyncConnectionPool

from payrail.clock import ManualClock, unix
from payrail.tenants.service import NewMerchant
from tests.billing.catalog.helpers import (
    PRICES,
    PRODUCTS,
    Headers,
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


@pytest.mark.parametrize("as_form", [False, True], ids=["json", "form"])
async def test_create_returns_a_stripe_product(
    client: httpx.AsyncClient,
    auth: Headers,
    pool: AsyncConnectionPool,
    clock: ManualClock,
    as_form: bool,
) -> None:
    body = {"name": "Premium", "description": "HD, 4 screens", "metadata": {"tier": "2"}}
    product = ok(await post(client, PRODUCTS, auth, body, as_form=as_form))
    assert product["id"].startswith("prod_")
    assert product == {
        "id": product["id"],
        "object": "product",
        "active": True,
        "created": unix(clock.now()),
        "default_price": None,
        "description": "HD, 4 screens",
        "images": [],
        "livemode": False,
        "marketing_features": [],
        "metadata": {"tier": "2"},
        "name": "Premium",
        "package_dimensions": None,
        "shippable": None,
        "statement_descriptor": None,
        "tax_code": None,
        "type": "service",
        "unit_label": None,
        "updated": unix(clock.now()),
        "url": None,
    }
    assert ok(await client.get(f"{PRODUCTS}/{product['id']}", headers=auth)) == product
    assert (await event_types(pool))[-1] == ("product.created", product["id"])


async def test_create_with_default_price_data_makes_the_price_too(
    client: httpx.AsyncClient, auth: Headers, pool: AsyncConnectionPool
) -> None:
    data = {
        "currency": "EUR",
        "unit_amount": 1299,
        "recurring": {"interval": "month", "interval_count": 3},
    }
    product = await new_product(client, auth, name="Premium", default_price_data=data)
    price_id = product["default_price"]
    assert price_id.startswith("price_")
    price = ok(await client.get(f"{PRICES}/{price_id}", headers=auth))
    assert (price["product"], price["currency"], price["unit_amount"], price["type"]) == (
        product["id"],
        "eur",
        1299,
        "recurring",
    )
    assert price["recurring"]["interval"] == "month"
    assert price["recurring"]["interval_count"] == 3
    assert (await event_types(pool))[-2:] == [
        ("product.created", product["id"]),
        ("price.created", price_id),
    ]

    one_time = await new_product(
        client, auth, name="Setup", default_price_data={"currency": "usd", "unit_amount": 5000}
    )
    setup = ok(await client.get(f"{PRICES}/{one_time['default_price']}", headers=auth))
    assert (setup["type"], setup["recurring"], setup["unit_amount"]) == ("one_time", None, 5000)


@pytest.mark.parametrize(
    ("body", "param", "code"),
    [
        ({}, "name", "parameter_missing"),
        ({"name": ""}, "name", "parameter_invalid"),
        ({"name": "B", "active": "maybe"}, "active", "parameter_invalid"),
        ({"name": "B", "type": "good"}, "type", "parameter_unknown"),
        (
            {"name": "B", "default_price_data": {"currency": "xyz", "unit_amount": 1}},
            "default_price_data[currency]",
            "parameter_invalid",
        ),
        (
            {"name": "B", "default_price_data": {"currency": "usd", "unit_amount": -5}},
            "default_price_data[unit_amount]",
            "parameter_invalid",
        ),
        (
            {"name": "B", "default_price_data": {"currency": "usd"}},
            "default_price_data[unit_amount]",
            "parameter_missing",
        ),
        (
            {
                "name": "B",
                "default_price_data": {
                    "currency": "usd",
                    "unit_amount": 1,
                    "recurring": {"interval": "month", "interval_count": 0},
                },
            },
            "default_price_data[recurring][interval_count]",
            "parameter_invalid",
        ),
        (
            {
                "name": "B",
                "default_price_data": {
                    "currency": "usd",
                    "unit_amount": 1,
                    "recurring": {"interval": "year", "interval_count": 4},
                },
            },
            "default_price_data[recurring][interval_count]",
            "parameter_invalid",
        ),
    ],
)
async def test_a_bad_create_is_refused_naming_the_field_and_changes_nothing(
    client: httpx.AsyncClient,
    auth: Headers,
    pool: AsyncConnectionPool,
    body: dict[str, object],
    param: str,
    code: str,
) -> None:
    before = await catalog_state(pool)
    assert_error(await post(client, PRODUCTS, auth, body), 400, param, code)
    assert await catalog_state(pool) == before


async def test_update_changes_fields_merges_metadata_and_sets_the_default_price(
    client: httpx.AsyncClient, auth: Headers, pool: AsyncConnectionPool, clock: ManualClock
) -> None:
    product = await new_product(client, auth, description="old", metadata={"a": "1", "b": "2"})
    path = f"{PRODUCTS}/{product['id']}"
    clock.advance(timedelta(seconds=90))
    monthly = await new_price(client, auth, product=product["id"], unit_amount=999)

    body = {
        "name": "Basic (2026)",
        "description": "",
        "metadata": {"b": "", "c": "3"},
        "default_price": monthly["id"],
    }
    updated = ok(await post(client, path, auth, body, as_form=True))
    assert updated == {
        **product,
        "name": "Basic (2026)",
        "description": None,
        "metadata": {"a": "1", "c": "3"},
        "default_price": monthly["id"],
        "updated": unix(clock.now()),
    }
    assert ok(await client.get(path, headers=auth)) == updated
    assert (await event_types(pool))[-1] == ("product.updated", product["id"])

    archived = ok(await post(client, path, auth, {"active": False}))
    assert archived["active"] is False and archived["default_price"] == monthly["id"]
    # An update that changes nothing writes nothing and emits nothing.
    before = await catalog_state(pool)
    assert ok(await post(client, path, auth, {"active": False})) == archived
    assert ok(await post(client, path, auth, {})) == archived
    assert await catalog_state(pool) == before

    unset = ok(await post(client, path, auth, {"default_price": ""}))
    assert unset["default_price"] is None


async def test_the_default_price_must_be_an_active_price_of_the_product(
    client: httpx.AsyncClient, auth: Headers, pool: AsyncConnectionPool
) -> None:
    product = await new_product(client, auth)
    other = await new_product(client, auth, name="Other")
    foreign = await new_price(client, auth, product=other["id"], unit_amount=1)
    archived = await new_price(client, auth, product=product["id"], unit_amount=1, active=False)
    path = f"{PRODUCTS}/{product['id']}"
    before = await catalog_state(pool)

    missing = await post(client, path, auth, {"default_price": "price_missing"})
    assert "price_missing" in assert_error(missing, 404, "default_price", "resource_missing")
    reply = await post(client, path, auth, {"default_price": foreign["id"]})
    assert "belongs to another product" in assert_error(reply, 400, "default_price", None)
    reply = await post(client, path, auth, {"default_price": archived["id"]})
    assert "is archived" in assert_error(reply, 400, "default_price", None)
    reply = await post(client, path, auth, {"name": ""})
    assert_error(reply, 400, "name")
    reply = await post(client, path, auth, {"default_price_data": {"currency": "usd"}})
    assert_error(reply, 400, "default_price_data", "parameter_unknown")
    assert await catalog_state(pool) == before


async def test_delete_only_a_product_without_prices(
    client: httpx.AsyncClient, auth: Headers, pool: AsyncConnectionPool
) -> None:
    empty = await new_product(client, auth, name="Never sold")
    priced = await new_product(client, auth, name="Sold")
    await new_price(client, auth, product=priced["id"], unit_amount=500)

    before = await catalog_state(pool)
    refused = await client.delete(f"{PRODUCTS}/{priced['id']}", headers=auth)
    message = assert_error(refused, 400, "id", None)
    assert message.startswith(
        "This product cannot be deleted because it has one or more user-created prices."
    )
    assert await catalog_state(pool) == before

    deleted = ok(await client.delete(f"{PRODUCTS}/{empty['id']}", headers=auth))
    assert deleted == {"id": empty["id"], "object": "product", "deleted": True}
    assert (await event_types(pool))[-1] == ("product.deleted", empty["id"])
    gone = await client.get(f"{PRODUCTS}/{empty['id']}", headers=auth)
    assert_error(gone, 404, "id", "resource_missing")
    again = await client.delete(f"{PRODUCTS}/{empty['id']}", headers=auth)
    assert_error(again, 404, "id", "resource_missing")
    assert ids(await get(client, PRODUCTS, auth)) == [priced["id"]]
    # A price cannot be made for a deleted product.
    reply = await post(
        client, PRICES, auth, {"currency": "usd", "unit_amount": 1, "product": empty["id"]}
    )
    assert_error(reply, 404, "product", "resource_missing")


async def test_list_is_newest_first_filters_active_and_paginates(
    client: httpx.AsyncClient,
    auth: Headers,
    merchant: NewMerchant,
    pool: AsyncConnectionPool,
    clock: ManualClock,
) -> None:
    empty = await get(client, PRODUCTS, auth)
    assert empty == {"object": "list", "url": PRODUCTS, "has_more": False, "data": []}
    made = [await new_product(client, auth, name=f"Tier {i}") for i in range(5)]
    for i in (1, 3):
        ok(await post(client, f"{PRODUCTS}/{made[i]['id']}", auth, {"active": False}))
    # Another merchant's products, and this one's in live mode, are not listed.
    other = await new_merchant(pool, clock, "Other")
    await new_product(client, {"Authorization": f"Bearer {other.test_secret}"})
    live = {"Authorization": f"Bearer {merchant.live_secret}"}
    live_product = await new_product(client, live)
    assert live_product["livemode"] is True
    assert ids(await get(client, PRODUCTS, live)) == [live_product["id"]]

    newest_first = [p["id"] for p in reversed(made)]
    assert ids(await get(client, PRODUCTS, auth)) == newest_first
    assert ids(await get(client, PRODUCTS, auth, active="true")) == [
        made[4]["id"],
        made[2]["id"],
        made[0]["id"],
    ]
    assert ids(await get(client, PRODUCTS, auth, active="false")) == [made[3]["id"], made[1]["id"]]

    first = await get(client, PRODUCTS, auth, limit=2)
    assert (ids(first), first["has_more"]) == (newest_first[:2], True)
    rest = await get(client, PRODUCTS, auth, limit=3, starting_after=newest_first[1])
    assert (ids(rest), rest["has_more"]) == (newest_first[2:], False)
    back = await get(client, PRODUCTS, auth, limit=1, ending_before=newest_first[2])
    assert (ids(back), back["has_more"]) == ([newest_first[1]], True)
    active_page = await get(client, PRODUCTS, auth, active="true", limit=1)
    assert (ids(active_page), active_page["has_more"]) == ([made[4]["id"]], True)

    bad: list[tuple[dict[str, str | int], str]] = [
        ({"active": "sometimes"}, "active"),
        ({"limit": 0}, "limit"),
        ({"starting_after": "prod_missing"}, "starting_after"),
    ]
    for params, param in bad:
        reply = await client.get(PRODUCTS, headers=auth, params=params)
        assert reply.status_code == 400, reply.text
        assert reply.json()["error"]["param"] == param


async def test_another_merchants_product_is_not_found(
    client: httpx.AsyncClient, auth: Headers, pool: AsyncConnectionPool, clock: ManualClock
) -> None:
    other = await new_merchant(pool, clock, "Other")
    theirs = await new_product(client, {"Authorization": f"Bearer {other.test_secret}"})
    path = f"{PRODUCTS}/{theirs['id']}"
    before = await catalog_state(pool)
    assert_error(await client.get(path, headers=auth), 404, "id", "resource_missing")
    assert_error(await post(client, path, auth, {"name": "Mine"}), 404, "id", "resource_missing")
    assert_error(await client.delete(path, headers=auth), 404, "id", "resource_missing")
    body = {"currency": "usd", "unit_amount": 1, "product": theirs["id"]}
    assert_error(await post(client, PRICES, auth, body), 404, "product", "resource_missing")
    assert await catalog_state(pool) == before
