"""Invoices and their collection attempts, written straight to the tables the billing
engine writes, for the failed-payments report's tests."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
from psycopg_pool import AsyncConnectionPool

from payrail.ids import new_id
from payrail.tenants.scope import Scope

T0 = datetime(2026, 1, 1, tzinfo=UTC)
WEEK = timedelta(days=7)


def hours(n: float) -> datetime:
    return T0 + timedelta(hours=n)


@dataclass(frozen=True)
class Attempt:
    outcome: str  # failed, succeeded, pending
    at: datetime
    decline_code: str | None = None
    decision: str | None = None
    connector: str | None = None


@dataclass(frozen=True)
class Invoice:
    currency: str
    amount: int
    status: str  # open, paid, void, uncollectible
    attempts: list[Attempt] = field(default_factory=list)
    # The subscription's status and cancellation reason, for an invoice that has one.
    subscription: tuple[str, str | None] | None = None


async def new_customer(client: httpx.AsyncClient, headers: dict[str, str]) -> str:
    reply = await client.post("/v1/customers", headers=headers, json={"email": "x@example.com"})
    assert reply.status_code == 200, reply.text
    customer_id: str = reply.json()["id"]
    return customer_id


async def _subscription(
    conn: Any, scope: Scope, customer_id: str, currency: str, status: str, reason: str | None
) -> str:
    product, price, sub = new_id("prod"), new_id("price"), new_id("sub")
    common = {"m": scope.merchant_id, "l": scope.livemode, "t": T0}
    await conn.execute(
        "INSERT INTO products (id, merchant_id, livemode, name, metadata, created_at, updated_at)"
        " VALUES (%(id)s, %(m)s, %(l)s, 'Premium', '{}', %(t)s, %(t)s)",
        {**common, "id": product},
    )
    await conn.execute(
        "INSERT INTO prices (id, merchant_id, livemode, product_id, type, currency, unit_amount,"
        " recurring_interval, recurring_interval_count, metadata, created_at)"
        " VALUES (%(id)s, %(m)s, %(l)s, %(product)s, 'recurring', %(c)s, 1000, 'month', 1,"
        " '{}', %(t)s)",
        {**common, "id": price, "product": product, "c": currency},
    )
    ended = T0 + WEEK if status == "canceled" else None
    await conn.execute(
        "INSERT INTO subscriptions (id, merchant_id, livemode, customer_id, status, item_id,"
        " price_id, quantity, currency, collection_method, billing_cycle_anchor, time_zone,"
        " current_period_start, current_period_end, canceled_at, ended_at,"
        " cancellation_reason, metadata, start_date, created_at, updated_at)"
        " VALUES (%(id)s, %(m)s, %(l)s, %(customer)s, %(status)s, %(item)s, %(price)s, 1,"
        " %(c)s, 'charge_automatically', %(t)s, 'UTC', %(t)s, %(end)s, %(ended)s, %(ended)s,"
        " %(reason)s, '{}', %(t)s, %(t)s, %(t)s)",
        {
            **common,
            "id": sub,
            "customer": customer_id,
            "status": status,
            "item": new_id("si"),
            "price": price,
            "c": currency,
            "end": T0 + timedelta(days=31),
            "ended": ended,
            "reason": reason,
        },
    )
    return sub


async def insert_invoice(
    pool: AsyncConnectionPool, scope: Scope, customer_id: str, invoice: Invoice
) -> str:
    invoice_id = new_id("in")
    paid = invoice.amount if invoice.status == "paid" else 0
    async with pool.connection() as conn, conn.transaction():
        subscription_id = None
        if invoice.subscription is not None:
            subscription_id = await _subscription(
                conn, scope, customer_id, invoice.currency, *invoice.subscription
            )
        await conn.execute(
            "INSERT INTO invoices (id, merchant_id, livemode, customer_id, subscription_id,"
            " billing_key, billing_reason, status, number, currency, collection_method,"
            " period_start, period_end, subtotal, total, amount_due, amount_paid,"
            " amount_remaining, metadata, created_at, updated_at)"
            " VALUES (%(id)s, %(m)s, %(l)s, %(customer)s, %(sub)s, %(id)s, 'manual', %(status)s,"
            " %(id)s, %(c)s, 'charge_automatically', %(t)s, %(t)s, %(amount)s, %(amount)s,"
            " %(amount)s, %(paid)s, %(remaining)s, '{}', %(t)s, %(t)s)",
            {
                "id": invoice_id,
                "m": scope.merchant_id,
                "l": scope.livemode,
                "customer": customer_id,
                "sub": subscription_id,
                "status": invoice.status,
                "c": invoice.currency,
                "t": T0,
                "amount": invoice.amount,
                "paid": paid,
                "remaining": invoice.amount - paid,
            },
        )
        for number, attempt in enumerate(invoice.attempts, start=1):
            intent_id = new_id("pi")
            intent_status = {"failed": "requires_payment_method", "pending": "processing"}
            await conn.execute(
                "INSERT INTO payment_intents (id, merchant_id, livemode, amount, currency, status,"
                " capture_method, customer_id, amount_received, metadata, created_at,"
                " updated_at, invoice_id)"
                " VALUES (%(id)s, %(m)s, %(l)s, %(amount)s, %(c)s, %(status)s, 'automatic',"
                " %(customer)s, %(received)s, '{}', %(t)s, %(t)s, %(invoice)s)",
                {
                    "id": intent_id,
                    "m": scope.merchant_id,
                    "l": scope.livemode,
                    "amount": invoice.amount,
                    "c": invoice.currency,
                    "status": intent_status.get(attempt.outcome, "succeeded"),
                    "customer": customer_id,
                    "received": invoice.amount if attempt.outcome == "succeeded" else 0,
                    "t": attempt.at,
                    "invoice": invoice_id,
                },
            )
            await conn.execute(
                "INSERT INTO invoice_payment_attempts (invoice_id, attempt, merchant_id,"
                " livemode, payment_intent_id, amount, currency, outcome, decline_code,"
                " decision, connector_account_id, attempted_at, decided_at)"
                " VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)",
                (
                    invoice_id,
                    number,
                    scope.merchant_id,
                    scope.livemode,
                    intent_id,
                    invoice.amount,
                    invoice.currency,
                    attempt.outcome,
                    attempt.decline_code,
                    attempt.decision,
                    attempt.connector,
                    attempt.at,
                    None if attempt.outcome == "pending" else attempt.at + timedelta(seconds=2),
                ),
            )
    return invoice_id
