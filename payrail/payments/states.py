"""The payment intent's state machine, as plain functions over values.

States are Stripe's. `processing` is also where an intent waits while an attempt is in
doubt: the provider may have charged, so nothing may charge again until the janitor has
asked the provider and settled the attempt.

Each function takes the intent's current state and an event and returns the next state
or raises `IllegalTransition`, which the API turns into a 400 naming the state. Amounts
are checked here too, so that no caller can capture or refund what it should not.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Literal

Status = Literal[
    "requires_payment_method",
    "requires_confirmation",
    "requires_action",
    "processing",
    "requires_capture",
    "canceled",
    "succeeded",
]
CaptureMethod = Literal["automatic", "manual"]
# What the provider made of an authorization attempt.
AttemptOutcome = Literal[
    "captured", "authorized", "declined", "requires_authentication", "failed", "in_doubt"
]

CANCELABLE: frozenset[Status] = frozenset(
    {"requires_payment_method", "requires_confirmation", "requires_action", "requires_capture"}
)


class IllegalTransition(Exception):
    def __init__(self, message: str, *, code: str, param: str | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.param = param


@dataclass(frozen=True, slots=True)
class Intent:
    status: Status
    amount: int
    capture_method: CaptureMethod
    payment_method: str | None
    amount_capturable: int = 0
    amount_received: int = 0
    amount_refunded: int = 0  # refunds succeeded or pending: never more than received


def created(amount: int, capture_method: CaptureMethod, payment_method: str | None) -> Intent:
    if amount < 1:
        raise IllegalTransition(
            "Amount must be at least 1.", code="parameter_invalid", param="amount"
        )
    status: Status = "requires_confirmation" if payment_method else "requires_payment_method"
    return Intent(status, amount, capture_method, payment_method)


def _illegal(intent: Intent, action: str) -> IllegalTransition:
    return IllegalTransition(
        f"This PaymentIntent's status is {intent.status}; it cannot be {action}.",
        code="payment_intent_unexpected_state",
    )


def confirming(intent: Intent, payment_method: str | None) -> Intent:
    """A confirm is accepted: the attempt is about to be sent to a provider."""
    if intent.status not in ("requires_payment_method", "requires_confirmation"):
        raise _illegal(intent, "confirmed")
    chosen = payment_method or intent.payment_method
    if chosen is None:
        raise IllegalTransition(
            "You cannot confirm this PaymentIntent without a payment method.",
            code="payment_intent_unexpected_state",
            param="payment_method",
        )
    return replace(intent, status="processing", payment_method=chosen)


def attempted(intent: Intent, outcome: AttemptOutcome) -> Intent:
    """What the attempt's outcome makes of a `processing` intent. `in_doubt` leaves it
    processing; the janitor later calls this again with what the provider says."""
    if intent.status != "processing":
        raise _illegal(intent, "settled by an attempt")
    if outcome == "captured":
        return replace(intent, status="succeeded", amount_received=intent.amount)
    if outcome == "authorized":
        if intent.capture_method == "automatic":
            raise ValueError("an automatic-capture attempt came back authorized only")
        return replace(intent, status="requires_capture", amount_capturable=intent.amount)
    if outcome == "requires_authentication":
        return replace(intent, status="requires_action")
    if outcome == "in_doubt":
        return intent
    # Declined, or failed everywhere without charging: the customer may try another card.
    return replace(intent, status="requires_payment_method")


def captured(intent: Intent, amount: int | None) -> Intent:
    """A manual capture of `amount` (default: all that is capturable); the rest is
    released, as Stripe releases it."""
    if intent.status != "requires_capture":
        raise _illegal(intent, "captured")
    take = intent.amount_capturable if amount is None else amount
    if not 1 <= take <= intent.amount_capturable:
        raise IllegalTransition(
            f"The amount to capture must be between 1 and {intent.amount_capturable}.",
            code="amount_too_large",
            param="amount_to_capture",
        )
    return replace(intent, status="succeeded", amount_capturable=0, amount_received=take)


def canceled(intent: Intent) -> Intent:
    if intent.status not in CANCELABLE:
        raise _illegal(intent, "canceled")
    return replace(intent, status="canceled", amount_capturable=0)


def refunded(intent: Intent, amount: int | None) -> tuple[Intent, int]:
    """A refund of `amount` (default: all that is left); never more than was received."""
    if intent.status != "succeeded":
        raise IllegalTransition(
            f"This PaymentIntent's status is {intent.status}; only a succeeded one can be"
            " refunded.",
            code="charge_not_refundable",
            param="payment_intent",
        )
    left = intent.amount_received - intent.amount_refunded
    take = left if amount is None else amount
    if left == 0:
        raise IllegalTransition(
            "This payment has already been refunded in full.",
            code="charge_already_refunded",
            param="payment_intent",
        )
    if not 1 <= take <= left:
        raise IllegalTransition(
            f"The refund amount must be between 1 and {left}.",
            code="amount_too_large",
            param="amount",
        )
    return replace(intent, amount_refunded=intent.amount_refunded + take), take


def refund_failed(intent: Intent, amount: int) -> Intent:
    """A refund the provider refused gives its amount back to what may be refunded."""
    if not 0 < amount <= intent.amount_refunded:
        raise ValueError("a failed refund larger than what was refunded")
    return replace(intent, amount_refunded=intent.amount_refunded - amount)
