"""A price that has been used keeps its terms for ever, and PostgreSQL is what refuses
(trigger prices_immutable_once_used, migration 0014): even SQL that bypasses the API
cannot change a used price's amount, currency, interval or product, nor unmark it, nor
delete any price. What may change — archiving, renaming, metadata, the lookup key —
still can. And the functions subscriptions call: recurring_price and mark_used."""

from __future__ import annotations

from typing import Any

import httpx
import psycopg
import pytest
from psycopg_pool import AsyncConnectionPool

from payrail.billing.catalog import service
from payrail.clock import ManualClock
from payrail.errors import InvalidRequest, NotFound
from payrail.tenants.scope import Scope
from payrail.tenants.service import NewMerchant
from tests.billing.catalog.helpers import (
    PRICES,
    PRODUCTS,
    Headers,
    Json,
    catalog_state,
    new_price,
    new_product,
    ok,
    post,
)
from tests.conftest import new_merchant


@pytest.fixture
def scope(merchant: NewMerchant) -> Scope:
    return Scope(merchant.id, livemode=False)


@pytest.fixture
async def monthly(client: httpx.AsyncClient, auth: Headers) -> Json:
    product = await new_product(client, auth, name="Premium")
    return await new_price(
        client,
        auth,
        product=product["id"],
        unit_amount=1499,
        recurring={"interval": "month", "trial_period_days": 7},
        nickname="Premium monthly",
    )


async def use(pool: AsyncConnectionPool, *price_ids: str) -> None:
    async with pool.connection() as conn, conn.transaction():
        await service.mark_used(conn, list(price_ids))


async def used(pool: AsyncConnectionPool, price_id: str) -> bool:
    async with pool.connection() as conn:
        cur = await conn.execute("SELECT used FROM prices WHERE id = %s", (price_id,))
        row = await cur.fetchone()
    assert row is not None
    return bool(row[0])


@pytest.mark.parametrize(
    "assignment",
    [
        "unit_amount = 1599",
        "currency = 'EUR'",
        "recurring_interval = 'year'",
        "recurring_interval_count = 2",
        "type = 'one_time', recurring_interval = NULL, recurring_interval_count = NULL,"
        " trial_period_days = NULL",
        "product_id = (SELECT id FROM products WHERE name = 'Other')",
        "used = false",
    ],
)
async def test_the_database_refuses_to_change_a_used_prices_terms(
    client: httpx.AsyncClient,
    auth: Headers,
    pool: AsyncConnectionPool,
    monthly: Json,
    assignment: str,
) -> None:
    await new_product(client, auth, name="Other")
    query = f"UPDATE prices SET {assignment} WHERE id = %s"
    # Before it is used, the row itself may still change (the API never does it: a
    # price's terms never change; the database's rule is for used prices).
    async with pool.connection() as conn, conn.transaction(force_rollback=True):
        cur = await conn.execute(query, (monthly["id"],))
        assert cur.rowcount == 1

    await use(pool, monthly["id"])
    before = await catalog_state(pool)
    async with pool.connection() as conn:
        with pytest.raises(psycopg.errors.IntegrityConstraintViolation) as raised:
            await conn.execute(query, (monthly["id"],))
    assert f"price {monthly['id']} was used" in str(raised.value)
    assert await catalog_state(pool) == before
    assert ok(await client.get(f"{PRICES}/{monthly['id']}", headers=auth)) == monthly


async def test_no_price_is_ever_deleted(pool: AsyncConnectionPool, monthly: Json) -> None:
    async with pool.connection() as conn:
        with pytest.raises(psycopg.errors.IntegrityConstraintViolation) as raised:
            await conn.execute("DELETE FROM prices WHERE id = %s", (monthly["id"],))
    assert "prices are never deleted" in str(raised.value)


async def test_a_used_price_can_still_be_archived_renamed_and_relabelled(
    client: httpx.AsyncClient, auth: Headers, pool: AsyncConnectionPool, monthly: Json
) -> None:
    await use(pool, monthly["id"])
    path = f"{PRICES}/{monthly['id']}"
    body = {
        "active": False,
        "nickname": "Premium monthly (2025 price)",
        "lookup_key": "premium_2025",
        "metadata": {"retired": "2026-01"},
    }
    updated = ok(await post(client, path, auth, body))
    assert updated == {
        **monthly,
        "active": False,
        "nickname": "Premium monthly (2025 price)",
        "lookup_key": "premium_2025",
        "metadata": {"retired": "2026-01"},
    }
    # The lookup key moves from a used price to its successor, too.
    successor = await new_price(
        client,
        auth,
        product=monthly["product"],
        unit_amount=1599,
        recurring={"interval": "month"},
        lookup_key="premium_2025",
        transfer_lookup_key=True,
    )
    assert successor["lookup_key"] == "premium_2025"
    assert ok(await client.get(path, headers=auth))["lookup_key"] is None
    assert await used(pool, monthly["id"]) and not await used(pool, successor["id"])
    # And through SQL: what is not a term may change.
    async with pool.connection() as conn:
        await conn.execute(
            "UPDATE prices SET active = true, nickname = 'again' WHERE id = %s", (monthly["id"],)
        )
    again = ok(await client.get(path, headers=auth))
    assert (again["active"], again["nickname"], again["unit_amount"]) == (True, "again", 1499)


async def test_mark_used_sets_used_once_and_only_on_the_prices_named(
    client: httpx.AsyncClient, auth: Headers, pool: AsyncConnectionPool, monthly: Json
) -> None:
    other = await new_price(client, auth, product=monthly["product"], unit_amount=1)
    assert not await used(pool, monthly["id"])
    await use(pool, monthly["id"])
    assert await used(pool, monthly["id"]) and not await used(pool, other["id"])
    # Again, with an unknown id among them: no error, nothing else changes.
    await use(pool, monthly["id"], "price_unknown")
    assert await used(pool, monthly["id"]) and not await used(pool, other["id"])
    # Marking again does not write the row: its xmin (the writing transaction) stays.
    async with pool.connection() as conn:
        xmin = await (
            await conn.execute("SELECT xmin::text FROM prices WHERE id = %s", (monthly["id"],))
        ).fetchone()
    await use(pool, monthly["id"])
    async with pool.connection() as conn:
        after = await (
            await conn.execute("SELECT xmin::text FROM prices WHERE id = %s", (monthly["id"],))
        ).fetchone()
    assert after == xmin


async def test_recurring_price_returns_the_row_a_subscription_may_use(
    pool: AsyncConnectionPool, scope: Scope, monthly: Json
) -> None:
    async with pool.connection() as conn:
        row = await service.recurring_price(conn, scope, monthly["id"], param="items[0][price]")
        assert service.price_object(row) == monthly
        assert (row["currency"], row["unit_amount"], row["recurring_interval"]) == (
            "USD",
            1499,
            "month",
        )
        assert (row["recurring_interval_count"], row["trial_period_days"]) == (1, 7)
        assert (row["used"], row["product_active"]) == (False, True)
        fetched = await service.fetch_prices(conn, scope, [monthly["id"], "price_unknown"])
        assert fetched == [row]


async def refusal(pool: AsyncConnectionPool, scope: Scope, price_id: str) -> Any:
    async with pool.connection() as conn:
        with pytest.raises((InvalidRequest, NotFound)) as raised:
            await service.recurring_price(conn, scope, price_id, param="items[0][price]")
    return raised.value


async def test_recurring_price_refuses_what_a_subscription_may_not_use(
    client: httpx.AsyncClient,
    auth: Headers,
    pool: AsyncConnectionPool,
    clock: ManualClock,
    merchant: NewMerchant,
    scope: Scope,
    monthly: Json,
) -> None:
    missing = await refusal(pool, scope, "price_unknown")
    assert isinstance(missing, NotFound)
    assert (missing.param, missing.status, missing.message) == (
        "items[0][price]",
        404,
        "No such price: 'price_unknown'",
    )
    # Another merchant's price, and this merchant's in the other mode, do not exist here.
    other = await new_merchant(pool, clock, "Other")
    other_auth = {"Authorization": f"Bearer {other.test_secret}"}
    theirs = await new_price(
        client,
        other_auth,
        product=(await new_product(client, other_auth))["id"],
        unit_amount=1,
        recurring={"interval": "month"},
    )
    assert isinstance(await refusal(pool, scope, theirs["id"]), NotFound)
    live_scope = Scope(merchant.id, livemode=True)
    assert isinstance(await refusal(pool, live_scope, monthly["id"]), NotFound)

    one_time = await new_price(client, auth, product=monthly["product"], unit_amount=500)
    error = await refusal(pool, scope, one_time["id"])
    assert isinstance(error, InvalidRequest) and error.param == "items[0][price]"
    assert "`type=one_time`" in error.message

    archived = await new_price(
        client,
        auth,
        product=monthly["product"],
        unit_amount=1,
        recurring={"interval": "month"},
        active=False,
    )
    error = await refusal(pool, scope, archived["id"])
    assert isinstance(error, InvalidRequest) and error.param == "items[0][price]"
    assert "is archived (active=false)" in error.message

    ok(await post(client, f"{PRODUCTS}/{monthly['product']}", auth, {"active": False}))
    error = await refusal(pool, scope, monthly["id"])
    assert isinstance(error, InvalidRequest) and error.param == "items[0][price]"
    assert f"belongs to product `{monthly['product']}`" in error.message
