"""Subscriptions end to end over the API and the billing engine, against the sandbox PSP:
charged once per period, on the day the anchor says, with the ledger tying out."""

from __future__ import annotations

from datetime import UTC, datetime

from psycopg_pool import AsyncConnectionPool

from payrail.billing.engine import Engine
from payrail.clock import ManualClock
from payrail.ledger.verify import verify
from tests.billing.conftest import Api, customer_with_card, monthly_price


def at(*parts: int) -> datetime:
    return datetime(*parts, tzinfo=UTC)  # type: ignore[arg-type, misc]


async def balances(pool: AsyncConnectionPool, merchant_id: str) -> dict[str, int]:
    """Billing's and payments' ledger balances by purpose (debit-normal sign for assets)."""
    async with pool.connection() as conn:
        cur = await conn.execute(
            """
            SELECT purpose, sum(CASE WHEN b.normal_balance = 'debit'
                THEN b.debits_posted - b.credits_posted
                ELSE b.credits_posted - b.debits_posted END) FROM (
                SELECT purpose, ledger_account_id FROM billing_ledger_accounts
                WHERE merchant_id = %s
                UNION ALL
                SELECT purpose, ledger_account_id FROM payment_ledger_accounts
                WHERE merchant_id = %s
            ) a JOIN ledger_balances b ON b.account_id = a.ledger_account_id
            GROUP BY purpose
            """,
            (merchant_id, merchant_id),
        )
        return {purpose: int(total) for purpose, total in await cur.fetchall()}


async def test_a_subscription_is_charged_once_per_period_keeping_the_day_of_month(
    api: Api, engine: Engine, clock: ManualClock, pool: AsyncConnectionPool
) -> None:
    clock.current = at(2026, 1, 31, 12)
    price = await monthly_price(api, 1000)
    customer = await customer_with_card(api)
    sub = await api.post(
        "/v1/subscriptions", {"customer": customer["id"], "items": [{"price": price["id"]}]}
    )
    assert sub["status"] == "active"
    assert (sub["current_period_start"], sub["current_period_end"]) == (
        int(at(2026, 1, 31, 12).timestamp()),
        int(at(2026, 2, 28, 12).timestamp()),
    )
    first = await api.get(f"/v1/invoices/{sub['latest_invoice']}")
    assert (first["status"], first["amount_paid"], first["billing_reason"]) == (
        "paid",
        1000,
        "subscription_create",
    )
    assert first["number"].endswith("-0001")

    # Nothing is due before the period ends.
    assert (await engine.run_once()).renewed == 0
    expected_ends = [at(2026, 3, 31, 12), at(2026, 4, 30, 12), at(2026, 5, 31, 12)]
    for number, end in enumerate(expected_ends, start=2):
        clock.current = datetime.fromtimestamp(
            (await api.get(f"/v1/subscriptions/{sub['id']}"))["current_period_end"], UTC
        )
        assert (await engine.run_once()).renewed == 1
        assert (await engine.run_once()).renewed == 0  # billed once, however often it runs
        sub = await api.get(f"/v1/subscriptions/{sub['id']}")
        assert sub["current_period_end"] == int(end.timestamp())
        invoice = await api.get(f"/v1/invoices/{sub['latest_invoice']}")
        assert (invoice["status"], invoice["billing_reason"], invoice["amount_paid"]) == (
            "paid",
            "subscription_cycle",
            1000,
        )
        assert invoice["number"].endswith(f"-{number:04d}")
    invoices = await api.get("/v1/invoices", subscription=sub["id"], limit=100)
    assert len(invoices["data"]) == 4
    money = await balances(pool, await merchant_of(pool, sub["id"]))
    assert money["receivable"] == 0
    assert money["payment_clearing"] == 0
    assert money["deferred_revenue"] + money["subscription_revenue"] == 4000
    assert money["provider_balance"] > 0
    async with pool.connection() as conn:
        assert (await verify(conn)).ok


async def merchant_of(pool: AsyncConnectionPool, sub_id: str) -> str:
    async with pool.connection() as conn:
        cur = await conn.execute("SELECT merchant_id FROM subscriptions WHERE id = %s", (sub_id,))
        row = await cur.fetchone()
        assert row is not None
        return str(row[0])


async def test_a_trial_bills_nothing_until_it_ends(
    api: Api, engine: Engine, clock: ManualClock
) -> None:
    clock.current = at(2026, 3, 1)
    price = await monthly_price(api, 2500, currency="eur")
    customer = await customer_with_card(api)
    sub = await api.post(
        "/v1/subscriptions",
        {"customer": customer["id"], "items": [{"price": price["id"]}], "trial_period_days": 14},
    )
    assert sub["status"] == "trialing"
    assert sub["trial_end"] == int(at(2026, 3, 15).timestamp())
    trial_invoice = await api.get(f"/v1/invoices/{sub['latest_invoice']}")
    assert (trial_invoice["status"], trial_invoice["total"]) == ("paid", 0)
    clock.current = at(2026, 3, 15)
    assert (await engine.run_once()).renewed == 1
    sub = await api.get(f"/v1/subscriptions/{sub['id']}")
    assert sub["status"] == "active"
    assert sub["current_period_end"] == int(at(2026, 4, 15).timestamp())
    invoice = await api.get(f"/v1/invoices/{sub['latest_invoice']}")
    assert (invoice["status"], invoice["amount_paid"], invoice["currency"]) == ("paid", 2500, "eur")


async def test_a_failed_renewal_is_retried_on_the_schedule_and_recovered(
    api: Api, engine: Engine, clock: ManualClock
) -> None:
    clock.current = at(2026, 1, 10)
    price = await monthly_price(api, 1200)
    customer = await customer_with_card(api)
    sub = await api.post(
        "/v1/subscriptions", {"customer": customer["id"], "items": [{"price": price["id"]}]}
    )
    failing = await api.post(
        "/v1/payment_methods/pm_card_chargeCustomerFail/attach", {"customer": customer["id"]}
    )
    await api.post(
        f"/v1/customers/{customer['id']}",
        {"invoice_settings": {"default_payment_method": failing["id"]}},
    )
    clock.current = at(2026, 2, 10)
    await engine.run_once()
    sub = await api.get(f"/v1/subscriptions/{sub['id']}")
    assert sub["status"] == "past_due"
    invoice = await api.get(f"/v1/invoices/{sub['latest_invoice']}")
    assert (invoice["status"], invoice["attempt_count"]) == ("open", 1)
    assert invoice["next_payment_attempt"] == int(at(2026, 2, 11).timestamp())

    # The next retry fails too; the customer then saves a card that works.
    clock.current = at(2026, 2, 11)
    await engine.run_once()
    invoice = await api.get(f"/v1/invoices/{invoice['id']}")
    assert (invoice["attempt_count"], invoice["next_payment_attempt"]) == (
        2,
        int(at(2026, 2, 13).timestamp()),
    )
    working = await api.post(
        "/v1/payment_methods/pm_card_mastercard/attach", {"customer": customer["id"]}
    )
    await api.post(
        f"/v1/customers/{customer['id']}",
        {"invoice_settings": {"default_payment_method": working["id"]}},
    )
    # A new card is tried at once, not at the next slot of the schedule (Feb 13th).
    assert (await api.get(f"/v1/invoices/{invoice['id']}"))["next_payment_attempt"] == int(
        at(2026, 2, 11).timestamp()
    )
    await engine.run_once()
    invoice = await api.get(f"/v1/invoices/{invoice['id']}")
    assert (invoice["status"], invoice["attempt_count"], invoice["amount_paid"]) == (
        "paid",
        3,
        1200,
    )
    assert (await api.get(f"/v1/subscriptions/{sub['id']}"))["status"] == "active"
    failed = await api.get("/v1/events", type="invoice.payment_failed")
    assert [e["data"]["object"]["id"] for e in failed["data"]] == [invoice["id"]] * 2
