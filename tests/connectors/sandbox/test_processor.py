"""The processor's decisions, as plain functions: outcomes, fees, state rules."""

from __future__ import annotations

from fractions import Fraction
from math import floor

import pytest

from payrail.connectors.sandbox import processor
from payrail.connectors.sandbox.errors import SandboxError
from payrail.connectors.sandbox.processor import Outcome, Payment, fee, outcome
from payrail.connectors.sandbox.schemas import CardDetails, PaymentRequest
from payrail.vault.test_cards import TEST_CARDS, TestCard

# The contract's table, written out rather than derived, so a change to either shows.
EXPECTED: dict[str, Outcome] = {
    "generic_decline": Outcome("declined", "generic_decline"),
    "insufficient_funds": Outcome("declined", "insufficient_funds"),
    "lost_card": Outcome("declined", "lost_card"),
    "stolen_card": Outcome("declined", "stolen_card"),
    "expired_card": Outcome("declined", "expired_card"),
    "incorrect_cvc": Outcome("declined", "incorrect_cvc"),
    "processing_error": Outcome("declined", "processing_error"),
    "authentication_required": Outcome("requires_authentication"),
    "charge_fails_after_attach": Outcome("declined", "generic_decline"),
}


@pytest.mark.parametrize(
    ("captured", "expected"),
    [
        (0, 0),  # nothing captured, no fee: not even the fixed part
        (1, 30),  # 0.029 rounds to 0
        (17, 30),  # 0.493 rounds down
        (18, 31),  # 0.522 rounds up
        (499, 44),  # 14.471
        (500, 45),  # 14.5: exactly half rounds up
        (1000, 59),  # the contract's example
        (1500, 74),  # 43.5: half up again
        (2500, 103),  # 72.5
        (2**60 + 500, 33_434_723_633_598_577 + 30),  # a float gets this one wrong
    ],
)
def test_fee_is_2_9_percent_half_up_plus_30(captured: int, expected: int) -> None:
    assert fee(captured) == expected


def test_fee_matches_exact_rational_rounding() -> None:
    for captured in range(1, 20_001):
        exact = Fraction(captured * 29, 1000)
        assert fee(captured) == floor(exact + Fraction(1, 2)) + 30, captured


def test_fee_refuses_a_negative_amount() -> None:
    with pytest.raises(ValueError):
        fee(-1)


@pytest.mark.parametrize("card", TEST_CARDS, ids=lambda c: f"{c.brand}-{c.number[-4:]}")
def test_every_test_card_has_the_contracts_outcome(card: TestCard) -> None:
    if card.outcome == "succeeded":
        assert outcome(card.number, capture=True) == Outcome("captured")
        assert outcome(card.number, capture=False) == Outcome("authorized")
    else:
        expected = EXPECTED[card.outcome]
        assert outcome(card.number, capture=True) == expected
        assert outcome(card.number, capture=False) == expected


def test_a_card_that_is_not_a_test_card_is_a_live_card_declined() -> None:
    assert outcome("4111111111111111", capture=True) == Outcome("declined", "test_mode_live_card")
    assert processor.CardSummary.of("5500000000000004") == processor.CardSummary(
        "mastercard", "0004"
    )


def _request(
    amount: int = 1000, number: str = "4242424242424242", capture: bool = False
) -> PaymentRequest:
    return PaymentRequest(amount, "jpy", capture, CardDetails(number, 12, 2030), "ref", {})


def _charge(**kwargs: object) -> Payment:
    return processor.charge(_request(**kwargs), id="sbxpay_1", idempotency_key="k", created=7)  # type: ignore[arg-type]


def test_a_card_number_is_not_in_the_request_repr_nor_the_payment() -> None:
    request = _request(number="4000056655665556")
    assert "4000056655665556" not in repr(request)
    payment = processor.charge(request, id="sbxpay_1", idempotency_key="k", created=7)
    assert "4000056655665556" not in repr(payment) + str(payment.to_json())
    assert payment.card == processor.CardSummary("visa", "5556")


def test_zero_decimal_amounts_are_minor_units_as_given() -> None:
    payment = processor.capture(_charge(amount=1000), None)  # 1000 yen
    assert (payment.currency, payment.amount_captured, payment.fee) == ("jpy", 1000, 59)


def test_partial_capture_charges_the_fee_on_what_was_captured() -> None:
    authorized = _charge()
    assert (authorized.status, authorized.fee, authorized.amount_captured) == ("authorized", 0, 0)
    captured = processor.capture(authorized, 500)
    assert (captured.status, captured.amount_captured, captured.fee) == ("captured", 500, 45)


@pytest.mark.parametrize("amount", [1001, 10**9])
def test_capture_never_exceeds_the_authorization(amount: int) -> None:
    with pytest.raises(SandboxError) as error:
        processor.capture(_charge(), amount)
    assert (error.value.status, error.value.code) == (400, "amount_too_large")


def test_capture_and_void_need_an_authorized_payment() -> None:
    for payment in (
        processor.capture(_charge(), None),
        processor.void(_charge()),
        _charge(number="4000000000000002"),
        _charge(number="4000002760003184"),
    ):
        for act in (lambda p: processor.capture(p, None), processor.void):
            with pytest.raises(SandboxError) as error:
                act(payment)
            assert error.value.code == "invalid_state", payment.status


def test_refunds_add_up_to_at_most_what_was_captured_and_keep_the_fee() -> None:
    payment = processor.capture(_charge(), 800)
    payment, first = processor.refund(payment, 300, id="sbxre_1", idempotency_key="r1", created=8)
    payment, second = processor.refund(payment, None, id="sbxre_2", idempotency_key="r2", created=9)
    assert (first.amount, second.amount) == (300, 500)
    assert (payment.amount_refunded, payment.fee, payment.status) == (800, fee(800), "captured")
    assert [r.id for r in payment.refunds] == ["sbxre_1", "sbxre_2"]
    for amount in (1, None):
        with pytest.raises(SandboxError) as error:
            processor.refund(payment, amount, id="sbxre_3", idempotency_key="r3", created=9)
        assert error.value.code == "amount_too_large"


def test_only_a_captured_payment_is_refunded() -> None:
    for payment in (_charge(), processor.void(_charge()), _charge(number="4000000000009995")):
        with pytest.raises(SandboxError) as error:
            processor.refund(payment, None, id="sbxre_1", idempotency_key="r", created=1)
        assert error.value.code == "invalid_state"
