"""A test clock advanced past several due moments bills each at its own time, in order:
a renewal, the retries dunning schedules after it, then the final action."""

from __future__ import annotations

from datetime import UTC, datetime

from psycopg_pool import AsyncConnectionPool

from payrail.billing.engine import Engine
from tests.billing.conftest import Api, customer_with_card, monthly_price


def ts(*parts: int) -> int:
    return int(datetime(*parts, tzinfo=UTC).timestamp())  # type: ignore[arg-type, misc]


async def test_one_advance_steps_through_the_renewal_every_retry_and_the_final_action(
    api: Api, engine: Engine, pool: AsyncConnectionPool
) -> None:
    clock = await api.post("/v1/test_helpers/test_clocks", {"frozen_time": ts(2026, 1, 1)})
    price = await monthly_price(api, 1500)
    customer = await customer_with_card(api, test_clock=clock["id"])
    sub = await api.post(
        "/v1/subscriptions", {"customer": customer["id"], "items": [{"price": price["id"]}]}
    )
    assert sub["status"] == "active"
    failing = await api.post(
        "/v1/payment_methods/pm_card_chargeCustomerFail/attach", {"customer": customer["id"]}
    )
    await api.post(
        f"/v1/customers/{customer['id']}",
        {"invoice_settings": {"default_payment_method": failing["id"]}},
    )
    await api.post(
        f"/v1/test_helpers/test_clocks/{clock['id']}/advance", {"frozen_time": ts(2026, 2, 20)}
    )
    await engine.run_once()
    assert (await api.get(f"/v1/test_helpers/test_clocks/{clock['id']}"))["status"] == "ready"

    sub = await api.get(f"/v1/subscriptions/{sub['id']}")
    # The default policy: retries 1, 3, 5 and 7 days after the first failure, then cancel.
    assert (sub["status"], sub["ended_at"]) == ("canceled", ts(2026, 2, 8))
    renewal = await api.get(f"/v1/invoices/{sub['latest_invoice']}")
    assert (renewal["status"], renewal["attempt_count"]) == ("uncollectible", 5)
    async with pool.connection() as conn:
        cur = await conn.execute(
            "SELECT attempted_at FROM invoice_payment_attempts WHERE invoice_id = %s"
            " ORDER BY attempt",
            (renewal["id"],),
        )
        attempted = [int(row[0].timestamp()) for row in await cur.fetchall()]
    assert attempted == [ts(2026, 2, day) for day in (1, 2, 4, 6, 8)]
