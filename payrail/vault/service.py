"""Card payment methods: checked, sealed, fingerprinted; only brand and last 4 come back.

`reveal` is the one way a card number leaves the vault, for a connector to authorize.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from payrail.clock import Clock, unix
from payrail.errors import CardError, InvalidRequest, NotFound, ResourceMissing
from payrail.events.outbox import OutboxEvent, emit
from payrail.ids import new_id
from payrail.tenants.scope import Scope
from payrail.vault import repository as repo
from payrail.vault.cards import PAN_LENGTHS, brand, expired, luhn_valid
from payrail.vault.envelope import Vault, card_context
from payrail.vault.schemas import BillingDetails, CardParams, PaymentMethodCreate
from payrail.vault.test_cards import by_name, by_number

Conn = repo.Conn


@dataclass(frozen=True, slots=True)
class Card:
    number: str
    exp_month: int
    exp_year: int
    cvc: str | None


@dataclass(frozen=True, slots=True)
class CardSecret:
    """What a connector needs to authorize. Never logged, stored or put in an event."""

    number: str
    exp_month: int
    exp_year: int
    cvc: str | None

    def __repr__(self) -> str:
        return f"CardSecret(last4={self.number[-4:]!r})"


def payment_method_object(row: dict[str, Any]) -> dict[str, Any]:
    return {
        "id": row["id"],
        "object": "payment_method",
        "type": "card",
        "billing_details": row["billing_details"],
        "card": {
            "brand": row["brand"],
            "checks": {
                "address_line1_check": None,
                "address_postal_code_check": None,
                "cvc_check": None,
            },
            "country": None,
            "exp_month": row["exp_month"],
            "exp_year": row["exp_year"],
            "fingerprint": row["fingerprint"],
            "funding": row["funding"],
            "last4": row["last4"],
        },
        "customer": row["customer_id"],
        "metadata": row["metadata"],
        "created": unix(row["created_at"]),
        "livemode": row["livemode"],
    }


def _checked(card: CardParams, now: datetime) -> Card:
    """The card's fields, checked. Messages name the field and never repeat its value."""
    if card.number is None:
        raise InvalidRequest(
            "Missing required param: card[number].", param="card[number]", code="parameter_missing"
        )
    for name in ("exp_month", "exp_year"):
        if getattr(card, name) is None:
            raise InvalidRequest(
                f"Missing required param: card[{name}].",
                param=f"card[{name}]",
                code="parameter_missing",
            )
    assert card.exp_month is not None and card.exp_year is not None
    number = card.number.replace(" ", "")
    if not (len(number) in PAN_LENGTHS and luhn_valid(number)):
        raise CardError("Your card number is invalid.", code="invalid_number", param="card[number]")
    if not 1 <= card.exp_month <= 12:
        raise CardError(
            "Your card's expiration month is invalid.",
            code="invalid_expiry_month",
            param="card[exp_month]",
        )
    exp_year = card.exp_year + 2000 if 0 <= card.exp_year < 100 else card.exp_year
    if not now.year <= exp_year <= now.year + 50:
        raise CardError(
            "Your card's expiration year is invalid.",
            code="invalid_expiry_year",
            param="card[exp_year]",
        )
    if expired(card.exp_month, exp_year, now):
        raise CardError(
            "Your card's expiration month is invalid.",
            code="invalid_expiry_month",
            param="card[exp_month]",
        )
    if card.cvc is not None:
        digits = 4 if brand(number) == "amex" else 3
        if not (card.cvc.isascii() and card.cvc.isdigit() and len(card.cvc) == digits):
            raise CardError(
                "Your card's security code is invalid.", code="invalid_cvc", param="card[cvc]"
            )
    return Card(number, card.exp_month, exp_year, card.cvc)


def _card(scope: Scope, card: CardParams, now: datetime) -> Card:
    if card.token is None:
        return _checked(card, now)
    if any(v is not None for v in (card.number, card.exp_month, card.exp_year, card.cvc)):
        raise InvalidRequest(
            "card[token] cannot be combined with card[number], card[exp_month],"
            " card[exp_year] or card[cvc].",
            param="card[token]",
        )
    # Only Stripe's tok_* names are tokens; pm_card_* names are payment methods.
    test_card = by_name(card.token) if card.token.startswith("tok_") else None
    if test_card is None or scope.livemode:
        # The value is not quoted: it may be a card number sent in the wrong field.
        raise ResourceMissing(
            "No such token: the value of card[token] is not a token of this mode.",
            param="card[token]",
            code="resource_missing",
        )
    # Stripe's test tokens stand for a card valid for another year.
    return Card(test_card.number, now.month, now.year + 1, None)


def _refuse_wrong_mode(scope: Scope, number: str) -> None:
    test_card = by_number(number) is not None
    if scope.livemode and test_card:
        raise CardError(
            "Your card was declined. Your request was in live mode, but used a known test card.",
            code="card_declined",
            decline_code="live_mode_test_card",
            param="card[number]",
        )
    if not scope.livemode and not test_card:
        raise CardError(
            "Your card was declined. Your request was in test mode, but used a real card."
            " Use one of the test cards.",
            code="card_declined",
            decline_code="test_mode_live_card",
            param="card[number]",
        )


async def create_payment_method(
    conn: Conn, scope: Scope, clock: Clock, vault: Vault, params: PaymentMethodCreate
) -> dict[str, Any]:
    now = clock.now()
    card = _card(scope, params.card, now)
    _refuse_wrong_mode(scope, card.number)
    return await _store(
        conn, scope, vault, card, now, params.billing_details.model_dump(), params.metadata
    )


def is_test_payment_method(payment_method_id: str) -> bool:
    """Stripe's `pm_card_visa` and kin: names that stand for a new card in test mode."""
    return payment_method_id.startswith("pm_card_") and by_name(payment_method_id) is not None


async def create_test_payment_method(
    conn: Conn, scope: Scope, clock: Clock, vault: Vault, name: str, *, param: str
) -> dict[str, Any]:
    """A new payment method for one of Stripe's pm_card_* names, as Stripe makes one
    wherever such a name is given in test mode."""
    test_card = by_name(name) if name.startswith("pm_card_") else None
    if test_card is None or scope.livemode:
        raise NotFound("payment_method", name, param=param)
    now = clock.now()
    card = Card(test_card.number, now.month, now.year + 1, None)
    return await _store(conn, scope, vault, card, now, BillingDetails().model_dump(), {})


async def _store(
    conn: Conn,
    scope: Scope,
    vault: Vault,
    card: Card,
    now: datetime,
    billing_details: dict[str, Any],
    metadata: dict[str, str],
) -> dict[str, Any]:
    known = by_number(card.number)
    payment_method_id = new_id("pm")
    data_key_id, sealed = await vault.seal(
        conn, card_context(payment_method_id, scope.merchant_id), card.number, now
    )
    row = {
        "id": payment_method_id,
        "livemode": scope.livemode,
        "customer_id": None,
        "brand": known.brand if known else brand(card.number),
        "funding": known.funding if known else "unknown",
        "bin": card.number[:6],
        "last4": card.number[-4:],
        "exp_month": card.exp_month,
        "exp_year": card.exp_year,
        "fingerprint": await vault.fingerprint(conn, scope.merchant_id, card.number, now),
        "data_key_id": data_key_id,
        "number_sealed": sealed,
        "billing_details": billing_details,
        "metadata": metadata,
        "created_at": now,
    }
    await repo.insert_payment_method(conn, scope, row)
    obj = payment_method_object(row)
    await emit(
        conn,
        scope,
        now,
        [OutboxEvent("payment_method.created", "payment_method", payment_method_id, obj)],
    )
    if card.cvc is not None:
        vault.cvcs.keep(payment_method_id, card.cvc, now)
    return obj


async def get_payment_method(conn: Conn, scope: Scope, payment_method_id: str) -> dict[str, Any]:
    rows = await repo.fetch_payment_methods(conn, scope, [payment_method_id])
    if not rows:
        raise NotFound("payment_method", payment_method_id)
    return payment_method_object(rows[0])


async def list_payment_methods(
    conn: Conn, scope: Scope, ids: Sequence[str]
) -> list[dict[str, Any]]:
    return [payment_method_object(r) for r in await repo.fetch_payment_methods(conn, scope, ids)]


# Test cards that Stripe refuses to attach: attaching verifies the card, and these decline.
_DECLINES_ON_ATTACH = frozenset(
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


async def verify_for_attach(
    conn: Conn, scope: Scope, vault: Vault, payment_method_id: str, *, param: str
) -> None:
    """Attaching a card verifies it, as Stripe does. In test mode the test card's outcome
    decides, and a declining card is refused. Live cards are verified by their first
    authorization, until connectors verify on attach."""
    if scope.livemode:
        return
    found = await repo.sealed_number(conn, scope, payment_method_id)
    if found is None:
        raise NotFound("payment_method", payment_method_id, param=param)
    data_key_id, sealed, _, _ = found
    context = card_context(payment_method_id, scope.merchant_id)
    test_card = by_number(await vault.open(conn, context, data_key_id, sealed))
    if test_card is not None and test_card.outcome in _DECLINES_ON_ATTACH:
        raise CardError(
            "Your card was declined.",
            code="card_declined",
            decline_code=test_card.outcome,
            param=param,
        )


async def reveal(
    conn: Conn, scope: Scope, clock: Clock, vault: Vault, payment_method_id: str
) -> CardSecret:
    """The card for one authorization. The CVC, if one was entered, is handed out once."""
    found = await repo.sealed_number(conn, scope, payment_method_id)
    if found is None:
        raise NotFound("payment_method", payment_method_id, param="payment_method")
    data_key_id, sealed, exp_month, exp_year = found
    context = card_context(payment_method_id, scope.merchant_id)
    number = await vault.open(conn, context, data_key_id, sealed)
    cvc = vault.cvcs.take(payment_method_id, clock.now())
    return CardSecret(number, exp_month, exp_year, cvc)
