"""What the sandbox processor decides, as plain functions over immutable values: the
issuer's answer for a card, the fee, and which captures, voids and refunds are allowed.

Nothing here does I/O or reads a clock; ids and timestamps are passed in. Amounts are
integers in minor units throughout: the currency's exponent plays no part, so 1000 is
ten dollars in usd and a thousand yen in jpy.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any, Literal

from payrail.connectors.sandbox.errors import SandboxError, amount_too_large, invalid_state
from payrail.connectors.sandbox.schemas import PaymentRequest
from payrail.vault import cards
from payrail.vault.test_cards import by_number

Status = Literal["authorized", "captured", "declined", "requires_authentication", "voided"]

# 2.9% + 30 minor units, as a fraction 29/1000 so the arithmetic stays in integers.
FEE_RATE_NUMERATOR = 29
FEE_RATE_DENOMINATOR = 1000
FEE_FIXED = 30

# A live card in test mode, as Stripe declines it.
LIVE_CARD_DECLINE = "test_mode_live_card"

# Test-card outcomes that are declines under their own name.
_DECLINES_AS_ITSELF = frozenset(
    {
        "generic_decline",
        "insufficient_funds",
        "lost_card",
        "stolen_card",
        "expired_card",
        "incorrect_cvc",
        "processing_error",
    }
)


def fee(captured: int) -> int:
    """The processor's fee on a captured amount: 2.9% rounded half up, plus 30; 0 when
    nothing is captured."""
    if captured < 0:
        raise ValueError("a captured amount is never negative")
    if captured == 0:
        return 0
    # round_half_up(captured * 29 / 1000) == floor((captured * 29 + 500) / 1000) for
    # captured >= 0, in integers: a float would misround amounts like 500 (14.5).
    half = FEE_RATE_DENOMINATOR // 2
    return (captured * FEE_RATE_NUMERATOR + half) // FEE_RATE_DENOMINATOR + FEE_FIXED


@dataclass(frozen=True, slots=True)
class Outcome:
    status: Status
    decline_code: str | None = None


def outcome(number: str, *, capture: bool) -> Outcome:
    """The issuer's answer for a card number: Stripe's, for Stripe's test cards."""
    card = by_number(number)
    if card is None:
        return Outcome("declined", LIVE_CARD_DECLINE)
    if card.outcome == "succeeded":
        return Outcome("captured" if capture else "authorized")
    if card.outcome == "authentication_required":
        return Outcome("requires_authentication")
    if card.outcome == "charge_fails_after_attach":
        # It attaches to a customer fine; every charge on it then fails as a plain decline.
        return Outcome("declined", "generic_decline")
    if card.outcome in _DECLINES_AS_ITSELF:
        return Outcome("declined", card.outcome)
    raise AssertionError(f"test card outcome {card.outcome!r} has no sandbox answer")


@dataclass(frozen=True, slots=True)
class CardSummary:
    """All a payment keeps of its card."""

    brand: str
    last4: str

    @classmethod
    def of(cls, number: str) -> CardSummary:
        card = by_number(number)
        return cls(card.brand if card else cards.brand(number), number[-4:])


@dataclass(frozen=True, slots=True)
class Refund:
    id: str
    payment: str
    amount: int
    idempotency_key: str
    created: int

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "object": "refund",
            "payment": self.payment,
            "amount": self.amount,
            "status": "succeeded",
            "idempotency_key": self.idempotency_key,
            "created": self.created,
        }


@dataclass(frozen=True, slots=True)
class Payment:
    id: str
    status: Status
    amount: int
    currency: str
    amount_captured: int
    amount_refunded: int
    fee: int
    decline_code: str | None
    card: CardSummary
    reference: str | None
    idempotency_key: str
    created: int
    # When the money was taken: a manual capture comes later than the authorization, and
    # settlement reports date a charge by its capture. None until captured.
    captured_at: int | None
    refunds: tuple[Refund, ...] = ()

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "object": "payment",
            "status": self.status,
            "amount": self.amount,
            "currency": self.currency,
            "amount_captured": self.amount_captured,
            "amount_refunded": self.amount_refunded,
            "fee": self.fee,
            "decline_code": self.decline_code,
            "card": {"brand": self.card.brand, "last4": self.card.last4},
            "reference": self.reference,
            "idempotency_key": self.idempotency_key,
            "created": self.created,
            "refunds": [refund.to_json() for refund in self.refunds],
        }


@dataclass(frozen=True, slots=True)
class Dispute:
    """A cardholder's dispute of a captured payment, made through ``POST /sandbox/disputes``;
    it waits for the merchant's answer, which the sandbox never asks for."""

    id: str
    payment: str
    amount: int
    reason: str
    created: int

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "object": "dispute",
            "payment": self.payment,
            "amount": self.amount,
            "reason": self.reason,
            "status": "needs_response",
            "created": self.created,
        }


def _not_in(status: Status, done: str, payment: Payment) -> SandboxError:
    return invalid_state(f"Only a {status} payment can be {done}; this one is {payment.status}.")


def charge(request: PaymentRequest, *, id: str, idempotency_key: str, created: int) -> Payment:
    """A new payment, authorized, captured or refused as the issuer decides."""
    decided = outcome(request.card.number, capture=request.capture)
    captured = request.amount if decided.status == "captured" else 0
    return Payment(
        id=id,
        status=decided.status,
        amount=request.amount,
        currency=request.currency,
        amount_captured=captured,
        amount_refunded=0,
        fee=fee(captured),
        decline_code=decided.decline_code,
        card=CardSummary.of(request.card.number),
        reference=request.reference,
        idempotency_key=idempotency_key,
        created=created,
        captured_at=created if decided.status == "captured" else None,
    )


def capture(payment: Payment, amount: int | None, *, at: int | None = None) -> Payment:
    """Capture all or part of an authorization; the rest is released, as card networks do.
    ``at`` is when (unix seconds); left out, the authorization's time."""
    if payment.status != "authorized":
        raise _not_in("authorized", "captured", payment)
    amount = payment.amount if amount is None else amount
    if amount > payment.amount:
        raise amount_too_large(f"Cannot capture {amount}: only {payment.amount} was authorized.")
    captured_at = payment.created if at is None else at
    return replace(
        payment, status="captured", amount_captured=amount, fee=fee(amount), captured_at=captured_at
    )


def void(payment: Payment) -> Payment:
    if payment.status != "authorized":
        raise _not_in("authorized", "voided", payment)
    return replace(payment, status="voided")


def refund(
    payment: Payment, amount: int | None, *, id: str, idempotency_key: str, created: int
) -> tuple[Payment, Refund]:
    """Refund part or all of what is left; the fee is kept, as processors keep it."""
    if payment.status != "captured":
        raise _not_in("captured", "refunded", payment)
    left = payment.amount_captured - payment.amount_refunded
    amount = left if amount is None else amount
    if left == 0 or amount > left:
        raise amount_too_large(
            f"Cannot refund {amount}: {left} of the {payment.amount_captured} captured is left."
        )
    made = Refund(id, payment.id, amount, idempotency_key, created)
    refunded = replace(
        payment, amount_refunded=payment.amount_refunded + amount, refunds=(*payment.refunds, made)
    )
    return refunded, made


def dispute(
    payment: Payment,
    amount: int | None,
    reason: str,
    *,
    disputed: bool,
    id: str,
    created: int,
) -> Dispute:
    """Dispute all (by default) or part of what was captured. A card payment is disputed
    at most once, as card networks allow; ``disputed`` says whether it already was."""
    if payment.status != "captured":
        raise _not_in("captured", "disputed", payment)
    if disputed:
        raise invalid_state("This payment is already disputed; a payment is disputed once.")
    amount = payment.amount_captured if amount is None else amount
    if amount > payment.amount_captured:
        raise amount_too_large(
            f"Cannot dispute {amount}: only {payment.amount_captured} was captured."
        )
    return Dispute(id, payment.id, amount, reason, created)
