"""Request bodies turned into plain values, or a 400 naming the offending field.

Unknown fields are refused, as Stripe does: a client's typo should fail loudly in the
sandbox rather than be ignored. Messages never quote a value sent: one may be a card
number.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from payrail.connectors.sandbox.errors import invalid_request
from payrail.money import MoneyError, normalize_currency

# Amounts must fit the bigint columns a client stores them in.
MAX_AMOUNT = 2**63 - 1

_PAYMENT_FIELDS = frozenset({"amount", "currency", "capture", "card", "reference", "metadata"})
_CARD_FIELDS = frozenset({"number", "exp_month", "exp_year", "cvc"})
_AMOUNT_FIELDS = frozenset({"amount"})
_DISPUTE_FIELDS = frozenset({"payment", "amount", "reason"})

# Stripe's dispute reasons.
DISPUTE_REASONS = frozenset(
    {
        "bank_cannot_process",
        "check_returned",
        "credit_not_processed",
        "customer_initiated",
        "debit_not_authorized",
        "duplicate",
        "fraudulent",
        "general",
        "incorrect_account_details",
        "insufficient_funds",
        "product_not_received",
        "product_unacceptable",
        "subscription_canceled",
        "unrecognized",
    }
)
DEFAULT_DISPUTE_REASON = "general"


@dataclass(frozen=True, slots=True)
class CardDetails:
    """What the processor needs of a card. The CVC is checked for shape and then dropped;
    the number lives only as long as the request and stays out of reprs and tracebacks."""

    number: str = field(repr=False)
    exp_month: int
    exp_year: int


@dataclass(frozen=True, slots=True)
class PaymentRequest:
    amount: int
    currency: str  # lowercase ISO 4217 code
    capture: bool
    card: CardDetails
    reference: str | None
    metadata: Mapping[str, Any]


def _object(value: object, param: str | None) -> dict[str, Any]:
    if not isinstance(value, dict):
        where = f"{param} must be" if param else "The request body must be"
        raise invalid_request(f"{where} a JSON object.", param)
    return value


def _no_unknown(body: Mapping[str, Any], known: frozenset[str], prefix: str = "") -> None:
    for name in body:
        if name not in known:
            param = f"{prefix}[{name}]" if prefix else name
            raise invalid_request(f"Received unknown parameter: {param}", param)


def _integer(value: object) -> int | None:
    # bool is an int subclass; `true` is not an amount.
    return value if type(value) is int else None


def _amount(value: object, param: str = "amount") -> int:
    amount = _integer(value)
    if amount is None:
        raise invalid_request(f"{param} must be an integer number of minor units.", param)
    if not 1 <= amount <= MAX_AMOUNT:
        raise invalid_request(f"{param} must be at least 1 and at most {MAX_AMOUNT}.", param)
    return amount


def _digits(value: object, shortest: int, longest: int) -> bool:
    return (
        isinstance(value, str)
        and value.isascii()
        and value.isdigit()
        and shortest <= len(value) <= longest
    )


def _card(value: object) -> CardDetails:
    card = _object(value, "card")
    _no_unknown(card, _CARD_FIELDS, "card")
    for name in ("number", "exp_month", "exp_year"):
        if card.get(name) is None:
            raise invalid_request(f"Missing required param: card[{name}].", f"card[{name}]")
    number = card["number"]
    if not _digits(number, 12, 19):
        raise invalid_request("card[number] must be a string of 12 to 19 digits.", "card[number]")
    exp_month = _integer(card["exp_month"])
    if exp_month is None or not 1 <= exp_month <= 12:
        raise invalid_request("card[exp_month] must be an integer from 1 to 12.", "card[exp_month]")
    exp_year = _integer(card["exp_year"])
    if exp_year is None or not 1 <= exp_year <= 9999:
        raise invalid_request("card[exp_year] must be an integer year.", "card[exp_year]")
    cvc = card.get("cvc")
    if cvc is not None and not _digits(cvc, 3, 4):
        raise invalid_request("card[cvc] must be a string of 3 or 4 digits.", "card[cvc]")
    return CardDetails(number=number, exp_month=exp_month, exp_year=exp_year)


def payment_request(value: object) -> PaymentRequest:
    body = _object(value, None)
    _no_unknown(body, _PAYMENT_FIELDS)
    for name in ("amount", "currency", "card"):
        if body.get(name) is None:
            raise invalid_request(f"Missing required param: {name}.", name)
    amount = _amount(body["amount"])
    currency = body["currency"]
    if not isinstance(currency, str):
        raise invalid_request("currency must be an ISO 4217 code.", "currency")
    try:
        # Accepted in any case, answered in lowercase, as Stripe does.
        currency = normalize_currency(currency).lower()
    except MoneyError:
        raise invalid_request(
            "currency must be an ISO 4217 code with a minor unit.", "currency"
        ) from None
    capture = body.get("capture", True)
    if not isinstance(capture, bool):
        raise invalid_request("capture must be true or false.", "capture")
    reference = body.get("reference")
    if reference is not None and not isinstance(reference, str):
        raise invalid_request("reference must be a string.", "reference")
    metadata = body.get("metadata")
    metadata = {} if metadata is None else _object(metadata, "metadata")
    return PaymentRequest(amount, currency, capture, _card(body["card"]), reference, metadata)


def optional_amount(value: object) -> int | None:
    """The body of a capture or a refund: ``{"amount": N}``, N optional."""
    body = _object(value, None)
    _no_unknown(body, _AMOUNT_FIELDS)
    amount = body.get("amount")
    return None if amount is None else _amount(amount)


@dataclass(frozen=True, slots=True)
class DisputeRequest:
    payment: str
    amount: int | None  # None: everything captured
    reason: str


def dispute_request(value: object) -> DisputeRequest:
    """The body of ``POST /sandbox/disputes``: ``{"payment", "amount"?, "reason"?}``."""
    body = _object(value, None)
    _no_unknown(body, _DISPUTE_FIELDS)
    payment = body.get("payment")
    if payment is None:
        raise invalid_request("Missing required param: payment.", "payment")
    if not isinstance(payment, str):
        raise invalid_request("payment must be a payment id.", "payment")
    amount = body.get("amount")
    reason = body.get("reason", DEFAULT_DISPUTE_REASON)
    # A list or an object is unhashable: checked as a string first.
    if not isinstance(reason, str) or reason not in DISPUTE_REASONS:
        raise invalid_request(
            f"reason must be one of {', '.join(sorted(DISPUTE_REASONS))}.", "reason"
        )
    return DisputeRequest(payment, None if amount is None else _amount(amount), reason)


def empty(value: object) -> None:
    """The body of a void: nothing, or an empty object."""
    _no_unknown(_object(value, None), frozenset())
