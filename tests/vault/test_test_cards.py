"""The Stripe test-card table: well-formed, unambiguous, and matching Stripe's documentation."""

from __future__ import annotations

from typing import get_args

import pytest

from payrail.vault.test_cards import TEST_CARDS, Outcome, TestCard, by_name, by_number

BRANDS = {"visa", "mastercard", "amex", "discover", "diners", "jcb", "unionpay"}
FUNDINGS = {"credit", "debit", "prepaid", "unknown"}


def luhn(number: str) -> bool:
    # Written out here rather than imported so the table is checked independently of the vault.
    total = 0
    for i, char in enumerate(reversed(number)):
        digit = int(char)
        if i % 2 == 1:
            digit *= 2
            if digit > 9:
                digit -= 9
        total += digit
    return total % 10 == 0


def test_luhn_helper_rejects_a_bad_check_digit() -> None:
    # Stripe's own "incorrect number" card differs from 4242... only in the check digit.
    assert luhn("4242424242424242")
    assert not luhn("4242424242424241")


@pytest.mark.parametrize("card", TEST_CARDS, ids=lambda card: card.number)
def test_card_is_well_formed(card: TestCard) -> None:
    assert card.number.isdigit()
    assert 14 <= len(card.number) <= 19
    assert luhn(card.number)
    assert card.brand in BRANDS
    assert card.funding in FUNDINGS
    assert card.outcome in get_args(Outcome)
    for name in card.names:
        assert name.startswith(("pm_card_", "tok_"))


def test_numbers_are_unique() -> None:
    numbers = [card.number for card in TEST_CARDS]
    assert len(numbers) == len(set(numbers))


def test_names_are_unique() -> None:
    names = [name for card in TEST_CARDS for name in card.names]
    assert len(names) == len(set(names))


def test_every_outcome_has_a_card() -> None:
    assert {card.outcome for card in TEST_CARDS} == set(get_args(Outcome))


def test_every_brand_has_a_succeeding_card() -> None:
    assert {card.brand for card in TEST_CARDS if card.outcome == "succeeded"} == BRANDS


@pytest.mark.parametrize("card", TEST_CARDS, ids=lambda card: card.number)
def test_lookups_round_trip(card: TestCard) -> None:
    assert by_number(card.number) is card
    for name in card.names:
        assert by_name(name) is card


@pytest.mark.parametrize(
    "name",
    [
        "",
        "pm_card_nope",
        "tok_nope",
        "PM_CARD_VISA",
        "pm_card_visa ",
        "card_visa",
        "4242424242424242",
    ],
)
def test_unknown_name(name: str) -> None:
    assert by_name(name) is None


@pytest.mark.parametrize(
    "number",
    [
        "",
        "4242424242424241",  # fails Luhn: Stripe's incorrect_number card, not a table entry
        "4111111111111111",  # a common test PAN, but not one of Stripe's
        "4242 4242 4242 4242",  # lookups take digits only
        "pm_card_visa",
    ],
)
def test_unknown_number(number: str) -> None:
    assert by_number(number) is None


@pytest.mark.parametrize(
    ("name", "number", "brand", "funding", "outcome"),
    [
        ("pm_card_visa", "4242424242424242", "visa", "credit", "succeeded"),
        ("tok_visa", "4242424242424242", "visa", "credit", "succeeded"),
        ("pm_card_visa_debit", "4000056655665556", "visa", "debit", "succeeded"),
        ("tok_mastercard", "5555555555554444", "mastercard", "credit", "succeeded"),
        ("pm_card_mastercard_debit", "5200828282828210", "mastercard", "debit", "succeeded"),
        ("tok_mastercard_prepaid", "5105105105105100", "mastercard", "prepaid", "succeeded"),
        ("pm_card_amex", "378282246310005", "amex", "credit", "succeeded"),
        ("tok_discover", "6011111111111117", "discover", "credit", "succeeded"),
        ("pm_card_diners", "3056930009020004", "diners", "credit", "succeeded"),
        ("tok_jcb", "3566002020360505", "jcb", "credit", "succeeded"),
        ("pm_card_unionpay", "6200000000000005", "unionpay", "credit", "succeeded"),
        ("pm_card_visa_chargeDeclined", "4000000000000002", "visa", "credit", "generic_decline"),
        ("pm_card_chargeDeclined", "4000000000000002", "visa", "credit", "generic_decline"),
        ("tok_chargeDeclined", "4000000000000002", "visa", "credit", "generic_decline"),
        (
            "tok_visa_chargeDeclinedInsufficientFunds",
            "4000000000009995",
            "visa",
            "credit",
            "insufficient_funds",
        ),
        (
            "tok_chargeDeclinedInsufficientFunds",
            "4000000000009995",
            "visa",
            "credit",
            "insufficient_funds",
        ),
        ("pm_card_visa_chargeDeclinedLostCard", "4000000000009987", "visa", "credit", "lost_card"),
        (
            "tok_visa_chargeDeclinedStolenCard",
            "4000000000009979",
            "visa",
            "credit",
            "stolen_card",
        ),
        ("pm_card_chargeDeclinedExpiredCard", "4000000000000069", "visa", "credit", "expired_card"),
        ("tok_chargeDeclinedIncorrectCvc", "4000000000000127", "visa", "credit", "incorrect_cvc"),
        (
            "pm_card_chargeDeclinedProcessingError",
            "4000000000000119",
            "visa",
            "credit",
            "processing_error",
        ),
        (
            "pm_card_chargeCustomerFail",
            "4000000000000341",
            "visa",
            "credit",
            "charge_fails_after_attach",
        ),
        (
            "tok_chargeCustomerFail",
            "4000000000000341",
            "visa",
            "credit",
            "charge_fails_after_attach",
        ),
        (
            "pm_card_authenticationRequired",
            "4000002760003184",
            "visa",
            "credit",
            "authentication_required",
        ),
    ],
)
def test_stripe_documented_mapping(
    name: str, number: str, brand: str, funding: str, outcome: str
) -> None:
    card = by_name(name)
    assert card is not None
    assert (card.number, card.brand, card.funding, card.outcome) == (
        number,
        brand,
        funding,
        outcome,
    )


@pytest.mark.parametrize(
    ("number", "brand", "funding"),
    [
        ("2223003122003222", "mastercard", "credit"),  # 2-series
        ("371449635398431", "amex", "credit"),
        ("6011981111111113", "discover", "debit"),
        ("36227206271667", "diners", "credit"),  # 14 digits
        ("6205500000000000004", "unionpay", "credit"),  # 19 digits
    ],
)
def test_cards_stripe_gives_only_a_number_for(number: str, brand: str, funding: str) -> None:
    card = by_number(number)
    assert card is not None
    assert (card.brand, card.funding, card.outcome, card.names) == (
        brand,
        funding,
        "succeeded",
        (),
    )


def test_table_is_immutable() -> None:
    card = TEST_CARDS[0]
    with pytest.raises(AttributeError):
        card.outcome = "generic_decline"  # type: ignore[misc]
