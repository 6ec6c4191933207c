"""The dunning backlog gauges, set by `observe_dunning_backlog` from real invoice rows.

Customers and payment intents come through the API; invoices and their payment attempts
are written with SQL, as the billing engine would leave them.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

import httpx
from psycopg_pool import AsyncConnectionPool

from payrail.clock import ManualClock
from payrail.ops import metrics
from payrail.ops.dunning_metrics import observe_dunning_backlog
from payrail.tenants.service import NewMerchant
from tests.connectors.accounts.helpers import ok, send

Json = dict[str, Any]
DAY = timedelta(days=1)
HOUR = timedelta(hours=1)


async def made(client: httpx.AsyncClient, secret: str, path: str, body: Json) -> str:
    found = await ok(await send(client, {"Authorization": f"Bearer {secret}"}, path, body))
    made_id: str = found["id"]
    return made_id


class Invoices:
    """Writes invoices of one merchant and mode, with their payment attempts."""

    def __init__(self, pool: AsyncConnectionPool, merchant_id: str, livemode: bool) -> None:
        self.pool, self.merchant_id, self.livemode = pool, merchant_id, livemode
        self.customer = self.intent = ""

    async def add(
        self,
        invoice_id: str,
        currency: str,
        remaining: int,
        attempts: list[tuple[str, datetime]],
        *,
        status: str = "open",
        method: str = "charge_automatically",
        next_attempt: datetime | None = None,
        final_action: datetime | None = None,
        collecting: bool = False,
        test_clock: str | None = None,
    ) -> None:
        """`attempts`: (outcome, attempted_at) in order; `collecting`: an attempt's intent
        has no outcome yet."""
        now = attempts[0][1]
        async with self.pool.connection() as conn, conn.transaction():
            await conn.execute(
                "INSERT INTO invoices (id, merchant_id, livemode, customer_id, test_clock_id,"
                " billing_key, billing_reason, status, number, currency, collection_method,"
                " period_start, period_end, subtotal, total, amount_due, amount_remaining,"
                " attempt_count, payment_intent_id, next_payment_attempt, final_action_at,"
                " metadata, created_at, updated_at)"
                " VALUES (%s, %s, %s, %s, %s, %s, 'manual', %s, %s, %s, %s, %s, %s, %s, %s,"
                " %s, %s, %s, %s, %s, %s, '{}', %s, %s)",
                (
                    invoice_id,
                    self.merchant_id,
                    self.livemode,
                    self.customer,
                    test_clock,
                    invoice_id,
                    status,
                    f"N-{invoice_id}",
                    currency,
                    method,
                    now,
                    now + 30 * DAY,
                    remaining,
                    remaining,
                    remaining,
                    remaining,
                    len(attempts),
                    self.intent if collecting else None,
                    next_attempt,
                    final_action,
                    now,
                    now,
                ),
            )
            for number, (outcome, at) in enumerate(attempts, start=1):
                await conn.execute(
                    "INSERT INTO invoice_payment_attempts (invoice_id, attempt, merchant_id,"
                    " livemode, payment_intent_id, amount, currency, outcome, attempted_at)"
                    " VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s)",
                    (
                        invoice_id,
                        number,
                        self.merchant_id,
                        self.livemode,
                        self.intent,
                        remaining,
                        currency,
                        outcome,
                        at,
                    ),
                )


def gauges() -> dict[str, float | None]:
    """The backlog as the registry holds it, for the label sets these tests touch."""
    value = metrics.REGISTRY.get_sample_value
    found: dict[str, float | None] = {}
    for currency, mode in (("usd", "live"), ("eur", "live"), ("usd", "test")):
        found[f"invoices {currency} {mode}"] = value(
            "payrail_dunning_backlog_invoices", {"currency": currency, "mode": mode}
        )
        found[f"amount {currency} {mode}"] = value(
            "payrail_dunning_backlog_amount", {"currency": currency, "mode": mode}
        )
    for mode in ("live", "test"):
        found[f"age {mode}"] = value("payrail_dunning_backlog_oldest_age_seconds", {"mode": mode})
        found[f"overdue {mode}"] = value("payrail_dunning_overdue_seconds", {"mode": mode})
    return found


async def test_the_backlog_is_the_open_invoices_dunning_still_collects(
    client: httpx.AsyncClient,
    pool: AsyncConnectionPool,
    clock: ManualClock,
    merchant: NewMerchant,
) -> None:
    now = clock.now()
    live = Invoices(pool, merchant.id, livemode=True)
    test = Invoices(pool, merchant.id, livemode=False)
    for mode, secret in ((live, merchant.live_secret), (test, merchant.test_secret)):
        mode.customer = await made(client, secret, "/v1/customers", {"email": "jo@example.com"})
        mode.intent = await made(
            client, secret, "/v1/payment_intents", {"amount": 1500, "currency": "usd"}
        )
    retry = now + DAY
    # In the backlog: failed, with a retry or the final action still to come.
    await live.add(
        "in_a",
        "USD",
        1500,
        [("failed", now - 10 * DAY), ("failed", now - 7 * DAY)],
        next_attempt=retry,
    )
    await live.add(
        "in_b", "USD", 2500, [("failed", now - 3 * DAY), ("pending", now)], collecting=True
    )
    # Its retry was due two hours ago: the most overdue work.
    await live.add("in_c", "EUR", 700, [("failed", now - 2 * DAY)], next_attempt=now - 2 * HOUR)
    # A hard decline: waiting for another card until the final action.
    await live.add("in_j", "USD", 300, [("failed", now - DAY)], final_action=now + 5 * DAY)
    await test.add("in_h", "USD", 900, [("failed", now - DAY)], next_attempt=retry)
    # Not in it: paid, sent for the customer to pay, on its first attempt, past its last
    # retry, or on a test clock's simulated time.
    await live.add("in_d", "USD", 5000, [("failed", now - 20 * DAY)], status="paid")
    await live.add(
        "in_e",
        "USD",
        5000,
        [("failed", now - 20 * DAY)],
        method="send_invoice",
        next_attempt=retry,
    )
    await live.add("in_f", "USD", 5000, [("pending", now)], collecting=True)
    await live.add("in_g", "USD", 5000, [("failed", now - 40 * DAY)])
    async with pool.connection() as conn:
        await conn.execute(
            "INSERT INTO test_clocks (id, merchant_id, livemode, frozen_time, status,"
            " deletes_after, created_at) VALUES ('clock_1', %s, false, %s, 'ready', %s, %s)",
            (merchant.id, now - 400 * DAY, now + 30 * DAY, now),
        )
    await test.add(
        "in_i",
        "USD",
        5000,
        [("failed", now - 400 * DAY)],
        next_attempt=retry,
        test_clock="clock_1",
    )

    async with pool.connection() as conn:
        await observe_dunning_backlog(conn, now)
    assert gauges() == {
        "invoices usd live": 3,
        "amount usd live": 4300,
        "invoices eur live": 1,
        "amount eur live": 700,
        "invoices usd test": 1,
        "amount usd test": 900,
        "age live": (10 * DAY).total_seconds(),
        "age test": DAY.total_seconds(),
        "overdue live": (2 * HOUR).total_seconds(),
        "overdue test": 0,
    }

    # Time passes: the ages follow the clock given.
    async with pool.connection() as conn:
        await observe_dunning_backlog(conn, now + DAY)
    later = gauges()
    assert (later["age live"], later["overdue live"], later["overdue test"]) == (
        (11 * DAY).total_seconds(),
        (DAY + 2 * HOUR).total_seconds(),
        0,
    )

    # Everything is paid: each currency drops to 0 rather than keeping its last value.
    async with pool.connection() as conn:
        await conn.execute("UPDATE invoices SET status = 'paid' WHERE status = 'open'")
        await observe_dunning_backlog(conn, now)
    assert set(gauges().values()) == {0}
