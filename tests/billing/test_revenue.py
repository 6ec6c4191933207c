"""Deferred revenue is recognised as its period passes: once, in proportion, and only
for invoices that stand."""

from __future__ import annotations

from datetime import UTC, datetime

from psycopg_pool import AsyncConnectionPool

from payrail.billing import revenue
from payrail.billing.engine import Engine
from payrail.clock import ManualClock
from payrail.ledger.verify import verify
from tests.billing.conftest import Api, customer_with_card, monthly_price
from tests.billing.test_subscription_flows import balances, merchant_of

START = datetime(2026, 4, 1, tzinfo=UTC)
END = datetime(2026, 5, 1, tzinfo=UTC)


def test_the_earned_share_is_rounded_toward_zero() -> None:
    third = datetime(2026, 4, 11, tzinfo=UTC)
    assert revenue.recognized_by(1000, START, END, third) == 333
    assert revenue.recognized_by(-1000, START, END, third) == -333
    assert revenue.recognized_by(1000, START, END, START) == 0
    assert revenue.recognized_by(1000, START, END, END) == 1000
    assert revenue.recognized_by(1000, START, END, datetime(2027, 1, 1, tzinfo=UTC)) == 1000


async def test_a_period_is_recognised_as_it_passes_and_once(
    api: Api, engine: Engine, clock: ManualClock, pool: AsyncConnectionPool
) -> None:
    clock.current = START
    price = await monthly_price(api, 3000)
    customer = await customer_with_card(api)
    sub = await api.post(
        "/v1/subscriptions", {"customer": customer["id"], "items": [{"price": price["id"]}]}
    )
    merchant = await merchant_of(pool, sub["id"])
    assert (await balances(pool, merchant))["deferred_revenue"] == 3000

    clock.current = datetime(2026, 4, 16, tzinfo=UTC)  # half of April gone
    assert await revenue.recognize(pool, clock) == 1
    assert await revenue.recognize(pool, clock) == 0  # nothing new since
    money = await balances(pool, merchant)
    assert (money["deferred_revenue"], money["subscription_revenue"]) == (1500, 1500)

    clock.current = END
    await engine.run_once()  # May is invoiced, and deferred
    assert await revenue.recognize(pool, clock) == 1  # April's line completes
    money = await balances(pool, merchant)
    assert (money["deferred_revenue"], money["subscription_revenue"]) == (3000, 3000)
    async with pool.connection() as conn:
        assert (await verify(conn)).ok


async def test_a_voided_invoice_takes_its_recognised_revenue_back(
    api: Api, clock: ManualClock, pool: AsyncConnectionPool
) -> None:
    clock.current = START
    price = await monthly_price(api, 3000)
    customer = await customer_with_card(api, card="pm_card_chargeCustomerFail")
    sub = await api.post(
        "/v1/subscriptions", {"customer": customer["id"], "items": [{"price": price["id"]}]}
    )
    assert sub["status"] == "incomplete"
    merchant = await merchant_of(pool, sub["id"])
    clock.current = datetime(2026, 4, 16, tzinfo=UTC)
    await revenue.recognize(pool, clock)
    assert (await balances(pool, merchant))["subscription_revenue"] == 1500
    voided = await api.post(f"/v1/invoices/{sub['latest_invoice']}/void")
    assert voided["status"] == "void"
    money = await balances(pool, merchant)
    assert (money["receivable"], money["deferred_revenue"], money["subscription_revenue"]) == (
        0,
        0,
        0,
    )
    clock.current = END
    assert await revenue.recognize(pool, clock) == 0
