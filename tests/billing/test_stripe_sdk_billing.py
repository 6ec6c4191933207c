"""A merchant's whole subscription story, told with the official `stripe` SDK against
payrail over real HTTP, on a test clock: a catalog, a trial, three renewals, an upgrade
with proration, a card that starts failing and a retry that recovers the invoice, and a
cancellation at the period's end.

Every call a merchant makes goes through the SDK. Between the clock's advances the test
runs the billing engine's pass itself (what `payrail worker billing` does, on the live
server's database), then polls the clock until it is ready, as a Stripe client does.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
import stripe

from payrail.billing.engine import Engine, PassResult
from payrail.clock import ManualClock
from payrail.tenants.service import NewMerchant
from tests.connectors.accounts.helpers import ACCOUNTS, bearer, sandbox_account

BASIC = 1000
PREMIUM = 2500


def at(month: int, day: int) -> int:
    """Midnight UTC of a day of 2026, in unix seconds (the suite's clock starts 2026-01-01)."""
    return int(datetime(2026, month, day, tzinfo=UTC).timestamp())


@pytest.fixture
def sdk(
    live_server: str, merchant: NewMerchant, psp_url: str, monkeypatch: pytest.MonkeyPatch
) -> Iterator[None]:
    """The SDK's global configuration (the merchant's test key, payrail as its API base,
    no retries, no telemetry header), with a sandbox PSP account to charge through."""
    created = httpx.post(
        f"{live_server}{ACCOUNTS}",
        json=sandbox_account(psp_url, currencies=[]),
        headers=bearer(merchant.test_secret),
    )
    assert created.status_code == 200, created.text
    monkeypatch.setattr(stripe, "api_key", merchant.test_secret)
    monkeypatch.setattr(stripe, "api_base", live_server)
    monkeypatch.setattr(stripe, "max_network_retries", 0)
    monkeypatch.setattr(stripe, "enable_telemetry", False)
    yield


async def advance(engine: Engine, clock_id: str, frozen_time: int) -> PassResult:
    """Advance the test clock, run the engine's pass, poll until the clock is ready."""
    advancing = stripe.test_helpers.TestClock.advance(clock_id, frozen_time=frozen_time)
    assert (advancing.status, advancing.frozen_time) == ("advancing", frozen_time)
    result = await engine.run_once()
    deadline = time.monotonic() + 5
    while (ready := stripe.test_helpers.TestClock.retrieve(clock_id)).status != "ready":
        assert time.monotonic() < deadline, f"{clock_id} still {ready.status}"
        await asyncio.sleep(0.05)
    assert ready.frozen_time == frozen_time
    return result


def invoices(subscription_id: str) -> list[tuple[Any, ...]]:
    """(billing_reason, status, paid, total, amount_paid, attempt_count, [(amount, period
    start, period end) of each line]) of the subscription's invoices, oldest first. Lines
    carry the service periods (an invoice's own period_start/end mean something else in
    Stripe)."""
    listed = stripe.Invoice.list(subscription=subscription_id, limit=100)
    assert listed.has_more is False
    return [
        (
            i.billing_reason,
            i.status,
            i.paid,
            i.total,
            i.amount_paid,
            i.attempt_count,
            [(line.amount, line.period.start, line.period.end) for line in i.lines.data],
        )
        for i in reversed(listed.data)
    ]


def cycle(amount: int, start: int, end: int, attempts: int = 1) -> tuple[Any, ...]:
    """A renewal invoice, paid in `attempts` attempts."""
    return ("subscription_cycle", "paid", True, amount, amount, attempts, [(amount, start, end)])


async def test_trial_renewals_upgrade_failed_card_recovery_and_cancel_at_period_end(
    sdk: None, engine: Engine, clock: ManualClock
) -> None:
    start = at(1, 1)
    assert int(clock.now().timestamp()) == start

    # --- The catalog ----------------------------------------------------------------
    product = stripe.Product.create(name="Streaming")
    basic = stripe.Price.create(
        product=product.id, currency="usd", unit_amount=BASIC, recurring={"interval": "month"}
    )
    premium = stripe.Price.create(
        product=product.id, currency="usd", unit_amount=PREMIUM, recurring={"interval": "month"}
    )
    assert (basic.type, basic.unit_amount, basic.recurring.interval) == ("recurring", 1000, "month")
    assert (premium.product, premium.unit_amount) == (product.id, 2500)

    # --- A customer with a card, on a test clock; a subscription with a trial --------
    test_clock = stripe.test_helpers.TestClock.create(frozen_time=start, name="story")
    customer = stripe.Customer.create(
        email="jenny@example.com",
        test_clock=test_clock.id,
        payment_method="pm_card_visa",
        invoice_settings={"default_payment_method": "pm_card_visa"},
    )
    visa = customer.invoice_settings.default_payment_method
    assert isinstance(visa, str) and visa.startswith("pm_") and visa != "pm_card_visa"
    assert customer.test_clock == test_clock.id

    sub = stripe.Subscription.create(
        customer=customer.id, items=[{"price": basic.id}], trial_period_days=14
    )
    item_id = sub["items"].data[0].id
    assert (sub.status, sub.trial_start, sub.trial_end) == ("trialing", start, at(1, 15))
    assert (sub.current_period_start, sub.current_period_end) == (start, at(1, 15))
    trial = ("subscription_create", "paid", True, 0, 0, 0, [(0, start, at(1, 15))])
    assert invoices(sub.id) == [trial]

    # --- The trial ends: the first charge; then three renewals ------------------------
    expected = [trial]
    periods = [
        (at(1, 15), at(2, 15)),
        (at(2, 15), at(3, 15)),
        (at(3, 15), at(4, 15)),
        (at(4, 15), at(5, 15)),
    ]
    for period_start, period_end in periods:
        assert (await advance(engine, test_clock.id, period_start)).renewed == 1
        sub = stripe.Subscription.retrieve(sub.id)
        assert (sub.status, sub.current_period_start, sub.current_period_end) == (
            "active",
            period_start,
            period_end,
        )
        expected.append(cycle(BASIC, period_start, period_end))
        assert invoices(sub.id) == expected

    # --- Upgrade mid-period, invoiced at once ------------------------------------------
    assert (await advance(engine, test_clock.id, at(4, 25))).renewed == 0
    sub = stripe.Subscription.modify(
        sub.id,
        items=[{"id": item_id, "price": premium.id}],
        proration_behavior="always_invoice",
    )
    # The period 15 Apr - 15 May is 30 days; on 25 Apr 20 of them are left: 2/3.
    #   unused time on Basic:     -round(1000 * 2/3) = -round(666.67) = -667
    #   remaining time on Premium: round(2500 * 2/3) =  round(1666.67) = 1667
    #   invoice total: 1667 - 667 = 1000, charged now
    assert (sub.status, sub["items"].data[0].price.id) == ("active", premium.id)
    assert (sub.current_period_start, sub.current_period_end) == (at(4, 15), at(5, 15))
    upgrade = stripe.Invoice.retrieve(sub.latest_invoice)
    assert (upgrade.billing_reason, upgrade.status, upgrade.total, upgrade.amount_paid) == (
        "subscription_update",
        "paid",
        1000,
        1000,
    )
    assert [
        (line.amount, line.proration, line.description, line.period.start, line.period.end)
        for line in upgrade.lines.data
    ] == [
        (-667, True, "Unused time on Streaming after 25 Apr 2026", at(4, 25), at(5, 15)),
        (1667, True, "Remaining time on Streaming after 25 Apr 2026", at(4, 25), at(5, 15)),
    ]
    expected.append(
        (
            "subscription_update",
            "paid",
            True,
            1000,
            1000,
            1,
            [(-667, at(4, 25), at(5, 15)), (1667, at(4, 25), at(5, 15))],
        )
    )
    assert invoices(sub.id) == expected

    # --- The card starts failing: the renewal's charge is declined -------------------
    failing = stripe.PaymentMethod.attach("pm_card_chargeCustomerFail", customer=customer.id)
    assert failing.customer == customer.id
    stripe.Customer.modify(customer.id, invoice_settings={"default_payment_method": failing.id})
    assert (await advance(engine, test_clock.id, at(5, 15))).renewed == 1
    sub = stripe.Subscription.retrieve(sub.id)
    assert (sub.status, sub.current_period_start, sub.current_period_end) == (
        "past_due",
        at(5, 15),
        at(6, 15),
    )
    renewal = stripe.Invoice.retrieve(sub.latest_invoice)
    assert (renewal.status, renewal.total, renewal.amount_paid, renewal.amount_remaining) == (
        "open",
        2500,
        0,
        2500,
    )
    assert (renewal.attempt_count, renewal.next_payment_attempt) == (1, at(5, 16))
    failed = stripe.Event.list(type="invoice.payment_failed")
    assert [(e.type, e.data.object.id, e.data.object.attempt_count) for e in failed.data] == [
        ("invoice.payment_failed", renewal.id, 1)
    ]

    # --- A working card again; the first retry, a day later, collects it -------------
    stripe.Customer.modify(customer.id, invoice_settings={"default_payment_method": visa})
    result = await advance(engine, test_clock.id, at(5, 16))
    assert (result.renewed, result.collected) == (0, 1)
    renewal = stripe.Invoice.retrieve(renewal.id)
    assert (renewal.status, renewal.amount_paid, renewal.amount_remaining) == ("paid", 2500, 0)
    assert (renewal.attempt_count, renewal.next_payment_attempt) == (2, None)
    assert stripe.Subscription.retrieve(sub.id).status == "active"
    expected.append(cycle(PREMIUM, at(5, 15), at(6, 15), attempts=2))
    assert invoices(sub.id) == expected
    assert len(stripe.Event.list(type="invoice.payment_failed").data) == 1

    # --- Cancel at the period's end ----------------------------------------------------
    sub = stripe.Subscription.modify(sub.id, cancel_at_period_end=True)
    assert (sub.status, sub.cancel_at_period_end) == ("active", True)
    assert sub.canceled_at == at(5, 16)  # when it was asked for, as Stripe reports it
    assert (await advance(engine, test_clock.id, at(6, 16))).renewed == 1
    sub = stripe.Subscription.retrieve(sub.id)
    assert (sub.status, sub.ended_at, sub.current_period_end) == ("canceled", at(6, 15), at(6, 15))
    assert sub.canceled_at == at(5, 16)
    assert sub.cancellation_details.reason == "cancellation_requested"
    assert invoices(sub.id) == expected, "nothing billed at the end"
    assert [s.id for s in stripe.Subscription.list(customer=customer.id).data] == []
    deleted = stripe.Event.list(type="customer.subscription.deleted")
    assert [(e.data.object.id, e.data.object.status) for e in deleted.data] == [
        (sub.id, "canceled")
    ]
