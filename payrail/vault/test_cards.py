"""Stripe's documented test cards: their numbers, Stripe's pm_card_* / tok_* names, and outcomes.

The card vault uses this table to accept Stripe's test payment methods and tokens
(``pm_card_visa``, ``tok_chargeDeclined``, ...) as if a client had sent the card itself, and
the sandbox PSP uses it to decide what a given card number does when charged.

Every number here is one of Stripe's public test numbers, published at
https://docs.stripe.com/testing. They pass the Luhn check but are not real cards, so in
livemode they must be refused (the vault does that; this module only describes them).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final, Literal

Outcome = Literal[
    "succeeded",
    "generic_decline",
    "insufficient_funds",
    "lost_card",
    "stolen_card",
    "expired_card",
    "incorrect_cvc",
    "processing_error",
    "authentication_required",
    "charge_fails_after_attach",
]


@dataclass(frozen=True, slots=True)
class TestCard:
    number: str  # the PAN, digits only
    brand: str  # Stripe's brand name: "visa", "mastercard", "amex", "discover", "diners", ...
    funding: str  # "credit" | "debit" | "prepaid" | "unknown", as Stripe documents it
    outcome: Outcome
    names: tuple[str, ...]  # Stripe's pm_card_* and tok_* names for it, possibly empty
    __test__ = False  # the name starts with "Test": keep pytest from collecting it


# Stripe's tables qualify only the debit and prepaid cards; the unqualified ones (and the
# Visa cards that simulate declines) come back from Stripe's API with funding "credit".
TEST_CARDS: Final[tuple[TestCard, ...]] = (
    # Cards by brand: every one of these succeeds.
    TestCard("4242424242424242", "visa", "credit", "succeeded", ("pm_card_visa", "tok_visa")),
    TestCard(
        "4000056655665556", "visa", "debit", "succeeded", ("pm_card_visa_debit", "tok_visa_debit")
    ),
    TestCard(
        "5555555555554444",
        "mastercard",
        "credit",
        "succeeded",
        ("pm_card_mastercard", "tok_mastercard"),
    ),
    # Stripe gives the 2-series Mastercard a number only, no PaymentMethod or Token.
    TestCard("2223003122003222", "mastercard", "credit", "succeeded", ()),
    TestCard(
        "5200828282828210",
        "mastercard",
        "debit",
        "succeeded",
        ("pm_card_mastercard_debit", "tok_mastercard_debit"),
    ),
    TestCard(
        "5105105105105100",
        "mastercard",
        "prepaid",
        "succeeded",
        ("pm_card_mastercard_prepaid", "tok_mastercard_prepaid"),
    ),
    TestCard("378282246310005", "amex", "credit", "succeeded", ("pm_card_amex", "tok_amex")),
    TestCard("371449635398431", "amex", "credit", "succeeded", ()),
    TestCard(
        "6011111111111117", "discover", "credit", "succeeded", ("pm_card_discover", "tok_discover")
    ),
    TestCard("6011000990139424", "discover", "credit", "succeeded", ()),
    TestCard("6011981111111113", "discover", "debit", "succeeded", ()),
    TestCard("3056930009020004", "diners", "credit", "succeeded", ("pm_card_diners", "tok_diners")),
    # 14 digits: keeps short PANs exercised.
    TestCard("36227206271667", "diners", "credit", "succeeded", ()),
    TestCard("3566002020360505", "jcb", "credit", "succeeded", ("pm_card_jcb", "tok_jcb")),
    TestCard(
        "6200000000000005", "unionpay", "credit", "succeeded", ("pm_card_unionpay", "tok_unionpay")
    ),
    TestCard("6200000000000047", "unionpay", "debit", "succeeded", ()),
    # 19 digits: keeps long PANs exercised.
    TestCard("6205500000000000004", "unionpay", "credit", "succeeded", ()),
    # Declined payments. The pm_card_visa_* / tok_visa_* names are the current docs'; the
    # unprefixed pm_card_charge* / tok_charge* ones are from earlier editions of the same page
    # and are still what many integrations send, so both resolve to the card.
    TestCard(
        "4000000000000002",
        "visa",
        "credit",
        "generic_decline",
        (
            "pm_card_visa_chargeDeclined",
            "tok_visa_chargeDeclined",
            "pm_card_chargeDeclined",
            "tok_chargeDeclined",
        ),
    ),
    TestCard(
        "4000000000009995",
        "visa",
        "credit",
        "insufficient_funds",
        (
            "pm_card_visa_chargeDeclinedInsufficientFunds",
            "tok_visa_chargeDeclinedInsufficientFunds",
            "pm_card_chargeDeclinedInsufficientFunds",
            "tok_chargeDeclinedInsufficientFunds",
        ),
    ),
    TestCard(
        "4000000000009987",
        "visa",
        "credit",
        "lost_card",
        ("pm_card_visa_chargeDeclinedLostCard", "tok_visa_chargeDeclinedLostCard"),
    ),
    TestCard(
        "4000000000009979",
        "visa",
        "credit",
        "stolen_card",
        ("pm_card_visa_chargeDeclinedStolenCard", "tok_visa_chargeDeclinedStolenCard"),
    ),
    TestCard(
        "4000000000000069",
        "visa",
        "credit",
        "expired_card",
        (
            "pm_card_chargeDeclinedExpiredCard",
            "tok_chargeDeclinedExpiredCard",
            "tok_visa_chargeDeclinedExpiredCard",
        ),
    ),
    TestCard(
        "4000000000000127",
        "visa",
        "credit",
        "incorrect_cvc",
        (
            "pm_card_chargeDeclinedIncorrectCvc",
            "tok_chargeDeclinedIncorrectCvc",
            "tok_visa_chargeDeclinedIncorrectCvc",
        ),
    ),
    TestCard(
        "4000000000000119",
        "visa",
        "credit",
        "processing_error",
        (
            "pm_card_chargeDeclinedProcessingError",
            "tok_chargeDeclinedProcessingError",
            "tok_visa_chargeDeclinedProcessingError",
        ),
    ),
    # The declining cards above cannot even be attached to a customer; this one attaches
    # and then fails every charge, which is what saved-card and dunning flows need.
    TestCard(
        "4000000000000341",
        "visa",
        "credit",
        "charge_fails_after_attach",
        ("pm_card_chargeCustomerFail", "tok_chargeCustomerFail", "tok_visa_chargeCustomerFail"),
    ),
    # 3D Secure "Always authenticate": every payment needs authentication, set up or not.
    # Stripe documents a PaymentMethod for it but no Token.
    TestCard(
        "4000002760003184",
        "visa",
        "credit",
        "authentication_required",
        ("pm_card_authenticationRequired",),
    ),
)

_BY_NAME: Final[dict[str, TestCard]] = {name: card for card in TEST_CARDS for name in card.names}
_BY_NUMBER: Final[dict[str, TestCard]] = {card.number: card for card in TEST_CARDS}


def by_name(name: str) -> TestCard | None:
    """The card behind a Stripe test PaymentMethod or Token name (pm_card_* or tok_*)."""
    return _BY_NAME.get(name)


def by_number(number: str) -> TestCard | None:
    """The test card with this PAN (digits only), or None if it is not a Stripe test card."""
    return _BY_NUMBER.get(number)
