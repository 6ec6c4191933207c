"""The decline taxonomy: every provider's codes map to a payrail code and a safe decision."""

from __future__ import annotations

import dataclasses
import re
from collections import Counter

import pytest

from payrail.connectors import declines
from payrail.connectors.declines import (
    CODES,
    PROVIDERS,
    ROWS,
    TAXONOMY,
    UNKNOWN_DECLINE,
    Classification,
    Decision,
    classify,
    classify_transport,
)

HARD = Decision.HARD_DECLINE
SOFT = Decision.SOFT_DECLINE
TECH = Decision.TECHNICAL
DOUBT = Decision.IN_DOUBT
AUTH = Decision.AUTHENTICATION_REQUIRED

# Each provider's code for the four declines every connector must know.
CATEGORIES: dict[str, dict[str, tuple[str, ...]]] = {
    "stripe": {
        "insufficient_funds": ("insufficient_funds",),
        "lost_or_stolen": ("lost_card", "stolen_card"),
        "expired": ("expired_card",),
        "generic": ("generic_decline", "card_declined"),
    },
    "sandbox": {
        "insufficient_funds": ("insufficient_funds",),
        "lost_or_stolen": ("lost_card", "stolen_card"),
        "expired": ("expired_card",),
        "generic": ("generic_decline",),
    },
    "adyen": {
        "insufficient_funds": ("12",),  # Not enough balance
        "lost_or_stolen": ("5",),  # Blocked Card
        "expired": ("6",),  # Expired Card
        "generic": ("2",),  # Refused
    },
    "paypal": {
        "insufficient_funds": ("5120",),  # INSUFFICIENT_FUNDS
        "lost_or_stolen": ("9520",),  # LOST_OR_STOLEN
        "expired": ("5400", "CARD_EXPIRED"),
        "generic": ("5100", "INSTRUMENT_DECLINED", "TRANSACTION_REFUSED"),
    },
}
EXPECTED = {
    "insufficient_funds": SOFT,
    "lost_or_stolen": HARD,
    "expired": HARD,
    "generic": SOFT,
}


def test_every_row_has_a_decision_and_a_known_code() -> None:
    assert TAXONOMY
    for key, classification in TAXONOMY.items():
        assert isinstance(classification, Classification), key
        assert isinstance(classification.decision, Decision), key
        assert classification.code in CODES, key


def test_source_list_has_no_duplicate_keys() -> None:
    keys = Counter((provider, code) for provider, code, _ in ROWS)
    assert [key for key, n in keys.items() if n > 1] == []
    assert len(TAXONOMY) == len(ROWS)


def test_every_provider_has_rows() -> None:
    assert {provider for provider, _ in TAXONOMY} == PROVIDERS == set(CATEGORIES)


def test_sandbox_shares_stripes_rows() -> None:
    stripe = {code: c for (provider, code), c in TAXONOMY.items() if provider == "stripe"}
    sandbox = {code: c for (provider, code), c in TAXONOMY.items() if provider == "sandbox"}
    assert sandbox == stripe


@pytest.mark.parametrize("provider", sorted(CATEGORIES))
@pytest.mark.parametrize("category", sorted(EXPECTED))
def test_every_provider_maps_the_core_declines(provider: str, category: str) -> None:
    codes = CATEGORIES[provider][category]
    assert codes
    for code in codes:
        assert (provider, code) in TAXONOMY, code
        assert classify(provider, code).decision is EXPECTED[category], code


@pytest.mark.parametrize("code", ["lost_card", "stolen_card", "pickup_card", "fraudulent"])
def test_stripe_lost_stolen_and_fraud_are_hard(code: str) -> None:
    result = classify("stripe", code)
    assert (result.code, result.decision) == (code, HARD)


@pytest.mark.parametrize(
    "code", ["insufficient_funds", "try_again_later", "generic_decline", "do_not_honor"]
)
def test_stripe_retryable_declines_are_soft(code: str) -> None:
    assert classify("stripe", code).decision is SOFT
    assert classify("stripe", code).code == code


@pytest.mark.parametrize(
    ("provider", "code"),
    [
        ("stripe", "authentication_required"),
        ("sandbox", "authentication_required"),
        ("stripe", "payment_intent_action_required"),
        ("adyen", "38"),
        ("paypal", "5650"),
        ("paypal", "PAYER_ACTION_REQUIRED"),
    ],
)
def test_authentication_required(provider: str, code: str) -> None:
    assert classify(provider, code).decision is AUTH
    assert classify(provider, code).code == "authentication_required"


def test_stripe_decline_codes_are_payrail_codes() -> None:
    # The sandbox and Stripe speak payrail's language: a decline code is its own payrail code.
    for (provider, code), classification in TAXONOMY.items():
        if provider == "stripe" and code in CODES:
            assert classification.code == code


@pytest.mark.parametrize(
    ("provider", "code", "payrail", "decision"),
    [
        ("stripe", "rate_limit", "rate_limit", TECH),
        ("stripe", "api_key_expired", "connector_credentials_invalid", TECH),
        ("stripe", "idempotency_key_in_use", "payment_in_progress", DOUBT),
        ("stripe", "duplicate_transaction", "duplicate_transaction", DOUBT),
        ("stripe", "processing_error", "processing_error", SOFT),
        ("stripe", "incorrect_cvc", "incorrect_cvc", HARD),
        ("adyen", "21", "connector_request_invalid", TECH),
        ("adyen", "46", "do_not_try_again", HARD),
        ("paypal", "DUPLICATE_INVOICE_ID", "duplicate_transaction", DOUBT),
        ("paypal", "ORDER_ALREADY_CAPTURED", "duplicate_transaction", DOUBT),
        ("paypal", "INTERNAL_SERVER_ERROR", "connector_error", DOUBT),
        ("paypal", "RATE_LIMIT_REACHED", "rate_limit", TECH),
        ("paypal", "5910", "do_not_try_again", HARD),
        ("paypal", "5920", "issuer_not_available", SOFT),
    ],
)
def test_selected_rows(provider: str, code: str, payrail: str, decision: Decision) -> None:
    result = classify(provider, code)
    assert (result.code, result.decision) == (payrail, decision)


@pytest.mark.parametrize("provider", sorted(PROVIDERS))
def test_unknown_code_is_a_soft_decline(provider: str) -> None:
    result = classify(provider, "no_such_code_anywhere")
    assert result is UNKNOWN_DECLINE
    assert (result.code, result.decision) == ("generic_decline", SOFT)


def test_codes_are_matched_exactly() -> None:
    # Adyen's "0" is an approval, never in the table; case matters as the providers send it.
    assert ("adyen", "0") not in TAXONOMY
    assert classify("stripe", "INSUFFICIENT_FUNDS") is UNKNOWN_DECLINE


@pytest.mark.parametrize("provider", ["", "braintree", "Stripe", " stripe"])
def test_unknown_provider_raises(provider: str) -> None:
    with pytest.raises(ValueError, match="unknown provider"):
        classify(provider, "insufficient_funds")


@pytest.mark.parametrize(
    ("sent", "status", "code", "decision"),
    [
        (False, None, "connector_unreachable", TECH),
        (True, None, "timeout", DOUBT),
        (True, 429, "rate_limit", TECH),
        (True, 500, "connector_error", DOUBT),
        (True, 502, "connector_error", DOUBT),
        (True, 503, "connector_error", DOUBT),
        (True, 504, "connector_error", DOUBT),
        (True, 599, "connector_error", DOUBT),
        (True, 400, "connector_request_invalid", TECH),
        (True, 401, "connector_request_invalid", TECH),
        (True, 404, "connector_request_invalid", TECH),
        (True, 422, "connector_request_invalid", TECH),
        (True, 409, "payment_in_progress", DOUBT),
        (True, 402, "generic_decline", SOFT),
    ],
)
def test_classify_transport(sent: bool, status: int | None, code: str, decision: Decision) -> None:
    result = classify_transport(sent=sent, status=status)
    assert (result.code, result.decision) == (code, decision)


@pytest.mark.parametrize("status", [100, 200, 201, 302, 399, 600])
def test_classify_transport_rejects_non_failures(status: int) -> None:
    with pytest.raises(ValueError, match="not a failure"):
        classify_transport(sent=True, status=status)


def test_classify_transport_rejects_a_status_without_sending() -> None:
    with pytest.raises(ValueError, match="sent"):
        classify_transport(sent=False, status=503)


def test_technical_never_carries_a_card_decline() -> None:
    # A technical decision may fail over; only connector-side codes may have it.
    technical = {c.code for c in TAXONOMY.values() if c.decision is TECH}
    assert technical <= {"rate_limit"} | {c for c in CODES if c.startswith("connector_")}


def test_every_code_is_reachable() -> None:
    reachable = {c.code for c in TAXONOMY.values()} | {UNKNOWN_DECLINE.code}
    reachable |= {
        classify_transport(sent=sent, status=status).code
        for sent, status in [(False, None), (True, None), (True, 429), (True, 500), (True, 400)]
    }
    assert reachable == CODES


def test_messages_are_customer_safe() -> None:
    messages = {c.message for c in TAXONOMY.values()} | {
        declines.classify_transport(sent=True, status=None).message,
        declines.classify_transport(sent=False, status=None).message,
    }
    for message in messages:
        assert message.strip() == message and message.endswith("."), message
        # Nothing that could be a card number, PAN fragment or expiry: no run of 6+ digits.
        assert re.search(r"\d{6,}", message) is None, message


@pytest.mark.parametrize(
    "code", ["lost_card", "stolen_card", "pickup_card", "fraudulent", "merchant_blacklist"]
)
def test_fraud_declines_do_not_say_why(code: str) -> None:
    # Telling a card tester that a card is flagged is a gift; show the bare decline.
    assert classify("stripe", code).message == classify("stripe", "generic_decline").message


def test_classification_is_immutable() -> None:
    result = classify("stripe", "insufficient_funds")
    with pytest.raises(dataclasses.FrozenInstanceError):
        result.code = "other"  # type: ignore[misc]
    with pytest.raises(TypeError):
        TAXONOMY[("stripe", "x")] = result  # type: ignore[index]


def test_decision_values() -> None:
    assert {d.value for d in Decision} == {
        "hard_decline",
        "soft_decline",
        "technical",
        "in_doubt",
        "authentication_required",
    }
