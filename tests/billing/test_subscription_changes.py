"""Price changes with Stripe's proration behaviours, downgrades at period end, cancels,
pauses — over the API and the engine."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from payrail.billing.engine import Engine
from payrail.clock import ManualClock
from tests.billing.conftest import Api, customer_with_card, monthly_price

Json = dict[str, Any]


def at(*parts: int) -> datetime:
    return datetime(*parts, tzinfo=UTC)  # type: ignore[arg-type, misc]


def ts(*parts: int) -> int:
    return int(at(*parts).timestamp())


async def _subscribed(api: Api, clock: ManualClock, amount: int = 3000) -> tuple[Json, Json]:
    """A customer on a 30-day month (April) paying `amount`, from April 1st."""
    clock.current = at(2026, 4, 1)
    price = await monthly_price(api, amount)
    customer = await customer_with_card(api)
    sub = await api.post(
        "/v1/subscriptions", {"customer": customer["id"], "items": [{"price": price["id"]}]}
    )
    assert sub["status"] == "active"
    return sub, price


async def _price_of(api: Api, sub: Json, amount: int, interval: str = "month") -> Json:
    product = sub["items"]["data"][0]["price"]["product"]
    return await api.post(
        "/v1/prices",
        {
            "product": product,
            "currency": "usd",
            "unit_amount": amount,
            "recurring": {"interval": interval},
        },
    )


async def test_an_upgrade_with_create_prorations_bills_the_difference_on_the_next_invoice(
    api: Api, engine: Engine, clock: ManualClock
) -> None:
    sub, _ = await _subscribed(api, clock, 3000)
    premium_plus = await _price_of(api, sub, 6000)
    clock.current = at(2026, 4, 16)  # half of April left
    changed = await api.post(
        f"/v1/subscriptions/{sub['id']}",
        {"items": [{"id": sub["items"]["data"][0]["id"], "price": premium_plus["id"]}]},
    )
    assert changed["items"]["data"][0]["price"]["id"] == premium_plus["id"]
    assert changed["latest_invoice"] == sub["latest_invoice"]  # nothing invoiced yet
    clock.current = at(2026, 5, 1)
    await engine.run_once()
    sub = await api.get(f"/v1/subscriptions/{sub['id']}")
    invoice = await api.get(f"/v1/invoices/{sub['latest_invoice']}")
    lines = sorted((line["amount"], line["proration"]) for line in invoice["lines"]["data"])
    assert lines == [(-1500, True), (3000, True), (6000, False)]
    assert (invoice["total"], invoice["amount_paid"], invoice["status"]) == (7500, 7500, "paid")


async def test_always_invoice_charges_the_proration_at_once(
    api: Api, engine: Engine, clock: ManualClock
) -> None:
    sub, _ = await _subscribed(api, clock, 3000)
    premium_plus = await _price_of(api, sub, 6000)
    clock.current = at(2026, 4, 16)
    changed = await api.post(
        f"/v1/subscriptions/{sub['id']}",
        {"items": [{"price": premium_plus["id"]}], "proration_behavior": "always_invoice"},
    )
    invoice = await api.get(f"/v1/invoices/{changed['latest_invoice']}")
    assert invoice["billing_reason"] == "subscription_update"
    assert (invoice["total"], invoice["amount_paid"], invoice["status"]) == (1500, 1500, "paid")
    clock.current = at(2026, 5, 1)
    await engine.run_once()
    latest = (await api.get(f"/v1/subscriptions/{sub['id']}"))["latest_invoice"]
    renewal = await api.get(f"/v1/invoices/{latest}")
    assert [line["amount"] for line in renewal["lines"]["data"]] == [6000]


async def test_a_downgrade_at_period_end_keeps_the_paid_period(
    api: Api, engine: Engine, clock: ManualClock
) -> None:
    sub, price = await _subscribed(api, clock, 3000)
    basic = await _price_of(api, sub, 1000)
    clock.current = at(2026, 4, 10)
    changed = await api.post(
        f"/v1/subscriptions/{sub['id']}",
        {"items": [{"price": basic["id"]}], "change_at": "period_end"},
    )
    assert changed["items"]["data"][0]["price"]["id"] == price["id"]
    clock.current = at(2026, 5, 1)
    await engine.run_once()
    sub = await api.get(f"/v1/subscriptions/{sub['id']}")
    assert sub["items"]["data"][0]["price"]["id"] == basic["id"]
    invoice = await api.get(f"/v1/invoices/{sub['latest_invoice']}")
    assert [line["amount"] for line in invoice["lines"]["data"]] == [1000]


async def test_a_downgrade_now_with_prorations_leaves_credit_for_later_invoices(
    api: Api, engine: Engine, clock: ManualClock
) -> None:
    sub, _ = await _subscribed(api, clock, 3000)
    basic = await _price_of(api, sub, 1000)
    clock.current = at(2026, 4, 16)
    changed = await api.post(
        f"/v1/subscriptions/{sub['id']}",
        {"items": [{"price": basic["id"]}], "proration_behavior": "always_invoice"},
    )
    credit = await api.get(f"/v1/invoices/{changed['latest_invoice']}")
    # 1500 unused of the old, 500 for the rest of the month on the new: 1000 in credit.
    assert (credit["total"], credit["amount_due"], credit["status"]) == (-1000, 0, "paid")
    assert credit["ending_balance"] == -1000
    clock.current = at(2026, 5, 1)
    await engine.run_once()
    sub = await api.get(f"/v1/subscriptions/{sub['id']}")
    renewal = await api.get(f"/v1/invoices/{sub['latest_invoice']}")
    assert (renewal["total"], renewal["starting_balance"], renewal["amount_due"]) == (
        1000,
        -1000,
        0,
    )
    assert renewal["status"] == "paid"


async def test_a_new_interval_starts_a_new_cycle_now(
    api: Api, engine: Engine, clock: ManualClock
) -> None:
    sub, _ = await _subscribed(api, clock, 3000)
    yearly = await _price_of(api, sub, 30000, interval="year")
    clock.current = at(2026, 4, 16)
    changed = await api.post(f"/v1/subscriptions/{sub['id']}", {"items": [{"price": yearly["id"]}]})
    assert (changed["current_period_start"], changed["current_period_end"]) == (
        ts(2026, 4, 16),
        ts(2027, 4, 16),
    )
    invoice = await api.get(f"/v1/invoices/{changed['latest_invoice']}")
    assert sorted(line["amount"] for line in invoice["lines"]["data"]) == [-1500, 30000]
    assert (invoice["amount_paid"], invoice["status"]) == (28500, "paid")


async def test_cancel_at_period_end_ends_it_without_another_invoice(
    api: Api, engine: Engine, clock: ManualClock
) -> None:
    sub, _ = await _subscribed(api, clock)
    await api.post(f"/v1/subscriptions/{sub['id']}", {"cancel_at_period_end": True})
    clock.current = at(2026, 5, 1)
    await engine.run_once()
    ended = await api.get(f"/v1/subscriptions/{sub['id']}")
    assert (ended["status"], ended["ended_at"], ended["latest_invoice"]) == (
        "canceled",
        ts(2026, 5, 1),
        sub["latest_invoice"],
    )
    assert ended["cancellation_details"]["reason"] == "cancellation_requested"


async def test_cancel_now_and_errors_name_the_field(api: Api, clock: ManualClock) -> None:
    sub, _ = await _subscribed(api, clock)
    eur = await api.post(
        "/v1/prices",
        {
            "product": sub["items"]["data"][0]["price"]["product"],
            "currency": "eur",
            "unit_amount": 900,
            "recurring": {"interval": "month"},
        },
    )
    reply = await api.http.post(
        f"/v1/subscriptions/{sub['id']}",
        json={"items": [{"price": eur["id"]}]},
        headers=api.headers,
    )
    assert reply.status_code == 400
    assert reply.json()["error"]["param"] == "items[0][price]"
    missing = await api.http.post(
        "/v1/subscriptions",
        json={"customer": sub["customer"], "items": [{"price": "price_nope"}]},
        headers=api.headers,
    )
    assert (missing.status_code, missing.json()["error"]["param"]) == (404, "items[0][price]")
    canceled = await api.delete(f"/v1/subscriptions/{sub['id']}")
    assert (canceled["status"], canceled["ended_at"]) == ("canceled", ts(2026, 4, 1))
    again = await api.http.post(
        f"/v1/subscriptions/{sub['id']}", json={"metadata": {"a": "b"}}, headers=api.headers
    )
    assert (again.status_code, again.json()["error"]["code"]) == (400, "subscription_ended")


async def test_paused_collection_keeps_renewal_invoices_as_drafts(
    api: Api, engine: Engine, clock: ManualClock
) -> None:
    sub, _ = await _subscribed(api, clock)
    await api.post(
        f"/v1/subscriptions/{sub['id']}",
        {"pause_collection": {"behavior": "keep_as_draft", "resumes_at": ts(2026, 5, 15)}},
    )
    clock.current = at(2026, 5, 1)
    await engine.run_once()
    paused = await api.get(f"/v1/subscriptions/{sub['id']}")
    draft = await api.get(f"/v1/invoices/{paused['latest_invoice']}")
    assert (draft["status"], draft["amount_paid"]) == ("draft", 0)
    clock.current = at(2026, 5, 15)
    await engine.run_once()
    resumed = await api.get(f"/v1/subscriptions/{sub['id']}")
    assert resumed["pause_collection"] is None


async def test_an_archived_price_keeps_billing_its_subscribers(
    api: Api, engine: Engine, clock: ManualClock
) -> None:
    sub, price = await _subscribed(api, clock, 3000)
    archived = await api.post(f"/v1/prices/{price['id']}", {"active": False})
    assert archived["active"] is False
    clock.current = at(2026, 5, 1)
    assert (await engine.run_once()).renewed == 1
    sub = await api.get(f"/v1/subscriptions/{sub['id']}")
    renewal = await api.get(f"/v1/invoices/{sub['latest_invoice']}")
    assert (renewal["status"], renewal["amount_paid"]) == ("paid", 3000)
    # A new subscriber cannot take it.
    reply = await api.http.post(
        "/v1/subscriptions",
        json={"customer": sub["customer"], "items": [{"price": price["id"]}]},
        headers=api.headers,
    )
    assert (reply.status_code, reply.json()["error"]["param"]) == (400, "items[0][price]")
