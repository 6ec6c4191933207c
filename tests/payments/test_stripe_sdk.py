"""The official `stripe` SDK, pointed at payrail over real HTTP, runs Stripe's core flows:
the proof that a client written for Stripe works against payrail unchanged."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest
import stripe

from payrail.tenants.service import NewMerchant
from tests.connectors.accounts.helpers import ACCOUNTS, SECRET, bearer, sandbox_account

Json = dict[str, Any]


@pytest.fixture
def sdk(
    live_server: str, merchant: NewMerchant, psp_url: str, monkeypatch: pytest.MonkeyPatch
) -> Iterator[stripe.StripeClient]:
    """A StripeClient with the merchant's test key, its API base at payrail, whose
    payments go to the sandbox PSP."""
    # Telemetry sends each request's timings in a header of the next; no retries, so a
    # failing request fails the test instead of being hidden by a second attempt.
    monkeypatch.setattr(stripe, "enable_telemetry", False)
    created = httpx.post(
        f"{live_server}{ACCOUNTS}",
        json=sandbox_account(psp_url, currencies=[]),
        headers=bearer(merchant.test_secret),
    )
    assert created.status_code == 200, created.text
    yield stripe.StripeClient(
        merchant.test_secret, base_addresses={"api": live_server}, max_network_retries=0
    )


@pytest.fixture
def psp_record(psp_url: str) -> Iterator[Any]:
    """What the sandbox has charged, by charge id (its `reference`)."""
    with httpx.Client(base_url=psp_url, headers=bearer(SECRET)) as http:
        http.post("/sandbox/faults", json={"rate": 0, "seed": 0}).raise_for_status()

        def payments(reference: str) -> list[Json]:
            record = http.get("/sandbox/record").json()
            return [p for p in record["payments"] if p["reference"] == reference]

        yield payments


def test_customer_card_automatic_capture_and_refunds(
    sdk: stripe.StripeClient, psp_record: Any
) -> None:
    customer = sdk.v1.customers.create(
        {"email": "ada@example.com", "name": "Ada", "metadata": {"plan": "pro"}}
    )
    assert customer.id.startswith("cus_") and customer.metadata["plan"] == "pro"
    card = sdk.v1.payment_methods.create({"type": "card", "card": {"token": "tok_visa"}})
    assert card.card is not None and (card.card.brand, card.card.last4) == ("visa", "4242")
    attached = sdk.v1.payment_methods.attach(card.id, {"customer": customer.id})
    assert attached.customer == customer.id
    listed_cards = sdk.v1.customers.payment_methods.list(customer.id)
    assert [pm.id for pm in listed_cards.data] == [card.id]

    intent = sdk.v1.payment_intents.create(
        {
            "amount": 2000,
            "currency": "usd",
            "customer": customer.id,
            "payment_method": card.id,
            "confirm": True,
            "metadata": {"order": "42"},
        }
    )
    assert isinstance(intent, stripe.PaymentIntent)
    assert (intent.status, intent.amount_received) == ("succeeded", 2000)
    assert intent.metadata["order"] == "42" and intent.latest_charge
    charge_id = str(intent.latest_charge)
    assert [p["status"] for p in psp_record(charge_id)] == ["captured"]

    partial = sdk.v1.refunds.create({"payment_intent": intent.id, "amount": 500})
    assert (partial.status, partial.amount, partial.payment_intent) == (
        "succeeded",
        500,
        intent.id,
    )
    rest = sdk.v1.refunds.create({"payment_intent": intent.id, "reason": "requested_by_customer"})
    assert (rest.status, rest.amount) == ("succeeded", 1500)
    assert sdk.v1.refunds.retrieve(partial.id).amount == 500
    refunds = sdk.v1.refunds.list({"payment_intent": intent.id})
    assert sorted(r.amount for r in refunds.data) == [500, 1500]
    assert refunds.has_more is False
    with pytest.raises(stripe.InvalidRequestError) as refused:
        sdk.v1.refunds.create({"payment_intent": intent.id, "amount": 1})
    assert refused.value.code == "charge_already_refunded"
    assert psp_record(charge_id)[0]["amount_refunded"] == 2000

    again = sdk.v1.payment_intents.retrieve(intent.id)
    assert (again.id, again.status, again.customer) == (intent.id, "succeeded", customer.id)


def test_manual_capture_partial_from_card_numbers(
    sdk: stripe.StripeClient, psp_record: Any
) -> None:
    customer = sdk.v1.customers.create({"name": "Grace"})
    card = sdk.v1.payment_methods.create(
        {
            "type": "card",
            "card": {"number": "5555555555554444", "exp_month": 12, "exp_year": 2040, "cvc": "314"},
        }
    )
    assert card.card is not None and card.card.brand == "mastercard"
    sdk.v1.payment_methods.attach(card.id, {"customer": customer.id})
    intent = sdk.v1.payment_intents.create(
        {
            "amount": 5000,
            "currency": "eur",
            "customer": customer.id,
            "payment_method": card.id,
            "capture_method": "manual",
        }
    )
    assert intent.status == "requires_confirmation"
    confirmed = sdk.v1.payment_intents.confirm(intent.id)
    assert (confirmed.status, confirmed.amount_capturable) == ("requires_capture", 5000)
    captured = sdk.v1.payment_intents.capture(intent.id, {"amount_to_capture": 3000})
    assert (captured.status, captured.amount_received) == ("succeeded", 3000)
    charged = psp_record(str(captured.latest_charge))
    assert [(p["status"], p["amount_captured"]) for p in charged] == [("captured", 3000)]

    other = sdk.v1.payment_intents.create(
        {
            "amount": 700,
            "currency": "eur",
            "customer": customer.id,
            "payment_method": card.id,
            "capture_method": "manual",
        }
    )
    listed = sdk.v1.payment_intents.list({"customer": customer.id, "limit": 1})
    assert [i.id for i in listed.data] == [other.id] and listed.has_more
    following = sdk.v1.payment_intents.list({"customer": customer.id, "starting_after": other.id})
    assert [i.id for i in following.data] == [intent.id]
    assert sdk.v1.payment_intents.retrieve(other.id).status == "requires_confirmation"
    sdk.v1.payment_intents.confirm(other.id)
    whole = sdk.v1.payment_intents.capture(other.id)
    assert (whole.status, whole.amount_received) == ("succeeded", 700)
    assert [p["amount_captured"] for p in psp_record(str(whole.latest_charge))] == [700]


def test_declined_card_raises_card_error_with_its_decline_code(
    sdk: stripe.StripeClient, psp_record: Any
) -> None:
    card = sdk.v1.payment_methods.create(
        {"type": "card", "card": {"token": "tok_chargeDeclinedInsufficientFunds"}}
    )
    with pytest.raises(stripe.CardError) as declined:
        sdk.v1.payment_intents.create(
            {"amount": 700, "currency": "usd", "payment_method": card.id, "confirm": True}
        )
    error = declined.value
    assert error.http_status == 402
    assert (error.code, error.error.decline_code if error.error else None) == (
        "card_declined",
        "insufficient_funds",
    )
    assert error.error is not None and error.error.payment_intent is not None
    failed = error.error.payment_intent
    assert failed.status == "requires_payment_method"
    declined_at_psp = psp_record(str(failed.latest_charge))
    assert [(p["status"], p["decline_code"]) for p in declined_at_psp] == [
        ("declined", "insufficient_funds")
    ]


def test_idempotency_key_on_create_replays(sdk: stripe.StripeClient, psp_record: Any) -> None:
    params: Any = {
        "amount": 1200,
        "currency": "usd",
        "payment_method": "pm_card_visa",
        "confirm": True,
    }
    first = sdk.v1.payment_intents.create(params, {"idempotency_key": "order-77"})
    again = sdk.v1.payment_intents.create(params, {"idempotency_key": "order-77"})
    assert again.id == first.id and again.status == "succeeded"
    assert again.last_response is not None
    assert again.last_response.headers.get("Idempotent-Replayed") == "true"
    assert len(psp_record(str(first.latest_charge))) == 1, "one charge at the PSP"
    with pytest.raises(stripe.IdempotencyError):
        sdk.v1.payment_intents.create({**params, "amount": 1300}, {"idempotency_key": "order-77"})
