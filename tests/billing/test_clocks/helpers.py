"""What the test clock tests share: API calls, and billing rows written as the billing
engine would leave them (SQL, since the subscriptions and invoices APIs are not ours)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import httpx
from psycopg import sql
from psycopg_pool import AsyncConnectionPool

from payrail.ids import new_id

Json = dict[str, Any]

CLOCKS = "/v1/test_helpers/test_clocks"
CUSTOMERS = "/v1/customers"
# 2023-11-14T22:13:20Z: a frozen time in the past of the suite's ManualClock (2026).
FROZEN = 1_700_000_000
DAY = 86_400


def bearer(secret: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {secret}"}


def ok(reply: httpx.Response) -> Json:
    assert reply.status_code == 200, reply.text
    obj: Json = reply.json()
    return obj


def assert_error(reply: httpx.Response, status: int, param: str | None, code: str | None) -> Json:
    assert reply.status_code == status, reply.text
    error: Json = reply.json()["error"]
    assert error["type"] == "invalid_request_error", error
    assert error.get("param") == param, error
    assert error.get("code") == code, error
    return error


async def new_clock(
    client: httpx.AsyncClient, headers: dict[str, str], frozen_time: int = FROZEN, **extra: Any
) -> Json:
    return ok(
        await client.post(CLOCKS, json={"frozen_time": frozen_time, **extra}, headers=headers)
    )


async def advance(
    client: httpx.AsyncClient, headers: dict[str, str], clock_id: str, frozen_time: int
) -> httpx.Response:
    return await client.post(
        f"{CLOCKS}/{clock_id}/advance", json={"frozen_time": frozen_time}, headers=headers
    )


async def new_customer(client: httpx.AsyncClient, headers: dict[str, str], **data: Any) -> Json:
    return ok(await client.post(CUSTOMERS, json=data, headers=headers))


async def events(pool: AsyncConnectionPool, aggregate_id: str) -> list[tuple[str, str, Json]]:
    """(type, aggregate_type, payload) of the events of one object, oldest first."""
    async with pool.connection() as conn:
        cur = await conn.execute(
            "SELECT type, aggregate_type, payload FROM events WHERE aggregate_id = %s ORDER BY seq",
            (aggregate_id,),
        )
        return [(kind, aggregate, payload) for kind, aggregate, payload in await cur.fetchall()]


async def clock_rows(pool: AsyncConnectionPool) -> list[tuple[Any, ...]]:
    """Every test clock as stored, for "nothing changed" checks."""
    async with pool.connection() as conn:
        cur = await conn.execute(
            "SELECT id, frozen_time, status, deleted_at FROM test_clocks ORDER BY seq"
        )
        return list(await cur.fetchall())


async def event_count(pool: AsyncConnectionPool) -> int:
    async with pool.connection() as conn:
        row = await (await conn.execute("SELECT count(*) FROM events")).fetchone()
    assert row is not None
    count: int = row[0]
    return count


async def new_price(
    pool: AsyncConnectionPool, merchant_id: str, interval: str = "month", count: int = 1
) -> str:
    """A recurring USD price (and its product), test mode."""
    product_id, price_id = new_id("prod"), new_id("price")
    async with pool.connection() as conn, conn.transaction():
        await conn.execute(
            "INSERT INTO products (id, merchant_id, livemode, name, metadata, created_at,"
            " updated_at) VALUES (%s, %s, false, 'Premium', '{}', now(), now())",
            (product_id, merchant_id),
        )
        await conn.execute(
            "INSERT INTO prices (id, merchant_id, livemode, product_id, type, currency,"
            " unit_amount, recurring_interval, recurring_interval_count, metadata, created_at)"
            " VALUES (%s, %s, false, %s, 'recurring', 'USD', 1500, %s, %s, '{}', now())",
            (price_id, merchant_id, product_id, interval, count),
        )
    return price_id


async def new_subscription(
    pool: AsyncConnectionPool,
    merchant_id: str,
    customer: Json,
    price_id: str,
    *,
    start: datetime,
    period_end: datetime,
    next_action_at: datetime | None,
    lease_expires_at: datetime | None = None,
    ended: bool = False,
) -> str:
    """A subscription of a customer on a test clock, as the billing engine keeps one."""
    subscription_id = new_id("sub")
    async with pool.connection() as conn:
        await conn.execute(
            """
            INSERT INTO subscriptions (
                id, merchant_id, livemode, customer_id, test_clock_id, status, item_id,
                price_id, quantity, currency, collection_method, billing_cycle_anchor,
                time_zone, current_period_start, current_period_end, metadata, start_date,
                created_at, updated_at, next_action_at, lease_owner, lease_expires_at,
                ended_at)
            VALUES (%(id)s, %(merchant)s, false, %(customer)s, %(clock)s, %(status)s, %(item)s,
                    %(price)s, 1, 'USD', 'charge_automatically', %(start)s, 'UTC', %(start)s,
                    %(end)s, '{}', %(start)s, %(start)s, %(start)s, %(next)s, %(owner)s,
                    %(lease)s, %(ended_at)s)
            """,
            {
                "id": subscription_id,
                "merchant": merchant_id,
                "customer": customer["id"],
                "clock": customer["test_clock"],
                "status": "canceled" if ended else "active",
                "item": new_id("si"),
                "price": price_id,
                "start": start,
                "end": period_end,
                "next": next_action_at,
                "owner": "worker-1" if lease_expires_at else None,
                "lease": lease_expires_at,
                "ended_at": start if ended else None,
            },
        )
    return subscription_id


async def new_invoice(
    pool: AsyncConnectionPool,
    merchant_id: str,
    customer: Json,
    *,
    period_start: datetime,
    period_end: datetime,
    next_payment_attempt: datetime | None,
    lease_expires_at: datetime | None = None,
) -> str:
    """A draft manual invoice of a customer on a test clock."""
    invoice_id = new_id("in")
    async with pool.connection() as conn:
        await conn.execute(
            """
            INSERT INTO invoices (
                id, merchant_id, livemode, customer_id, test_clock_id, billing_key,
                billing_reason, status, currency, collection_method, period_start, period_end,
                subtotal, total, amount_due, amount_remaining, metadata, created_at, updated_at,
                next_payment_attempt, lease_owner, lease_expires_at)
            VALUES (%(id)s, %(merchant)s, false, %(customer)s, %(clock)s, %(key)s, 'manual',
                    'draft', 'USD', 'charge_automatically', %(start)s, %(end)s, 1500, 1500,
                    1500, 1500, '{}', %(start)s, %(start)s, %(next)s, %(owner)s, %(lease)s)
            """,
            {
                "id": invoice_id,
                "merchant": merchant_id,
                "customer": customer["id"],
                "clock": customer["test_clock"],
                "key": f"manual:{invoice_id}",
                "start": period_start,
                "end": period_end,
                "next": next_payment_attempt,
                "owner": "worker-1" if lease_expires_at else None,
                "lease": lease_expires_at,
            },
        )
    return invoice_id


async def set_columns(pool: AsyncConnectionPool, table: str, row_id: str, **values: Any) -> None:
    """Change a row as the billing engine would."""
    assignments = sql.SQL(", ").join(
        sql.SQL("{} = {}").format(sql.Identifier(name), sql.Placeholder(name)) for name in values
    )
    query = sql.SQL("UPDATE {} SET {} WHERE id = %(row_id)s").format(
        sql.Identifier(table), assignments
    )
    async with pool.connection() as conn:
        await conn.execute(query, {**values, "row_id": row_id})
